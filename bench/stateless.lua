-- Stateless forwarding route for the Starling/Kamailio benchmark and the
-- integration tests. Runs unchanged on Kamailio 5.6 app_lua (Lua 5.1) and on
-- Starling (Lua 5.4): only KEMI functions both implement.
--
-- The next hop is the SIPp UAS. Harnesses rewrite the NEXT_HOP line below
-- (bench/compare.sh and the Swift test helpers replace the quoted URI).

local NEXT_HOP = "sip:127.0.0.1:5090"

function ksr_request_route()
    -- Max-Forwards: 483 when exhausted, add one (10) when missing.
    if KSR.maxfwd.process_maxfwd(10) < 0 then
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        KSR.x.exit()
    end
    -- Everything (INVITE, ACK, BYE, with or without Route) goes to the UAS.
    -- KSR.setdsturi sets $du; KSR.forward() sends statelessly to $du.
    KSR.setdsturi(NEXT_HOP)
    KSR.forward()
end

function ksr_reply_route()
    -- Replies are forwarded statelessly by their Via; nothing to do.
end
