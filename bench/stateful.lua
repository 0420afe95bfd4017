-- Stateful forwarding route (KSR.tm) for the Starling/Kamailio benchmark and the
-- integration tests. Runs unchanged on Kamailio 5.6 app_lua (Lua 5.1) and on
-- Starling (Lua 5.4): only KEMI functions both implement.
--
-- The next hop is the SIPp UAS. Harnesses rewrite the NEXT_HOP line below.

local NEXT_HOP = "sip:127.0.0.1:5090"

function ksr_request_route()
    if KSR.maxfwd.process_maxfwd(10) < 0 then
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        KSR.x.exit()
    end
    -- CANCEL: relayed through the INVITE's transaction when there is one.
    if KSR.is_CANCEL() then
        if KSR.tm.t_check_trans() > 0 then
            KSR.tm.t_relay()
        end
        KSR.x.exit()
    end
    -- Retransmissions (and ACKs of negative replies) are absorbed by the transaction.
    if KSR.tm.t_check_trans() == 0 then
        KSR.x.exit()
    end
    KSR.setdsturi(NEXT_HOP)
    -- The ACK of a 2xx is its own end-to-end request: forwarded statelessly.
    if KSR.is_ACK() then
        KSR.forward()
        KSR.x.exit()
    end
    if KSR.tm.t_relay() < 0 then
        KSR.sl.sl_reply_error()
    end
end
