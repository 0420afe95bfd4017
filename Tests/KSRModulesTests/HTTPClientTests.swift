import Foundation
import StarlingTestSupport
import Testing
import KSRModules
import StarlingKEMI
import StarlingTesting

/// KSR.http_client against a real local HTTP server (Python's http.server, started per suite).
@Suite(.serialized) struct HTTPClientTests {
    let server: TestHTTPServer

    init() throws { server = try TestHTTPServer() }

    /// Runs `body` (Lua) in the request route with `[modparam.http_client]` params and returns the
    /// worker's `$var`s as strings.
    func run(_ body: String, params: [String: [String]] = [:]) throws -> [String: String] {
        let script = """
            function ksr_request_route()
              \(body)
            end
            """
        let h = try ScriptHarness(script: script, config: ModuleConfiguration(params: ["http_client": params]))
        try h.route(Msg.invite)
        var out: [String: String] = [:]
        for (k, v) in h.context.worker.vars {
            switch v {
            case .string(let s): out[k] = s
            case .int(let i): out[k] = String(i)
            case .null: out[k] = "<null>"
            }
        }
        return out
    }

    @Test func getReturnsStatusAndFirstLine() throws {
        let v = try run("""
            KSR.pv.seti("$var(rc)", KSR.http_client.query("\(server.base)/route", "$var(body)"))
            """)
        #expect(v["rc"] == "200")
        #expect(v["body"] == "sip:alice@10.0.0.1")
    }

    @Test func queryResultZeroKeepsTheWholeBody() throws {
        let v = try run("""
            KSR.pv.seti("$var(rc)", KSR.http_client.query("\(server.base)/route", "$var(body)"))
            """, params: ["query_result": ["0"]])
        #expect(v["rc"] == "200")
        #expect(v["body"] == "sip:alice@10.0.0.1\nsecond line\n")
    }

    @Test func errorStatusesAreReturnedAsIs() throws {
        let v = try run("""
            KSR.pv.seti("$var(nf)", KSR.http_client.query("\(server.base)/notfound", "$var(nfbody)"))
            KSR.pv.seti("$var(se)", KSR.http_client.query("\(server.base)/error", "$var(sebody)"))
            KSR.pv.seti("$var(nc)", KSR.http_client.query("\(server.base)/empty", "$var(ncbody)"))
            """)
        #expect(v["nf"] == "404")
        #expect(v["nfbody"] == "no such user")  // bodies of 200-499 are stored
        #expect(v["se"] == "500")
        #expect(v["sebody"] == "")  // not for 5xx
        #expect(v["nc"] == "204")
        #expect(v["ncbody"] == "")
    }

    @Test func postSendsBodyAndHeaders() throws {
        let v = try run("""
            KSR.pv.seti("$var(a)", KSR.http_client.query_post("\(server.base)/echo", "a=1&b=2", "$var(pa)"))
            KSR.pv.seti("$var(b)", KSR.http_client.query_post_hdrs("\(server.base)/echo", '{"n":"+15551234"}',
                "X-Test: yes\\r\\nContent-Type: application/json", "$var(pb)"))
            KSR.pv.seti("$var(c)", KSR.http_client.get_hdrs("\(server.base)/echo", "q=1", "X-Test: get", "$var(pc)"))
            KSR.pv.seti("$var(d)", KSR.http_client.query_post("\(server.base)/echo", "", "$var(pd)"))
            """)
        #expect(v["a"] == "200")
        #expect(v["pa"] == "POST|application/x-www-form-urlencoded||a=1&b=2")
        #expect(v["b"] == "200")
        #expect(v["pb"] == #"POST|application/json|yes|{"n":"+15551234"}"#)
        #expect(v["c"] == "200")
        #expect(v["pc"] == "GET|application/x-www-form-urlencoded|get|q=1")
        // an empty body is a GET, as Kamailio's
        #expect(v["pd"] == "GET|||")
    }

