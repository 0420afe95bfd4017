-- Starling's default routing script: a stateless SIP proxy.
--
-- Written in Kamailio's KEMI dialect (the KSR table), so it also runs on Kamailio's app_lua.
-- Starling calls ksr_request_route() for every request and ksr_reply_route() for every reply.
-- Save a new version of this file and Starling reloads it without a restart.

-- Checks for requests (sanity.sanity_check bits, see Kamailio's sanity module):
--   1 R-URI SIP version, 2 R-URI scheme, 4 required headers, 32 CSeq method, 64 CSeq number,
--   128 Content-Length, 256 Expires, 512 Proxy-Require, 1024 parse URIs, 16384 top Via.
local REQUEST_CHECKS = 1 + 2 + 4 + 32 + 64 + 128 + 256 + 512 + 1024 + 16384
-- URIs that must parse: 1 R-URI, 2 From, 4 To, 8 Contact.
local URI_CHECKS = 1 + 2 + 4 + 8

function ksr_request_route()
	-- Loops: decrement Max-Forwards (adding it if missing); refuse at 0.
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end

	-- Malformed or unsupported requests: sanity replies itself (400, 416, 420, 505...).
	if KSR.sanity.sanity_check(REQUEST_CHECKS, URI_CHECKS) < 0 then
		KSR.x.exit()
	end

	-- Requests addressed to this proxy itself.
	if KSR.is_myself_ruri() and KSR.hdr.is_present("Route") < 0 then
		if KSR.is_OPTIONS() then
			KSR.sl.sl_send_reply(200, "OK")
			return
		end
		if KSR.is_ACK() then
			return
		end
		-- Nothing else is served here: this script is a proxy, not a registrar or a UAS.
		KSR.sl.sl_send_reply(404, "Not Found")
		return
	end

	-- Everything else goes on, statelessly, to $du if the script set it, else to the R-URI.
	if KSR.forward() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_reply_route()
	-- Replies are relayed by their Via headers after this returns; KSR.x.drop() would stop one.
	return
end
