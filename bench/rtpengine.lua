-- bench/rtpengine.sh's route, run unchanged by Starling and by Kamailio 5.6 (app_lua): stateful
-- relay with rtpengine_manage on INVITE, on replies (answer; delete on >= 300) and on BYE/CANCEL,
-- as Kamailio's example script does (offer + answer + delete per call).
local NEXT_HOP = "sip:127.0.0.1:5090"

function ksr_request_route()
	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			KSR.rtpengine.rtpengine_manage("")
			KSR.tm.t_relay()
		end
		KSR.x.exit()
	end
	if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
	if KSR.siputils.has_totag() > 0 then
		if KSR.is_BYE() then KSR.rtpengine.rtpengine_manage("") end
		KSR.setdsturi(NEXT_HOP)
		if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
		KSR.x.exit()
	end
	if KSR.is_INVITE() then
		KSR.tm.t_on_reply("ksr_onreply_media")
		if KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection") < 0 then
			KSR.sl.sl_send_reply(503, "Media Relay Unavailable")
			KSR.x.exit()
		end
	end
	KSR.setdsturi(NEXT_HOP)
	if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end

function ksr_onreply_media()
	if KSR.kx.get_status() > 100 then
		KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
	end
end
