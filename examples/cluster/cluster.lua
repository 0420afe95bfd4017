-- One instance of a Starling cluster (examples/cluster/README.md): every instance runs this script
-- with the same starling.toml, usrloc in Redis (db_mode 3), so a phone registered through any
-- instance is reached through any other. Runs unchanged on Kamailio 5.6 (usrloc on db_redis).
function ksr_request_route()
    if KSR.maxfwd.process_maxfwd(10) < 0 then
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        KSR.x.exit()
    end
    if KSR.is_CANCEL() then
        if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
        KSR.x.exit()
    end
    if KSR.tm.t_check_trans() == 0 then KSR.x.exit() end
    if KSR.is_REGISTER() then
        -- One atomic save in Redis: 200 only once the contact is stored, 500 when Redis is down.
        KSR.registrar.save("location", 0)
        KSR.x.exit()
    end
    if KSR.siputils.has_totag() > 0 then
        -- In-dialog: along the recorded route when there is one, else to the R-URI (the phone's
        -- Contact); the ACK of a 2xx statelessly.
        KSR.rr.loose_route()
        if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
        KSR.x.exit()
    end
    if KSR.is_OPTIONS() and KSR.pv.get("$rU") == nil then
        KSR.sl.sl_send_reply(200, "Alive")
        KSR.x.exit()
    end
    -- Served from the local cache (pub/sub invalidated): no Redis round trip unless the AoR changed.
    local rc = KSR.registrar.lookup("location")
    if rc < 0 then
        KSR.sl.sl_send_reply(404, "Not Found")
        KSR.x.exit()
    end
    -- The dialog stays on this instance: the phone (and whatever proxy is in front) sends its
    -- in-dialog requests and replies back through it.
    KSR.rr.record_route()
    if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end
