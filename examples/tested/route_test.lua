-- Tests for route.lua:  starling test examples/tested/route.lua examples/tested/route_test.lua
hosts{ ["pbx.example.com"] = "127.0.0.1" }

test("OPTIONS to the proxy is answered", function()
  local r = send(options{ ruri = "sip:127.0.0.1:5060" })
  expect.reply(r, 200, "OK")
end)

test("INVITE for example.com goes to the PBX", function()
  local r = send(invite{ ruri = "sip:bob@example.com", headers = { ["X-Internal"] = "secret" } })
  expect.forward(r, { to = "127.0.0.1:5080", ruri = "sip:bob@example.com",
                      has_header = "X-Source", lacks_header = "X-Internal" })
  expect.var("$var(routed)", "pbx")
end)

test("the PBX address comes from a define", function()
  defines{ PBX = "sip:10.0.0.5:5090" }
  expect.forward(send(invite{}), { to = "10.0.0.5:5090" })
end)

test("other domains are forwarded by their R-URI", function()
  hosts{ ["carrier.example.net"] = "198.51.100.20" }
  local r = send(invite{ ruri = "sip:+15551234@carrier.example.net" })
  expect.forward(r, { to = "198.51.100.20:5060", headers = { ["X-Source"] = false } })
end)

test("Max-Forwards 0 is refused", function()
  local r = send(invite{ max_forwards = 0 })
  expect.reply(r, 483)
end)

test("other requests for the proxy get 404", function()
  local r = send([[
    MESSAGE sip:127.0.0.1:5060 SIP/2.0
    Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-raw-1
    From: <sip:alice@example.com>;tag=1
    To: <sip:127.0.0.1:5060>
    Call-ID: raw-1@192.0.2.10
    CSeq: 1 MESSAGE
    Max-Forwards: 70
    Content-Type: text/plain

    hello
  ]])
  expect.reply(r, 404, { reason = "Not Found" })
end)

test("scanners are dropped", function()
  local r = send(register{ ruri = "sip:127.0.0.1", headers = { ["User-Agent"] = "friendly-scanner" } })
  expect.dropped(r)
end)

test("a 180 from the PBX is relayed to the caller", function()
  local r = send(invite{ ruri = "sip:bob@example.com" }, { from = "192.0.2.33:5062" })
  local ringing = reply(180, r)
  expect.reply(ringing, 180, { to = "192.0.2.33:5062" })
end)

test("a 503 from the PBX is not relayed", function()
  local r = send(invite{ ruri = "sip:bob@example.com" })
  expect.dropped(reply(503, r))
end)
