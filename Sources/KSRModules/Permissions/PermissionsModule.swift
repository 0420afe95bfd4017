import SIPTransport
import StarlingKEMI
import Logging

/// `KSR.permissions` (REFERENCE §2.21) over the address table file (`[modparam.permissions]
/// address_file`; format in AddressTable). Without a file the table is empty: every check is -1.
enum PermissionsModule {
    static let fileNote = "address table from the file `address_file` (lines `grp ip[/mask] [port] [tag]`), not a database"

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let table = runtime.addresses
        // `peer_tag_avp = "$avp(tag)"`: the matching entry's tag goes there.
        let tagAVP = runtime.config.string("permissions", "peer_tag_avp").flatMap(avpName)
        @Sendable func found(_ ctx: RouteContext, _ e: AddressEntry?) -> AddressEntry? {
            if let e, let tagAVP, let tag = e.tag { ctx.avps[tagAVP, default: []].append(.string(tag)) }
            return e
        }
        return [
            KemiExport("permissions", "allow_source_address", [.int], returns: .int, compat: fileNote) { ctx, args in
                let src = ctx.received.source
                return .code(found(ctx, table.match(ip: src.ip, port: Int(src.port), group: args.int(0))) != nil)
            },
            KemiExport("permissions", "allow_address", [.int, .str, .int], returns: .int, compat: fileNote) { ctx, args in
                .code(found(ctx, table.match(ip: args.str(1), port: args.int(2), group: args.int(0))) != nil)
            },
            KemiExport("permissions", "allow_source_address_group", [], returns: .int, compat: fileNote) { ctx, _ in
                let src = ctx.received.source
                return .int(found(ctx, table.match(ip: src.ip, port: Int(src.port), group: nil))?.group ?? -1)
            },
            KemiExport("permissions", "allow_address_group", [.str, .int], returns: .int, compat: fileNote) { ctx, args in
                .int(found(ctx, table.match(ip: args.str(0), port: args.int(1), group: nil))?.group ?? -1)
            },
            KemiExport("permissions", "allow_trusted", [], returns: .int,
                       compat: "no trusted table yet: always -1") { _, _ in .int(-1) },
        ]
    }

    /// The AVP name of `$avp(name)` / `$avp(s:name)`.
    static func avpName(_ spec: String) -> String? {
        guard spec.hasPrefix("$avp("), spec.hasSuffix(")") else { return nil }
        var inner = String(spec.dropFirst(5).dropLast())
        if inner.hasPrefix("s:") || inner.hasPrefix("i:") { inner = String(inner.dropFirst(2)) }
        return inner.isEmpty ? nil : inner
    }
}
