import Glibc
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
        let tagAVP = runtime.config[peerTagAVP].flatMap(avpName)
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

extension PermissionsModule: KSRModule {
    static let name = "permissions"
    static let summary = "Address checks against the address table file."
    static let addressFile = ModuleParameter.optionalStr("permissions", "address_file",
                                                         "The address table: lines `grp ip[/mask] [port] [tag]` (re-read when it changes).")
    static let peerTagAVP = ModuleParameter.optionalStr("permissions", "peer_tag_avp", "The AVP that receives the tag of the matching entry.")
    static let parameters = [addressFile.info, peerTagAVP.info]

    /// Kamailio refuses to start with an address table it cannot load.
    static func start(_ runtime: ModuleRuntime) throws(ModuleStartError) {
        guard runtime.addresses.path != nil else { return }
        do throws(AddressTable.LoadError) {
            _ = try runtime.addresses.reload()
        } catch {
            throw ModuleStartError(key: "modparam.permissions.address_file", error.description)
        }
    }

    static let rpcMethods = [
        ModuleRPCMethod("permissions.addressReload", "permissions.addressReload: re-reads the address file.") { rt, _ throws(RPCFault) in
            guard rt.addresses.path != nil else { throw RPCFault(500, "Reload failed. No address file configured (address_file)") }
            do throws(AddressTable.LoadError) {
                _ = try rt.addresses.reload()
            } catch {
                throw RPCFault(500, "Reload failed. \(error.description)")
            }
            return .string("Reload OK")
        },
        ModuleRPCMethod("permissions.addressDump", "permissions.addressDump: the address entries (gid, ip, mask, port, tag).") { rt, _ throws(RPCFault) in
            .array(rt.addresses.entries.map { e in
                .object(["gid": .int(e.group), "ip": .string(ipText(e.address)), "mask": .int(e.mask), "port": .int(e.port),
                         "tag": .string(e.tag ?? "")])
            })
        },
    ]

    static func ipText(_ bytes: [UInt8]) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buf, 64) } != nil
        guard ok, let end = buf.firstIndex(of: 0) else { return "" }
        return String(decoding: buf[0..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
