-- HTTP routing: the proxy asks a web service where a call goes. GET ROUTING_URL?user=<R-URI user>
-- answers 200 with the next hop ("sip:host:port") on the first line of the body; 404 means unknown
-- user; anything else (5xx, timeout, connection refused: a negative code) is a temporary failure.
-- Config (starling.toml):
--
--   [core]
--   modules = ["sl", "maxfwd", "tm", "siputils", "http_client"]
--   [modparam.http_client]
--   connection_timeout = 2      # seconds a worker waits at most (default 4)
--
-- Run: starling run --config starling.toml --script examples/http-routing.lua --listen udp:127.0.0.1:5060

local ROUTING_URL = "http://127.0.0.1:8080/route"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
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
	-- In-dialog requests (ACK, BYE) follow their Request-URI (the callee's Contact): this proxy does not
	-- record-route, so only the ones sent to it come here.
	if KSR.siputils.has_totag() > 0 then
		if KSR.is_ACK() then
			KSR.forward()
		elseif KSR.tm.t_relay() < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end
	local user = KSR.pv.get("$rU") or ""
	local rc = KSR.http_client.query(ROUTING_URL .. "?user=" .. user, "$var(nexthop)")
	if rc == 404 then
		if not KSR.is_ACK() then KSR.sl.sl_send_reply(404, "Unknown User") end
		KSR.x.exit()
	end
	if rc ~= 200 then
		KSR.err("routing service failed for " .. user .. ": " .. rc .. "\n")
		if not KSR.is_ACK() then KSR.sl.sl_send_reply(503, "Routing Service Unavailable") end
		KSR.x.exit()
	end
	KSR.setdsturi(KSR.pv.get("$var(nexthop)"))
	if KSR.is_ACK() then
		KSR.forward()
		KSR.x.exit()
	end
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end
