-- A 30-line routing function for the engine micro-benchmark (bench/route-bench.sh): pv get/set, hdr,
-- a textops regex and an xlog line, as a typical KEMI script does per request. Runs unchanged on
-- Kamailio 5.6 (Lua 5.1) and Starling; ends with a stateless 200 so a load generator sees one reply
-- per request.
function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	local ru = KSR.pv.get("$ru")
	local fu = KSR.pv.get("$fU")
	local ua = KSR.pv.gete("$ua")
	KSR.pv.sets("$var(caller)", fu)
	KSR.pv.seti("$var(seen)", KSR.pv.get("$var(seen)") + 1)
	if KSR.hdr.is_present("X-Account") > 0 then
		KSR.pv.sets("$var(account)", KSR.hdr.get("X-Account"))
	else
		KSR.pv.sets("$var(account)", "anonymous")
	end
	if KSR.textops.search("^User-Agent:.*[Ss]ipp") > 0 then
		KSR.hdr.append("X-Load-Test: yes\r\n")
	end
	KSR.hdr.remove("X-Internal")
	KSR.hdr.append("X-Caller: " .. fu .. "\r\n")
	if string.find(ru, "@") then
		KSR.pv.sets("$var(target)", KSR.pv.get("$rU"))
	end
	KSR.xlog.xdbg("request $rm from $si:$sp to $ru (caller $var(caller))\n")
	if KSR.is_method_in("IMO") then
		KSR.sl.sl_send_reply(200, "OK")
		return
	end
	KSR.sl.sl_send_reply(405, "Method Not Allowed")
end
