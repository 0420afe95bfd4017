import Foundation
import SIPCore
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

/// Helpers of the tm suites that drive a ScriptHarness with hand-written replies.
enum TMT {
    static let caller = SocketAddress(ip: "192.0.2.10", port: 5060)!

    static func address(_ ip: String, _ port: Int = 5060) -> SocketAddress { SocketAddress(ip: ip, port: port)! }

    /// A harness over `script` with `[modparam.tm]` values.
    static func harness(_ script: String, _ params: [String: [String]] = [:],
                        services: TestServices = TestServices()) throws -> ScriptHarness {
        try ScriptHarness(script: script, config: ModuleConfiguration(params: ["tm": params]), services: services)
    }

    /// A reply to a request as it was sent (its Vias, From, To with a tag, Call-ID, CSeq), plus extra lines.
    static func reply(to sent: SentMessage, _ code: Int, _ reason: String, toTag: String? = "callee",
                      extra: String = "") -> String {
        var out = "SIP/2.0 \(code) \(reason)\r\n"
        for line in sent.text.split(separator: "\r\n", omittingEmptySubsequences: false) {
            let l = String(line)
            if l.hasPrefix("Via:") || l.hasPrefix("From:") || l.hasPrefix("Call-ID:") || l.hasPrefix("CSeq:") {
                out += l + "\r\n"
            } else if l.hasPrefix("To:") {
                out += l + (toTag.map { ";tag=\($0)" } ?? "") + "\r\n"
            }
        }
        return out + extra + "Content-Length: 0\r\n\r\n"
    }

    static func status(_ s: SentMessage) -> Int { s.message.map { $0.isRequest ? 0 : $0.statusCode } ?? -1 }
    static func isRequest(_ s: SentMessage, _ method: String) -> Bool { s.text.hasPrefix(method + " ") }

    /// The requests of a method sent so far.
    static func sent(_ h: ScriptHarness, _ method: String) -> [SentMessage] {
        h.sender.sent.filter { isRequest($0, method) }
    }

    /// The Request-URI of a sent request.
    static func requestURI(_ s: SentMessage) -> String {
        let first = s.text.split(separator: "\r\n").first ?? ""
        let parts = first.split(separator: " ")
        return parts.count > 1 ? String(parts[1]) : ""
    }

    /// The value of the first header line `name:` of a sent message (nil: none).
    static func header(_ s: SentMessage, _ name: String) -> String? {
        for line in s.text.split(separator: "\r\n") where line.lowercased().hasPrefix(name.lowercased() + ":") {
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// `$var(name)` as text ("<none>" when unset).
    static func v(_ h: ScriptHarness, _ name: String) -> String {
        switch h.context.worker.vars[name] {
        case .int(let i)?: return String(i)
        case .string(let s)?: return s
        case .null?: return "null"
        case nil: return "<none>"
        }
    }

    /// Runs the timers until `d` has passed, in steps.
    static func run(_ h: ScriptHarness, for d: Duration, step: Duration = .milliseconds(100)) {
        var t = Duration.zero
        while t < d { h.advance(by: step); t += step }
    }
}

/// Lua: `save(name, pv)` stores `tostring(KSR.pv.get(pv))` in `$var(name)`.
let tmSaveHelper = """
    function save(name, pv)
      KSR.pv.sets("$var(" .. name .. ")", tostring(KSR.pv.get(pv)))
    end

    """
