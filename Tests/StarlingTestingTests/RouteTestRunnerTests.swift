import Testing
import StarlingTesting

@Suite("starling test: the route test runner")
struct RouteTestRunnerTests {
    static let proxy = packageRoot() + "/examples/tested/route.lua"

    @Test func exampleTestsPass() {
        let report = RouteTestRunner.run(script: Self.proxy, testFiles: [packageRoot() + "/examples/tested/route_test.lua"])
        #expect(report.scriptError == nil)
        #expect(report.results.count >= 9)
        #expect(report.failed == 0, "\(report.rendered())")
        #expect(report.exitCode == 0)
        #expect(report.rendered().contains("  ok    OPTIONS to the proxy is answered\n"))
    }

    /// Line numbers matter: the report must point at the failed expectation.
    static let wrongTests = """
        test("right", function()
          expect.reply(send(options{ ruri = "sip:127.0.0.1:5060" }), 200)
        end)

        test("wrong status", function()
          local r = send(options{ ruri = "sip:127.0.0.1:5060" })
          expect.reply(r, 404)
        end)

        test("wrong destination", function()
          hosts{ ["pbx.example.com"] = "127.0.0.1" }
          local r = send(invite{ ruri = "sip:bob@example.com" })
          expect.forward(r, { to = "127.0.0.1:9999" })
        end)

        test("missing header", function()
          hosts{ ["pbx.example.com"] = "127.0.0.1" }
          expect.forward(send(invite{}), { has_header = "X-Nope" })
        end)

        local function helper(r)
          expect.nothing_sent(r)
        end
        test("through a helper", function()
          helper(send(options{ ruri = "sip:127.0.0.1:5060" }))
        end)

        test("a Lua error", function()
          local t = nil
          return t.x
        end)

        test("endless loop", function() while true do end end)

        test("runs after the loop", function() expect.equal(1 + 1, 2) end)
        """

