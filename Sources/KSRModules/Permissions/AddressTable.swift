#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One row of permissions' `address` table (Kamailio columns grp, ip_addr, mask, port, tag).
public struct AddressEntry: Sendable, Equatable {
    public var group: Int
    /// The address as 4 (IPv4) or 16 (IPv6) bytes.
    public var address: [UInt8]
    /// Prefix length in bits (32/128 = one address).
    public var mask: Int
    /// 0 = any port.
    public var port: Int
    public var tag: String?

    /// True if `ip` (4 or 16 bytes) and `port` fall in this entry.
    func matches(_ ip: [UInt8], port p: Int) -> Bool {
        guard ip.count == address.count, port == 0 || port == p else { return false }
        var bits = mask
        for i in 0..<ip.count {
            if bits <= 0 { return true }
            let m: UInt8 = bits >= 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if ip[i] & m != address[i] & m { return false }
            bits -= 8
        }
        return true
    }

    var isSingleAddress: Bool { mask == address.count * 8 }
}

/// permissions' address table, kept in a text file (Starling has no database for it): one entry per
/// line, `grp ip[/mask] [port] [tag]`; `#` starts a comment. Port 0 or absent = any port. Reloaded by
/// `permissions.addressReload` and when the file changes (checked by the periodic job).
public final class AddressTable: Sendable {
    public let path: String?
    private let state = Mutex<(entries: [AddressEntry], mtime: Int, size: Int)>(([], -1, -1))

    public init(path: String?) {
        self.path = path.flatMap { $0.isEmpty ? nil : $0 }
        if self.path != nil { _ = try? reload() }
    }

    public struct LoadError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The entries in file order.
    public var entries: [AddressEntry] { state.withLock { $0.entries } }

    /// Parses an address as 4 or 16 bytes.
    public static func parseIP(_ s: String) -> [UInt8]? {
        var text = s
        if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// Parses the file's text; throws on the first bad line.
    public static func parse(_ text: String) throws(LoadError) -> [AddressEntry] {
        var out: [AddressEntry] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if f.isEmpty { continue }
            guard f.count >= 2, let grp = Int(f[0]) else {
                throw LoadError(description: "line \(n + 1): expected 'grp ip[/mask] [port] [tag]'")
            }
            let ipMask = f[1].split(separator: "/", maxSplits: 1).map(String.init)
            guard let ip = parseIP(ipMask[0]) else { throw LoadError(description: "line \(n + 1): bad address '\(ipMask[0])'") }
            var mask = ip.count * 8
            if ipMask.count == 2 {
                guard let m = Int(ipMask[1]), m >= 0, m <= ip.count * 8 else {
                    throw LoadError(description: "line \(n + 1): bad mask '\(ipMask[1])'")
                }
                mask = m
            }
            var port = 0
            if f.count >= 3 {
                guard let p = Int(f[2]), p >= 0, p < 65536 else { throw LoadError(description: "line \(n + 1): bad port '\(f[2])'") }
                port = p
            }
            let tag = f.count >= 4 ? f[3...].joined(separator: " ") : nil
            out.append(AddressEntry(group: grp, address: ip, mask: mask, port: port, tag: tag))
        }
        return out
    }

    /// Re-reads the file. Returns the number of entries; on error the old entries stay.
    @discardableResult
    public func reload() throws(LoadError) -> Int {
        guard let path else { return 0 }
        let (mtime, size) = Self.fileStamp(path)
        guard let fp = fopen(path, "r") else { throw LoadError(description: "cannot open \(path)") }
        defer { fclose(fp) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, fp)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        let entries = try Self.parse(String(decoding: bytes, as: UTF8.self))
        state.withLock { $0 = (entries, mtime, size) }
        return entries.count
    }

    /// Reloads when the file's modification time or size changed (the periodic job).
    public func reloadIfChanged() {
        guard let path else { return }
        let (mtime, size) = Self.fileStamp(path)
        let changed = state.withLock { $0.mtime != mtime || $0.size != size }
        if changed && mtime >= 0 { _ = try? reload() }
    }

    private static func fileStamp(_ path: String) -> (Int, Int) {
        var st = stat()
        guard stat(path, &st) == 0 else { return (-1, -1) }
        return (Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec), Int(st.st_size))
    }

    /// The first entry (single addresses first, then subnets, each in file order) that `ip`:`port`
    /// matches in `group` (nil = any group).
    public func match(ip: String, port: Int, group: Int?) -> AddressEntry? {
        guard let bytes = Self.parseIP(ip) else { return nil }
        let all = entries
        func find(single: Bool) -> AddressEntry? {
            for e in all where e.isSingleAddress == single && (group == nil || e.group == group) && e.matches(bytes, port: port) {
                return e
            }
            return nil
        }
        return find(single: true) ?? find(single: false)
    }
}
