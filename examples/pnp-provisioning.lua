-- SIP plug-and-play provisioning (the phones' multicast discovery). A phone out of the box sends
--   SUBSCRIBE sip:MAC%3A0004f2a1b2c3@224.0.1.75 SIP/2.0
--   Event: ua-profile;profile-type="device";vendor="Polycom";model="VVX400";version="7.0"
-- to the group 224.0.1.75:5060. The proxy answers 200 and sends a NOTIFY to the phone's Contact
-- whose body is the provisioning URL (Content-Type: application/url). Nothing is sent from the
-- group socket: the 200 and the NOTIFY leave from the unicast listener.
--
-- Run (interface eth0 joins the group; the unicast listener answers):
--   starling run --script examples/pnp-provisioning.lua --config pnp.toml
-- with pnp.toml:
--   [core]
--   modules = ["sl", "tm", "uac", "kx", "htable"]
--   listen = ["udp:192.0.2.10:5060", "udp:224.0.1.75:5060;mcast=eth0"]
--   [define]
--   PNP_URL = "http://provisioning.example.com/phones"
--   # PNP_VENDORS = 1                         # only vendors listed in the htable below
--   [modparam.htable]
--   htable = "pnp_vendors=>size=4;"
--
-- The URL is PNP_URL/<vendor>/<model>/<mac>.cfg (lower case; the MAC without separators).

local DEFAULT_URL = "http://provisioning.example.com/phones"

local function unquote(s)
	if s == nil then return nil end
	return (s:gsub('^"(.*)"$', "%1"))
end

function ksr_request_route()
	if not KSR.is_SUBSCRIBE() then
		if KSR.is_NOTIFY() or KSR.is_ACK() then return end
		KSR.sl.sl_send_reply(405, "Method Not Allowed")
		return
	end
	local event = KSR.hdr.get("Event") or ""
	if KSR.pv.get("$(hdr(Event){s.substr,0,10})") ~= "ua-profile" then
		KSR.hdr.append_to_reply("Allow-Events: ua-profile\r\n")
		KSR.sl.sl_send_reply(489, "Bad Event")
		return
	end
	local params = event:gsub("^ua%-profile%s*;?", "")
	local vendor = unquote(KSR.pv.get("$(hdr(Event){param.value,vendor})")) or ""
	local model = unquote(KSR.pv.get("$(hdr(Event){param.value,model})")) or ""
	-- the MAC: R-URI user "MAC%3A0004f2a1b2c3" (or "MAC:...")
	local user = KSR.pv.get("$rU") or ""
	local mac = user:gsub("%%3[Aa]", ":"):match("^[Mm][Aa][Cc]:(%x+)$")
	if vendor == "" or mac == nil then
		KSR.sl.sl_send_reply(400, "Bad Request - vendor or MAC missing")
		return
	end
	-- optional allow-list of vendors: [define] PNP_VENDORS and htable pnp_vendors (key: vendor, lower case)
	if KSR.kx.ifdef("PNP_VENDORS") and KSR.htable then
		if KSR.htable.sht_get("pnp_vendors", vendor:lower()) == nil then
			KSR.sl.sl_send_reply(403, "Vendor Not Provisioned")
			return
		end
	end
	local contact = KSR.pv.get("$(ct{nameaddr.uri})")
	if contact == nil or contact == "" then
		KSR.sl.sl_send_reply(400, "Bad Request - no Contact")
		return
	end
	KSR.sl.sl_send_reply(200, "OK")

	local base = KSR.kx.get_def("PNP_URL")
	if base == nil or base == "" then base = DEFAULT_URL end
	base = unquote(base)
	local url = base .. "/" .. vendor:lower() .. "/" .. model:lower() .. "/" .. mac:lower() .. ".cfg"
	KSR.info("pnp: " .. vendor .. " " .. model .. " " .. mac .. " at " .. contact .. " (" ..
		KSR.pv.get("$(ct{nameaddr.uri}{uri.host})") .. ") -> " .. url .. " [" .. params .. "]\n")

	KSR.pv.unset("$uac_req(all)")
	KSR.pv.sets("$uac_req(method)", "NOTIFY")
	KSR.pv.sets("$uac_req(ruri)", contact)
	KSR.pv.sets("$uac_req(turi)", KSR.pv.get("$fu"))
	KSR.pv.sets("$uac_req(furi)", "sip:provisioning@" .. KSR.kx.get_rcvip())
	KSR.pv.sets("$uac_req(callid)", KSR.pv.get("$ci"))
	KSR.pv.sets("$uac_req(hdrs)", "Event: ua-profile\r\nSubscription-State: terminated;reason=timeout\r\n" ..
		"Content-Type: application/url\r\n")
	KSR.pv.sets("$uac_req(body)", url)
	if KSR.uac.uac_req_send() < 0 then
		KSR.err("pnp: cannot send the NOTIFY to " .. contact .. "\n")
	end
end
