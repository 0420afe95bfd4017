import CCrypto

/// The hash algorithms of SIP digest authentication (RFC 2617 MD5, RFC 8760 SHA-256 and SHA-512-256),
/// computed by OpenSSL's libcrypto (Debian libssl-dev).
public enum DigestHash: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha256 = "SHA-256"
    case sha512_256 = "SHA-512-256"

    /// The algorithm named by an `algorithm=` parameter (case-insensitive; `-sess` variants are not
    /// distinguished here), or nil.
    public init?(algorithmName: some StringProtocol) {
        var name = algorithmName.uppercased()
        if name.hasSuffix("-SESS") { name.removeLast(5) }
        guard let h = DigestHash(rawValue: name) else { return nil }
        self = h
    }

    /// The lower-case hex digest of `bytes`.
    public func hex(_ bytes: some Collection<UInt8>) -> String {
        let digest = self.digest(Array(bytes))
        let hexDigits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(digest.count * 2)
        for b in digest {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The lower-case hex digest of a string's UTF-8 bytes.
    public func hex(_ s: String) -> String { hex(Array(s.utf8)) }

    /// The raw digest.
    public func digest(_ bytes: [UInt8]) -> [UInt8] {
        let md: OpaquePointer? = switch self {
        case .md5: EVP_md5()
        case .sha256: EVP_sha256()
        case .sha512_256: EVP_sha512_256()
        }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let ok = bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                EVP_Digest(src.baseAddress, src.count, dst.baseAddress, &len, md, nil)
            }
        }
        precondition(ok == 1, "EVP_Digest failed")
        return Array(out.prefix(Int(len)))
    }

    /// `count` cryptographically random bytes (nonces).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed")
        return out
    }
}
