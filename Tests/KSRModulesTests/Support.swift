import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting

enum Msg {
    static let invite = """
        INVITE sip:bob@example.com SIP/2.0\r
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r
        Max-Forwards: 70\r
        To: Bob <sip:bob@example.com>\r
        From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
        Call-ID: a84b4c76e66710@pc33\r
        CSeq: 314159 INVITE\r
        Contact: <sip:alice@192.0.2.10:5060>\r
        User-Agent: TestUA/1.0\r
        X-Multi: one\r
        X-Multi: two\r
        Content-Type: application/sdp\r
        Content-Length: 4\r
        \r
        v=0\r

        """

    static func options(_ ruri: String = "sip:127.0.0.1:5060", extra: String = "") -> String {
        "OPTIONS \(ruri) SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt1\r\nFrom: <sip:a@example.com>;tag=9\r\nTo: <sip:b@example.com>\r\nCall-ID: opt1\r\nCSeq: 7 OPTIONS\r\n\(extra)Content-Length: 0\r\n\r\n"
    }

    static let ringing = """
        SIP/2.0 180 Ringing\r
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1\r
        Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;received=192.0.2.99\r
        To: Bob <sip:bob@example.com>;tag=b1\r
        From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r
        Call-ID: a84b4c76e66710@pc33\r
        CSeq: 314159 INVITE\r
        Content-Length: 0\r
        \r

        """
}

/// Runs Lua code in `ksr_request_route` (or the reply route for replies) and reports what the last
/// expression gave, as "type:value".
func eval(_ expr: String, _ message: String = Msg.invite, before: String = "", modules: [String]? = nil,
          services: TestServices = TestServices()) throws -> (String, ScriptHarness) {
    let script = """
        function ksr_request_route()
          \(before)
          local v = \(expr)
          KSR.pv.sets("$var(out)", type(v) .. ":" .. tostring(v))
        end
        function ksr_reply_route()
          ksr_request_route()
        end
        """
    let h = try ScriptHarness(script: script, modules: modules, services: services)
    try h.route(message)
    guard case .string(let s)? = h.context.worker.vars["out"] else { return ("<no result>", h) }
    return (s, h)
}

func evalValue(_ expr: String, _ message: String = Msg.invite, before: String = "", modules: [String]? = nil) throws -> String {
    try eval(expr, message, before: before, modules: modules).0
}
