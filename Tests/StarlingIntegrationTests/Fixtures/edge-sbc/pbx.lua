-- The PBX registrar behind the edge (Kamailio 5.6, app_lua): registrar use_path. It takes REGISTER
-- only from the edge's private address and only with a Path; calls to a registered phone go out
-- through the stored Path (lookup sets $du and the Route set).
local EDGE = "10.0.3.1"

function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return
  end
  if KSR.tm.t_check_trans() == 0 then return end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
      return
    end
    if KSR.is_ACK() then return end
    KSR.sl.sl_send_reply(404, "Not here")
    return
  end
  if KSR.is_REGISTER() then
    if KSR.pv.get("$si") ~= EDGE or KSR.hdr.is_present("Path") < 0 then
      KSR.sl.sl_send_reply(403, "Register through the edge")
      return
    end
    KSR.registrar.save("location", 0)
    return
  end
  KSR.rr.record_route()
  if KSR.registrar.lookup("location") < 0 then
    KSR.sl.sl_send_reply(404, "Not Found")
    return
  end
  KSR.tm.t_relay()
end
