/// Why a message was refused, and what a server answers: `status` is the SIP status code a server replies
/// with (400, 505, 416, 413...) or nil when the message must be dropped silently (responses, garbage).
public struct SIPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    enum Kind: String, Sendable {
        case empty, tooLarge, badStartLine, badVersion, badStatusCode, badRequestURI, uriTooLong
        case badHeaderLine, tooManyHeaders, headerLineTooLong, incompleteHeaders
        case badContentLength, duplicateContentLength, truncatedBody, duplicateHeader, missingHeader
        case badVia, badCSeq, cseqMethodMismatch, badMaxForwards, badNameAddr, badExpires
        case badContact, badAuthorization, badHeaderValue, tooManyValues
    }

    let kind: Kind
    /// The SIP status a server answers with, or nil to drop.
    public let status: Int?
    /// A short reason phrase, usable in the reply's status line ("Bad CSeq").
    public let reason: String
    /// What exactly was wrong, for logs and `starling parse`.
    public let detail: String

    init(_ kind: Kind, status: Int?, reason: String, _ detail: String) {
        self.kind = kind
        self.status = status
        self.reason = reason
        self.detail = detail
    }

    /// A stable identifier of the problem ("bad-cseq"), for JSON output and metrics.
    public var code: String {
        var out = ""
        for ch in kind.rawValue {
            if ch.isUppercase { out += "-" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    public var description: String {
        "\(reason): \(detail)" + (status.map { " (answer \($0))" } ?? " (drop)")
    }

    static func bad400(_ kind: Kind, _ reason: String, _ detail: String) -> SIPParseError {
        SIPParseError(kind, status: 400, reason: reason, detail)
    }
}
