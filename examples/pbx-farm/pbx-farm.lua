-- Load balancing and failover over a PBX farm with KSR.dispatcher (Kamailio 5.6 KEMI; runs
-- unchanged on Kamailio with app_lua and on Starling).
--
-- New calls go round-robin over the destinations of set 1 (dispatcher.list). A PBX that answers
-- 500/503 or does not answer at all is marked inactive+probing and the call goes to the next
-- one (failure route); OPTIONS probes bring it back when it answers again.

local PBX_SET = 1
local PBX_ALG = 4 -- 0 hash Call-ID, 4 round-robin, 9 weight, 10 call load, ...

function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(10) < 0 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    return
  end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return
  end
  if KSR.tm.t_check_trans() == 0 then return end
  if KSR.siputils.has_totag() > 0 then
    -- in-dialog requests (the PBXs' Contact is used without Record-Route): relay as they come
    if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
    return
  end
  if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
    KSR.sl.sl_send_reply(200, "Keepalive")
    return
  end
  if not KSR.is_INVITE() then
    KSR.sl.sl_send_reply(405, "Method Not Allowed")
    return
  end
  if KSR.dispatcher.ds_select_dst(PBX_SET, PBX_ALG) < 0 then
    KSR.sl.sl_send_reply(503, "No PBX Available")
    return
  end
  KSR.tm.t_on_failure("ksr_failure_pbx")
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end

function ksr_failure_pbx()
  if KSR.tm.t_is_canceled() > 0 then return end
  -- 500/503, or no reply at all before fr_timer: that PBX is down or overloaded
  if KSR.tm.t_check_status("500|503") > 0
      or (KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() < 0) then
    KSR.dispatcher.ds_mark_dst_state("ip")
    if KSR.dispatcher.ds_next_dst() > 0 then
      KSR.tm.t_on_failure("ksr_failure_pbx")
      KSR.tm.t_relay()
    end
  end
end

-- modparam dispatcher event_callback: "dispatcher:dst-down" / "dispatcher:dst-up", $ru is the PBX
function ksr_dispatcher_event(evname)
  KSR.xlog.xinfo("DSEVENT " .. evname .. " " .. KSR.pv.get("$ru") .. "\n")
end
