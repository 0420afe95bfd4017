-- Per-tenant concurrent call limits with dialog profiles, and CDRs (issue 17).
--
-- A multi-tenant SBC: the tenant is the From domain (or an X-Tenant header set by the edge), each
-- tenant may have LIMITS[tenant] calls up at once, calls that outlive their dialog timeout are ended
-- with BYEs to both sides, and every answered call leaves a CDR in the `acc_cdrs` table.
--
-- Configuration (starling.toml):
--
--   [core]
--   modules = ["tm", "sl", "rr", "maxfwd", "siputils", "xlog", "dialog", "acc"]
--   [modparam.dialog]
--   profiles_with_value = "tenant"
--   default_timeout = 7200          # seconds a call may stay up without in-dialog traffic
--   send_bye = 1                    # end timed-out calls with BYEs to both sides
--   event_callback = "ksr_dialog_event"
--   [modparam.acc]
--   db_url = "sqlite:///var/lib/starling/starling.db"
--   cdr_enable = 1
--   cdrs_table = "acc_cdrs"
--   cdr_extra = "tenant=$dlg_var(tenant)"
--   cdr_expired_dlg_enable = 1      # CDRs for timed-out calls too (Kamailio's default is 0)
--
-- Only KSR calls Kamailio 5.6 has (dialog.so, acc.so, db_sqlite.so with the same modparams); the
-- same logic runs on both servers in Tests/StarlingIntegrationTests/DialogIntegrationTests.swift.
-- `starling ctl dlg.profile_get_size tenant acme` shows a tenant's calls; `dlg.list` the dialogs.

local PBX = "sip:127.0.0.1:5080"
local LIMITS = { acme = 3, globex = 20 }
local DEFAULT_LIMIT = 5

local function tenant_of()
  local t = KSR.pv.gete("$hdr(X-Tenant)")
  if t == "" then t = KSR.pv.gete("$fd") end
  return t
end

function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(10) < 0 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    return
  end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return
  end
  -- In-dialog requests: loose_route lets the dialog module see them (ACK confirms, BYE ends).
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      KSR.tm.t_relay()
    elseif KSR.is_ACK() then
      if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    else
      KSR.sl.sl_send_reply(404, "Not here")
    end
    return
  end
  if KSR.tm.t_check_trans() == 0 then return end  -- a retransmission, absorbed
  if KSR.is_INVITE() then
    local tenant = tenant_of()
    local limit = LIMITS[tenant] or DEFAULT_LIMIT
    KSR.dialog.get_profile_size("tenant", tenant, "$var(calls)")
    if KSR.pv.get("$var(calls)") >= limit then
      KSR.xlog.xinfo("tenant " .. tenant .. " at its limit of " .. limit .. " calls\n")
      KSR.sl.sl_send_reply(486, "Tenant Call Limit Reached")
      return
    end
    KSR.dialog.dlg_manage()
    KSR.dialog.set_dlg_profile("tenant", tenant)
    KSR.dialog.var_sets("tenant", tenant)
    KSR.rr.record_route()
  end
  KSR.setdsturi(PBX)
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_send_reply(500, "Relay Failed") end
end

-- dialog:start, dialog:end and dialog:failed (modparam dialog.event_callback).
function ksr_dialog_event(ev)
  KSR.xlog.xinfo(ev .. " tenant=" .. KSR.pv.gete("$dlg_var(tenant)") .. " call-id=" .. KSR.pv.gete("$dlg(callid)") .. "\n")
end
