-- Diameter Routing Agent: S6a/S6d requests go to an HSS chosen by the IMSI's prefix (the User-Name
-- AVP), with failover to the next HSS of the list when one is down. Needs a [diameter] section with
-- the HSS peers (see docs/Diameter.md); SIP requests are refused.
--
--   starling run --config dra.toml --script examples/dra.lua
--
-- KSR.diameter.relay(peer) returns 1 when the peer is open and its watchdog OKAY (the request will
-- go there), -2 when it is down, -1 when it is unknown; relay() without a peer (or relay_realm())
-- uses the [[diameter.routes]] table. A route that neither relays nor answers gets 3002 DIAMETER_UNABLE_TO_DELIVER sent for it.
-- Requests already relayed to an HSS that fails are retransmitted (T flag) to another HSS of its
-- realm by Starling itself.

local S6A = 16777251

-- IMSI prefix (MCC+MNC+first digit) -> HSS in order of preference.
local HSS_BY_PREFIX = {
    ["00101"] = { "hss1.example", "hss2.example" },
    ["00102"] = { "hss2.example" },
    ["00103"] = { "hss2.example", "hss1.example" },
}

function ksr_request_route()
    KSR.sl.sl_send_reply(404, "Not here")
end

function ksr_diameter_request()
    if KSR.pv.get("$diameter_application") ~= S6A then
        -- Other applications: the realm routing table (no route -> 3002).
        KSR.diameter.relay_realm()
        return
    end
    local imsi = KSR.diameter.get_avp("User-Name")
    if imsi == nil then
        KSR.diameter.answer(5005) -- DIAMETER_MISSING_AVP
        return
    end
    if imsi:sub(1, 3) ~= "001" then
        KSR.diameter.answer(5001) -- not one of our subscribers
        return
    end
    local hss = HSS_BY_PREFIX[imsi:sub(1, 5)]
    if hss == nil then
        KSR.diameter.relay() -- realm routing
        return
    end
    for _, peer in ipairs(hss) do
        if KSR.diameter.relay(peer) == 1 then
            return
        end
    end
    KSR.info("no HSS up for IMSI prefix " .. imsi:sub(1, 5) .. "\n")
end
