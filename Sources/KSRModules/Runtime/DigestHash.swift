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
        if let s = bytes.withContiguousStorageIfAvailable({ hex(raw: UnsafeRawBufferPointer($0)) }) { return s }
        return Array(bytes).withUnsafeBytes { hex(raw: $0) }
    }

    /// The lower-case hex digest of a string's UTF-8 bytes.
    public func hex(_ s: String) -> String {
        var s = s
        return s.withUTF8 { hex(raw: UnsafeRawBufferPointer($0)) }
    }

    private func hex(raw src: UnsafeRawBufferPointer) -> String {
        withDigest(src) { digest in
            String(unsafeUninitializedCapacity: digest.count * 2) { out in
                let hexDigits: StaticString = "0123456789abcdef"
                let d = hexDigits.utf8Start
                var j = 0
                for b in digest {
                    out[j] = d[Int(b >> 4)]
                    out[j + 1] = d[Int(b & 0x0F)]
                    j += 2
                }
                return j
            }
        }
    }

    /// The raw digest.
    public func digest(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { src in withDigest(src) { Array($0) } }
    }

    /// Hashes `src` into a stack buffer and passes the digest to `body`.
    private func withDigest<R>(_ src: UnsafeRawBufferPointer, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Int(EVP_MAX_MD_SIZE)) { out in
            var len: UInt32 = 0
            let ok = EVP_Digest(src.baseAddress, src.count, out.baseAddress, &len, algorithm, nil)
            precondition(ok == 1, "EVP_Digest failed")
            return body(UnsafeBufferPointer(rebasing: out[0..<Int(len)]))
        }
    }

    /// The algorithm, fetched from the default provider once: `EVP_md5()` and friends make
    /// OpenSSL 3 fetch the implementation (a locked provider lookup) on every `EVP_Digest`.
    private var algorithm: OpaquePointer? {
        switch self {
        case .md5: Fetched.md5
        case .sha256: Fetched.sha256
        case .sha512_256: Fetched.sha512_256
        }
    }

    private enum Fetched {
        // Immutable after the first use; EVP_MD objects are shareable between threads.
        nonisolated(unsafe) static let md5 = EVP_MD_fetch(nil, "MD5", nil) ?? EVP_md5()
        nonisolated(unsafe) static let sha256 = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()
        nonisolated(unsafe) static let sha512_256 =
            EVP_MD_fetch(nil, "SHA512-256", nil) ?? EVP_sha512_256()
    }

    /// `count` cryptographically random bytes (nonces).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed")
        return out
    }
}
