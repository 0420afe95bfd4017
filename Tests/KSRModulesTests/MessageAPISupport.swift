import SIPCore
import StarlingKEMI
import StarlingTesting

/// Evaluates `expr`, then forwards the request to sip:192.0.2.50 and returns the result and the bytes
/// that went on the wire (edits applied).
func evalForward(_ expr: String, _ message: String = Msg.invite, before: String = "") throws -> (String, String) {
    let script = """
        function ksr_request_route()
          \(before)
          local v = \(expr)
          KSR.pv.sets("$var(out)", type(v) .. ":" .. tostring(v))
          KSR.forward_uri("sip:192.0.2.50")
        end
        """
    let h = try ScriptHarness(script: script)
    try h.route(message)
    guard case .string(let s)? = h.context.worker.vars["out"] else { return ("<no result>", "") }
    return (s, h.sender.sent.first?.text ?? "<nothing sent>")
}

enum Msg2 {
    static let multipart = """
        INVITE sip:bob@example.com SIP/2.0\r
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKmp1\r
        From: <sip:alice@example.com>;tag=1\r
        To: <sip:bob@example.com>\r
        Call-ID: mp1\r
        CSeq: 1 INVITE\r
        Content-Type: multipart/mixed;boundary=XYZ\r
        Content-Length: 96\r
        \r
        --XYZ\r
        Content-Type: application/sdp\r
        \r
        v=0\r
        --XYZ\r
        Content-Type: text/plain\r
        \r
        hello\r
        --XYZ--\r

        """
}
