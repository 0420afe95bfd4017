-- Stateless forwarder to a fixed next hop (a PBX): every request that is not for the proxy itself
-- goes to PBX_URI, keeping its Request-URI. Run:
--   starling run --script examples/forward-to-pbx.lua --listen udp:127.0.0.1:5060
local PBX_URI = "sip:127.0.0.1:5080"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	if KSR.sanity.sanity_check(1511, 7) < 0 then
		KSR.x.exit()
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
		KSR.sl.sl_send_reply(200, "Keepalive")
		return
	end
	KSR.setdsturi(PBX_URI)
	if KSR.forward() < 0 then
		KSR.sl.sl_reply_error()
	end
end
