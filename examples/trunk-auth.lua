-- Calls out through a carrier trunk that wants digest authentication. The trunk answers the INVITE
-- with 401/407; the failure route gives the credentials to KSR.uac.uac_auth(), which adds the
-- (Proxy-)Authorization, increments the CSeq and sets the Request-URI back to the trunk's; t_relay()
-- sends it again on a new branch. Config (starling.toml):
--
--   [core]
--   modules = ["sl", "maxfwd", "tm", "siputils", "uac"]
--   [modparam.uac]
--   auth_username_avp = "$avp(auser)"
--   auth_password_avp = "$avp(apass)"
--   auth_realm_avp = "$avp(arealm)"     # optional: when set, only the challenge of that realm
--
-- Run: starling run --config starling.toml --script examples/trunk-auth.lua --listen udp:127.0.0.1:5060

local TRUNK = "sip:127.0.0.1:5090"
local TRUNK_USER = "trunkuser"
local TRUNK_PASSWORD = "s3cret"

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
	-- In-dialog requests follow their Request-URI (this proxy does not record-route).
	if KSR.siputils.has_totag() > 0 then
		if KSR.is_ACK() then
			KSR.forward()
		elseif KSR.tm.t_relay() < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end
	-- New calls go to the trunk.
	KSR.setdsturi(TRUNK)
	KSR.tm.t_on_failure("ksr_failure_trunk_auth")
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_failure_trunk_auth()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if KSR.tm.t_check_status("401|407") > 0 then
		KSR.pv.sets("$avp(auser)", TRUNK_USER)
		KSR.pv.sets("$avp(apass)", TRUNK_PASSWORD)
		if KSR.uac.uac_auth() > 0 then
			KSR.setdsturi(TRUNK)
			-- a second challenge (wrong password) is relayed to the caller: no failure route again
			KSR.tm.t_relay()
		end
	end
end