    @Test func wrongTestsFailWithFileLine() throws {
        let dir = makeTempDir(["wrong_test.lua": Self.wrongTests])
        let file = dir + "/wrong_test.lua"
        let report = RouteTestRunner.run(script: Self.proxy, testFiles: [file])
        #expect(report.exitCode == 1)
        let byName = Dictionary(report.results.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(report.results.count == 8)
        #expect(byName["right"]?.passed == true)
        #expect(byName["runs after the loop"]?.passed == true)

        let status = try #require(byName["wrong status"])
        #expect(!status.passed)
        #expect(status.location == "\(file):7")
        #expect(status.message?.contains("expected: reply 404") == true)
        #expect(status.message?.contains("got: reply 200 OK to 192.0.2.10:5060") == true)

        let dest = try #require(byName["wrong destination"])
        #expect(dest.location == "\(file):13")
        #expect(dest.message?.contains("a request forwarded to 127.0.0.1:9999") == true)
        #expect(dest.message?.contains("INVITE sip:bob@example.com to 127.0.0.1:5080") == true)

        #expect(byName["missing header"]?.location == "\(file):18")
        #expect(byName["missing header"]?.message?.contains("X-Nope") == true)
        #expect(byName["through a helper"]?.location == "\(file):22")
        #expect(byName["a Lua error"]?.location == "\(file):30")
        #expect(byName["a Lua error"]?.message?.contains("attempt to index a nil value") == true)
        #expect(byName["endless loop"]?.passed == false)
        #expect(byName["endless loop"]?.message?.contains("instruction budget") == true)

        let text = report.rendered()
        #expect(text.contains("  FAIL  wrong status\n        at \(file):7\n"))
        #expect(text.hasSuffix("8 tests, 2 passed, 6 failed\n"))
    }

    @Test func scriptThatDoesNotLoadExitsTwo() {
        let dir = makeTempDir(["bad.lua": "function ksr_request_route(\n", "t.lua": "test('x', function() end)\n"])
        let report = RouteTestRunner.run(script: dir + "/bad.lua", testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 2)
        #expect(report.scriptError?.contains("bad.lua") == true)
    }

    @Test func testFileSyntaxErrorFails() {
        let dir = makeTempDir(["t.lua": "test('x', function()\n"])
        let report = RouteTestRunner.run(script: Self.proxy, testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 1)
        #expect(report.results.first?.message?.contains("t.lua:") == true)
    }

    /// The test state cannot see the script's globals, and each test starts with a fresh script.
    @Test func statesAreSeparateAndFreshPerTest() {
        let dir = makeTempDir([
            "s.lua": """
                hits = 0
                function ksr_request_route()
                  hits = hits + 1
                  KSR.pv.seti("$var(hits)", hits)
                  KSR.sl.sl_send_reply(200, "OK")
                end
                """,
            "t.lua": """
                test("no KSR, no script globals here", function()
                  expect.equal(KSR, nil, "KSR")
                  expect.equal(hits, nil, "hits")
                  expect.equal(ksr_request_route, nil, "ksr_request_route")
                end)
                test("two messages", function()
                  send(options{}); send(options{})
                  expect.var("$var(hits)", 2)
                end)
                test("fresh script", function()
                  expect.reply(send(options{}), 200, "OK")
                  expect.var("hits", 1)
                end)
                """,
        ])
        let report = RouteTestRunner.run(script: dir + "/s.lua", testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 0, "\(report.rendered())")
        #expect(report.passed == 3)
    }

    /// Raw text, file(), reply headers, defines and script errors.
    @Test func messagesAndExpectations() {
        let dir = makeTempDir([
            "s.lua": """
                function ksr_request_route()
                  if KSR.is_method("MESSAGE") then error("boom") end
                  if KSR.kx.ifdef("CLOSED") then KSR.sl.sl_send_reply(503, "Closed"); return end
                  KSR.pv.sets("$var(body)", KSR.pv.gete("$rb"))
                  KSR.hdr.append_to_reply("X-Seen: " .. KSR.pv.gete("$hdr(X-Foo)") .. "\\r\\n")
                  KSR.sl.sl_send_reply(200, "OK")
                end
                """,
            "req.sip": "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: f1\nCSeq: 1 OPTIONS\nX-Foo: from-file\n\nbody\n",
            "t.lua": """
                test("raw text with a body", function()
                  local r = send([[
                    OPTIONS sip:127.0.0.1 SIP/2.0
                    Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
                    From: <sip:a@b>;tag=1
                    To: <sip:c@d>
                    Call-ID: raw1
                    CSeq: 1 OPTIONS
                    X-Foo: raw
                    Content-Length: 999

                    v=0
                  ]])
                  expect.reply(r, 200, { reason = "OK", headers = { ["X-Seen"] = "raw" }, lacks_header = "X-Foo" })
                  expect.var("$var(body)", "v=0\\r\\n")
                end)
                test("file", function()
                  expect.reply(send(file("req.sip")), 200, { headers = { ["X-Seen"] = "from-file" } })
                end)
                test("builder headers", function()
                  local r = send(options{ headers = { ["X-Foo"] = "built" } })
                  local m = expect.reply(r, 200, { has_header = { "X-Seen", "Via" } })
                  expect.equal(m.to, "192.0.2.10:5060")
                end)
                test("defines", function()
                  defines{ CLOSED = true }
                  expect.reply(send(options{}), 503, "Closed")
                end)
                test("script errors", function()
                  local r = send(message{ body = "hi" })
                  expect.script_error(r, "boom")
                  expect.nothing_sent(r)
                end)
                """,
        ])
        let report = RouteTestRunner.run(script: dir + "/s.lua", testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 0, "\(report.rendered())")
        #expect(report.passed == 5)
    }

    /// Route tests of an async script: stubbed http_async_client answers after a delay, the router's
    /// clock moved with wait(ms); examples/http-routing-async.lua itself.
    @Test func asyncRoutesWithStubbedHTTPAnswers() {
        let dir = makeTempDir([
            "t.lua": """
                local URL = "http://127.0.0.1:8080/route"
                test("routed after the service answers", function()
                  http{ url = URL, delay = 300, status = 200, body = "sip:10.0.0.7:5070\\nignored" }
                  local r = send(invite{ ruri = "sip:+15551234@127.0.0.1" })
                  expect.reply(r, 100)
                  expect.equal(#r.sent, 1, "messages sent before the answer")
                  r = wait(200)
                  expect.equal(#r.sent, 0, "messages sent at 200 ms")
                  r = wait(150)
                  expect.forward(r, { to = "10.0.0.7:5070", method = "INVITE" })
                end)
                test("unknown user", function()
                  http{ url = URL, delay = 50, status = 404 }
                  send(invite{ ruri = "sip:alice@127.0.0.1" })
                  expect.reply(wait(100), 404, "Unknown User")
                end)
                test("a service that never answers", function()
                  http{ url = URL, delay = 2000, status = 0 }
                  send(invite{ ruri = "sip:+15551234@127.0.0.1" })
                  expect.nothing_sent(wait(1900))
                  expect.reply(wait(200), 503, "Routing Service Unavailable")
                end)
                test("keepalive OPTIONS are answered at once", function()
                  expect.reply(send(options{ ruri = "sip:127.0.0.1" }), 200, "Keepalive")
                end)
                """,
        ])
        let report = RouteTestRunner.run(script: packageRoot() + "/examples/http-routing-async.lua",
                                         testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 0, "\(report.rendered())")
        #expect(report.passed == 4)
    }

    /// Route tests of an async_io script: plain http_client.query stubbed with a delay; the route
    /// waits (send returns "waiting"), wait(ms) resumes it; examples/http-routing-asyncio.lua itself.
    @Test func asyncIORoutesWithDelayedStubs() {
        let dir = makeTempDir([
            "t.lua": """
                local URL = "http://127.0.0.1:8080/route"
                async_io(true)
                test("routed after the service answers", function()
                  http{ url = URL, delay = 300, status = 200, body = "sip:10.0.0.7:5070\\nignored" }
                  local r = send(invite{ ruri = "sip:+15551234@127.0.0.1" })
                  expect.equal(r.status, "waiting")
                  expect.nothing_sent(r)
                  expect.nothing_sent(wait(200))
                  expect.forward(wait(150), { to = "10.0.0.7:5070", method = "INVITE" })
                end)
                test("unknown user", function()
                  http{ url = URL, delay = 50, status = 404 }
                  send(invite{ ruri = "sip:alice@127.0.0.1" })
                  expect.reply(wait(100), 404, "Unknown User")
                end)
                test("a service that never answers", function()
                  http{ url = URL, delay = 2000, status = 0 }
                  send(invite{ ruri = "sip:+15551234@127.0.0.1" })
                  expect.nothing_sent(wait(1900))
                  expect.reply(wait(200), 503, "Routing Service Unavailable")
                end)
                test("keepalive OPTIONS are answered while a call waits", function()
                  http{ url = URL, delay = 1000, status = 200, body = "sip:10.0.0.7:5070" }
                  expect.equal(send(invite{ ruri = "sip:+15551234@127.0.0.1" }).status, "waiting")
                  expect.reply(send(options{ ruri = "sip:127.0.0.1" }), 200, "Keepalive")
                end)
                """,
        ])
        let report = RouteTestRunner.run(script: packageRoot() + "/examples/http-routing-asyncio.lua",
                                         testFiles: [dir + "/t.lua"])
        #expect(report.exitCode == 0, "\(report.rendered())")
        #expect(report.passed == 4)
    }
}
