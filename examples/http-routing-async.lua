-- HTTP routing without blocking: the async twin of examples/http-routing.lua. The proxy asks a web
-- service where a call goes (GET ROUTING_URL?user=<R-URI user>: 200 with "sip:host:port" on the first
-- line of the body; 404 unknown user; anything else a temporary failure), but the worker does not
-- wait for the answer: http_async_client suspends the transaction and the worker routes other
-- messages; when the answer comes, `routing_answer` continues the call (a failure-route-like
-- callback: t_relay adds the branch, t_reply answers). A service that never answers gets the
-- caller a 503 after connection_timeout (and, if even that failed, fr_timer would end it with 408
-- through `routing_timeout`). OPTIONS to the proxy itself (no user) are answered at once.
-- Config (starling.toml):
--
--   [core]
--   modules = ["sl", "maxfwd", "tm", "tmx", "siputils", "http_async_client"]
--   [modparam.http_async_client]
--   connection_timeout = 2000   # ms an HTTP request may take (Kamailio's default: 500)
--   workers = 1                 # threads driving the requests (each handles any number at once)
--
-- Run: starling run --config starling.toml --script examples/http-routing-async.lua --listen udp:127.0.0.1:5060
-- The same script runs on Kamailio 5.6 (loadmodule "http_async_client.so", "tmx.so").

local ROUTING_URL = "http://127.0.0.1:8080/route"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() and (KSR.pv.get("$rU") or "") == "" then
		KSR.sl.sl_send_reply(200, "Keepalive")
		KSR.x.exit()
	end
	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		KSR.x.exit()
	end
	if KSR.tm.t_check_trans() == 0 then
		KSR.x.exit()
	end
	if KSR.siputils.has_totag() > 0 then
		if KSR.is_ACK() then
			KSR.forward()
		elseif KSR.tm.t_relay() < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end
	if KSR.is_ACK() then
		-- an ACK without To-tag that matched no transaction: nothing to route
		KSR.x.exit()
	end
	-- The transaction first: http_async_client suspends it while the service answers.
	if KSR.tm.t_newtran() < 0 then
		KSR.sl.sl_reply_error()
		KSR.x.exit()
	end
	KSR.tm.t_on_failure("routing_timeout")
	local user = KSR.pv.get("$rU") or ""
	if KSR.http_async_client.query(ROUTING_URL .. "?user=" .. user, "routing_answer") < 0 then
		KSR.tm.t_reply(500, "Routing Query Failed")
	end
	-- 0: suspended; the route ends here and routing_answer continues it.
end

-- Runs in the worker that suspended the call, when the service answered or timed out.
function routing_answer()
	local user = KSR.pv.get("$rU") or ""
	if KSR.pv.get("$http_ok") ~= 1 then
		KSR.err("routing service failed for " .. user .. ": " .. tostring(KSR.pv.get("$http_err")) .. "\n")
		KSR.tm.t_reply(503, "Routing Service Unavailable")
		return
	end
	local status = KSR.pv.get("$http_rs")
	if status == 404 then
		KSR.tm.t_reply(404, "Unknown User")
		return
	end
	if status ~= 200 then
		KSR.err("routing service failed for " .. user .. ": " .. tostring(status) .. "\n")
		KSR.tm.t_reply(503, "Routing Service Unavailable")
		return
	end
	local body = KSR.pv.get("$http_rb") or ""
	local nexthop = body:match("^[^\r\n]*")
	KSR.setdsturi(nexthop)
	if KSR.tm.t_relay() < 0 then
		KSR.tm.t_reply(500, "Relay Failed")
	end
end

-- fr_timer ran out before any answer came back (the suspended transaction keeps its timer).
function routing_timeout()
	if KSR.tm.t_is_canceled() > 0 then return end
	if KSR.tm.t_branch_timeout() > 0 then
		KSR.tm.t_reply(504, "Routing Timeout")
	end
end
