-- Stateful load balancing (KSR.dispatcher + KSR.tm) for the Starling/Kamailio benchmark
-- (bench/compare.sh with MODE=dispatcher): new calls go round-robin over set 1 of the
-- dispatcher.list compare.py writes (three SIPp UASes); in-dialog requests follow their
-- Request-URI (the UAS's Contact). Runs unchanged on Kamailio 5.6 app_lua and on Starling.

-- NEXT_HOP is unused here (the destinations come from dispatcher.list); kept for the harness
local NEXT_HOP = "sip:127.0.0.1:5090"

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
    if KSR.siputils.has_totag() > 0 then
        if KSR.is_ACK() then
            KSR.forward()
        elseif KSR.tm.t_relay() < 0 then
            KSR.sl.sl_reply_error()
        end
        KSR.x.exit()
    end
    if KSR.dispatcher.ds_select_dst(1, 4) < 0 then
        KSR.sl.sl_send_reply(503, "No Destination")
        KSR.x.exit()
    end
    if KSR.tm.t_relay() < 0 then
        KSR.sl.sl_reply_error()
    end
end
