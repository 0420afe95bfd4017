-- ENUM routing: a request to an E.164 number (sip:+15551234@...) goes, statefully, to the SIP URI the
-- number's NAPTR record gives (KSR.enum.enum_query: reversed digits + ".e164.arpa.", E2U+sip, the
-- record's regexp applied). No record: 404. Config (starling.toml):
--
--   [core]
--   modules = ["sl", "maxfwd", "tm", "siputils", "enum"]
--   dns_servers = ["127.0.0.1:5353"]     # the DNS server with the ENUM zone (default: the system's)
--   [modparam.enum]
--   domain_suffix = "e164.arpa."         # the default
--
-- Run: starling run --config starling.toml --script examples/enum-routing.lua --listen udp:127.0.0.1:5060
-- A zone to try it with (dnsmasq, Debian dnsmasq-base):
--   dnsmasq -d --no-resolv --no-hosts --port=5353 --listen-address=127.0.0.1 --bind-interfaces \
--     --naptr-record='4.3.2.1.5.5.5.1.e164.arpa,100,10,u,E2U+sip,!^.*$!sip:bob@127.0.0.1:5080!'

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
	-- A new call: look the number up.
	if KSR.enum.enum_query() < 0 then
		if not KSR.is_ACK() then
			KSR.sl.sl_send_reply(404, "No ENUM Record")
		end
		KSR.x.exit()
	end
	KSR.info("enum: " .. KSR.pv.get("$ou") .. " -> " .. KSR.pv.get("$ru") .. "\n")
	if KSR.is_ACK() then
		KSR.forward()
		KSR.x.exit()
	end
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end
