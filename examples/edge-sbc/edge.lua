-- An edge SBC in front of a PBX registrar (Kamailio 5.6 KEMI; runs unchanged on Kamailio with
-- app_lua and on Starling). See README.md and docs/EdgeSBC.md.
--
-- Two sockets: "public" toward the phones (on the internet, behind NATs) and "private" toward the
-- PBX. The edge keeps no registration state: REGISTER goes to the PBX with a Path naming the edge
-- and the phone's real address (;received=); calls from the PBX come back with that Path as their
-- Route and loose_route() sends them to the address in ;received (path use_received). Replies from
-- phones get an ;alias= on their Contact, so in-dialog requests toward them find them too; requests
-- that cross from one socket to the other get two Record-Routes (rr enable_double_rr).
--
-- [define] PBX: the PBX's SIP URI, e.g. "sip:10.0.3.2:5060".

local function pbx()
  -- get_def gives "" (not nil) for a name that is not defined, on Kamailio as on Starling.
  local v = KSR.kx.get_def("PBX")
  if v == nil or v == "" then return "sip:10.0.3.2:5060" end
  return v
end

local function from_pbx()
  return KSR.kx.get_rcv_sock_name() == "private"
end

local function relay()
  KSR.tm.t_on_reply("ksr_onreply_edge")
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
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
  if KSR.tm.t_check_trans() == 0 then return end

  -- In-dialog requests: our two Record-Routes are taken off (the second one names the socket the
  -- request leaves from); toward a phone, the alias of its Contact is where it really is.
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      KSR.nathelper.handle_ruri_alias()
      if KSR.is_ACK() then KSR.forward() else relay() end
      return
    end
    if KSR.is_ACK() then return end
    KSR.sl.sl_send_reply(404, "Not here")
    return
  end

  if KSR.is_REGISTER() then
    if from_pbx() then
      KSR.sl.sl_send_reply(403, "Forbidden")
      return
    end
    -- Registration offload: the PBX is the registrar. Our Path (with the phone's address in
    -- ;received) brings its calls back through this edge, whichever edge instance takes them.
    if KSR.path.add_path_received() < 0 then
      KSR.sl.sl_send_reply(500, "Server Error")
      return
    end
    KSR.setdsturi(pbx())
    relay()
    return
  end

  if from_pbx() then
    -- A new call from the PBX to a phone: its Route is the Path the phone registered through.
    -- loose_route() takes our entry off, sets $du from its ;received (path use_received) and
    -- returns -3 (Kamailio's RR_PRELOADED: the Route set was only ours); 1 if more Routes follow.
    local rc = KSR.rr.loose_route()
    if rc ~= -3 and rc ~= 1 then
      KSR.sl.sl_send_reply(404, "No Path")
      return
    end
    KSR.rr.record_route()
    relay()
    return
  end

  -- A new call from a phone: to the PBX.
  KSR.rr.record_route()
  KSR.setdsturi(pbx())
  relay()
end

-- Replies from the phones (public sockets, UDP or TCP): alias their Contact (its address is private).
function ksr_onreply_edge()
  if not from_pbx() and KSR.hdr.is_present("Contact") > 0 then
    KSR.nathelper.add_contact_alias()
  end
end
