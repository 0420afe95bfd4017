-- HTTP routing with [core] async_io: examples/http-routing.lua as it is (plain, blocking-looking
-- KSR.http_client.query), run with async_io on. Each request route runs as a Lua coroutine; the
-- query suspends it and the worker routes other messages until the service answers (or
-- connection_timeout passes), then the route goes on where it stopped, with its message, $var(...)
-- and locals intact. Retransmissions of a request whose route waits are absorbed.
-- The web service: GET ROUTING_URL?user=<R-URI user> answers 200 with the next hop
-- ("sip:host:port") on the first line of the body; 404 means unknown user; anything else (5xx,
-- timeout, connection refused: a negative code) is a temporary failure.
-- Config (starling.toml):
--
--   [core]
--   modules = ["sl", "maxfwd", "tm", "siputils", "http_client"]
--   async_io = true              # or STARLING_CORE_ASYNC_IO=true
--   async_max_pending = 1000     # routes one worker may have waiting; then 503
--   [modparam.http_client]
--   connection_timeout = 2       # seconds a route waits at most (default 4); the worker never waits
--
-- Run: starling run --config starling.toml --script examples/http-routing-asyncio.lua --listen udp:127.0.0.1:5060
-- Check: starling check --async-io examples/http-routing-asyncio.lua (warns about globals written in
-- functions: with async_io two messages' routes interleave, so per-message values go in locals).

local ROUTING_URL = "http://127.0.0.1:8080/route"

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	-- Keepalive OPTIONS to the proxy itself: answered at once, even while calls wait.
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
	-- With async_io this waits without blocking the worker (the same line blocks it without).
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