    @Test func slowServerTimesOutWithinTheBound() throws {
        let start = Date()
        let v = try run("""
            KSR.pv.sets("$var(body)", "before")
            KSR.pv.seti("$var(rc)", KSR.http_client.query("\(server.base)/slow", "$var(body)"))
            """, params: ["connection_timeout": ["1"]])
        let took = Date().timeIntervalSince(start)
        #expect(v["rc"] == "-28")  // CURLE_OPERATION_TIMEDOUT, negated
        #expect(v["body"] == "")
        #expect(took < 3, "the worker was blocked \(took) s with a 1 s timeout")
    }

    @Test func millisecondTimeoutMode() throws {
        let start = Date()
        let v = try run("""
            KSR.pv.seti("$var(rc)", KSR.http_client.query("\(server.base)/slow", "$var(body)"))
            """, params: ["connection_timeout": ["300"], "timeout_mode": ["2"]])
        #expect(v["rc"] == "-28")
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func connectionRefusedAndBadURLsAreNegative() throws {
        let closed = try TestPorts.next()
        let v = try run("""
            KSR.pv.seti("$var(refused)", KSR.http_client.query("http://127.0.0.1:\(closed)/x", "$var(b1)"))
            KSR.pv.seti("$var(scheme)", KSR.http_client.query("ftp://127.0.0.1/x", "$var(b2)"))
            KSR.pv.seti("$var(malformed)", KSR.http_client.query("http://[::1/x", "$var(b3)"))
            KSR.pv.seti("$var(empty)", KSR.http_client.query("", "$var(b4)"))
            KSR.pv.seti("$var(badpv)", KSR.http_client.query("\(server.base)/route", "$notapv"))
            """)
        #expect(v["refused"] == "-7")  // CURLE_COULDNT_CONNECT
        #expect(v["scheme"] == "-1")  // CURLE_UNSUPPORTED_PROTOCOL: only http and https
        #expect(v["malformed"] == "-3")  // CURLE_URL_MALFORMAT
        #expect(v["empty"] == "-1")
        #expect(v["badpv"] == "-1")
    }

    @Test func namedConnections() throws {
        let closed = try TestPorts.next()
        let v = try run("""
            KSR.pv.seti("$var(a)", KSR.http_client.curl_connect("auth", "/auth", "$var(ab)"))
            KSR.pv.seti("$var(n)", KSR.http_client.curl_connect("noauth", "auth", "$var(nb)"))
            KSR.pv.seti("$var(p)", KSR.http_client.curl_connect_post("noauth", "/echo", "application/json", '{"a":1}', "$var(pb)"))
            KSR.pv.seti("$var(f)", KSR.http_client.curl_connect("noauth", "/route", "$var(fb)"))
            KSR.pv.seti("$var(u)", KSR.http_client.curl_connect("nosuch", "/route", "$var(ub)"))
            KSR.pv.seti("$var(fo)", KSR.http_client.curl_connect("broken", "/route", "$var(fob)"))
            """, params: ["httpcon": [
                "auth=>http://user:pw@127.0.0.1:\(server.port)",
                "noauth=>http://127.0.0.1:\(server.port);timeout=2",
                "broken=>http://127.0.0.1:\(closed);failover=noauth",
            ]])
        #expect(v["a"] == "200")
        #expect(v["ab"] == "authorized")
        #expect(v["n"] == "401")
        #expect(v["p"] == "200")
        #expect(v["pb"] == #"POST|application/json||{"a":1}"#)
        #expect(v["f"] == "200")
        #expect(v["fb"] == "sip:alice@10.0.0.1\nsecond line\n")  // curl_connect keeps the whole body
        #expect(v["u"] == "-1")
        #expect(v["fo"] == "200")  // refused, then the failover connection answered
        #expect(v["fob"] == "sip:alice@10.0.0.1\nsecond line\n")
    }

    @Test func workerReusesItsConnection() throws {
        let v = try run("""
            KSR.http_client.query("\(server.base)/port", "$var(p1)")
            KSR.http_client.query("\(server.base)/port", "$var(p2)")
            """)
        #expect(v["p1"] != nil && v["p1"] != "")
        #expect(v["p1"] == v["p2"], "a second request from the same worker opened a new connection")
    }
}
