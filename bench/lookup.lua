-- A relayed INVITE with a location lookup (bench/usrloc-lookup.sh): the same script for usrloc in
-- memory and usrloc on Redis (db_mode 3, lookups from the local cache). Runs unchanged on Kamailio 5.6.
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
        KSR.registrar.save("location", 0)
        KSR.x.exit()
    end
    -- In-dialog (ACK, BYE): to the R-URI, the callee's Contact.
    if KSR.siputils.has_totag() > 0 then
        if KSR.is_ACK() then KSR.forward() else KSR.tm.t_relay() end
        KSR.x.exit()
    end
    if KSR.registrar.lookup("location") < 0 then
        KSR.sl.sl_send_reply(404, "Not Found")
        KSR.x.exit()
    end
    if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end
