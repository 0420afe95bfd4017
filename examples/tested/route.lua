-- A small stateless proxy, with its tests in route_test.lua. Run them:
--   starling test examples/tested/route.lua examples/tested/route_test.lua
--
-- OPTIONS to the proxy are answered; requests for the PBX domain go to the PBX (marked with
-- X-Source, internal headers removed); everything else for this proxy is refused; scanners dropped.
local PBX = KSR.kx.ifdef("PBX") and KSR.kx.get_def("PBX") or "sip:pbx.example.com:5080"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	-- Known scanners get no answer at all.
	local ua = KSR.pv.gete("$ua")
	if string.find(ua, "friendly-scanner", 1, true) or string.find(ua, "sipvicious", 1, true) then
		KSR.x.drop()
	end
	KSR.hdr.remove("X-Internal")
	if KSR.is_myself_ruri() and KSR.hdr.is_present("Route") < 0 then
		if KSR.is_OPTIONS() then
			KSR.sl.sl_send_reply(200, "OK")
			return
		end
		KSR.sl.sl_send_reply(404, "Not Found")
		return
	end
	if KSR.pv.get("$rd") == "example.com" then
		KSR.pv.sets("$var(routed)", "pbx")
		KSR.hdr.append("X-Source: starling\r\n")
		KSR.setdsturi(PBX)
	end
	if KSR.forward() < 0 then
		KSR.sl.sl_send_reply(503, "Service Unavailable")
	end
end

function ksr_reply_route()
	-- 503 from the PBX is hidden from the caller: it becomes nothing (the caller retries).
	if tonumber(KSR.pv.get("$rs")) == 503 then
		KSR.x.drop()
	end
end
