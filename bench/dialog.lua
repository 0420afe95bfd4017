-- Stateful calls with a dialog, a dialog profile and accounting to the database (issue 17), for the
-- Starling/Kamailio benchmark (MODE=dialog) and the 100k-dialog memory measurement. Runs unchanged on
-- Kamailio 5.6 app_lua (Lua 5.1; dialog.so, acc.so, db_sqlite) and on Starling (Lua 5.4).
--
-- The next hop is the SIPp UAS. Harnesses rewrite the NEXT_HOP line below.

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
    -- In-dialog requests follow our Record-Route (the dialog matches them by its did parameter).
    if KSR.siputils.has_totag() > 0 then
        if KSR.rr.loose_route() > 0 then
            if KSR.is_BYE() then
                KSR.setflag(1) -- acc db_flag: the BYE's transaction is accounted too
            end
            KSR.tm.t_relay()
        elseif KSR.is_ACK() then
            if KSR.tm.t_check_trans() > 0 then
                KSR.tm.t_relay()
            end
        else
            KSR.sl.sl_send_reply(404, "Not here")
        end
        KSR.x.exit()
    end
    if KSR.tm.t_check_trans() == 0 then
        KSR.x.exit()
    end
    if KSR.is_INVITE() then
        KSR.dialog.dlg_manage()
        KSR.dialog.set_dlg_profile("tenant", "bench")
        KSR.setflag(1) -- acc db_flag: a row in acc (and a CDR when the dialog ends)
        KSR.rr.record_route()
    end
    KSR.setdsturi(NEXT_HOP)
    if KSR.tm.t_relay() < 0 then
        KSR.sl.sl_reply_error()
    end
end
