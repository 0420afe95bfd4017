-- Header manipulation on the way through: tag requests with where they came from, hide internal
-- headers, and answer OPTIONS with a custom header. Header edits are deferred (as in Kamailio):
-- KSR.hdr.is_present() does not see a header appended in the same request.
-- Run: starling run --script examples/header-manipulation.lua --listen udp:127.0.0.1:5060
local NEXT_HOP = "sip:127.0.0.1:5080"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
		KSR.hdr.append_to_reply("X-Served-By: starling\r\n")
		KSR.sl.sl_send_reply(200, "OK")
		return
	end
	-- Remove headers that must not leak to the next hop.
	KSR.hdr.remove("X-Internal-Account")
	-- Record the source of the request for the PBX.
	KSR.hdr.append("X-Source: " .. KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp") .. "\r\n")
	if KSR.pv.get("$ua") ~= nil then
		KSR.hdr.append("X-Original-UA: " .. KSR.pv.get("$ua") .. "\r\n")
	end
	KSR.setdsturi(NEXT_HOP)
	if KSR.forward() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_reply_route()
	-- Strip a header PBXs add to their replies before they leave.
	KSR.hdr.remove("X-Asterisk-HangupCause")
end
