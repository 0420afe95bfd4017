import Testing
import Foundation
import SIPTransport
import StarlingKEMI
import StarlingTesting
import KSRModules

private func tempFile(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "starling-address-\(UUID().uuidString).list"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

private let addressList = """
    # grp ip[/mask] [port] [tag]
    1 192.0.2.10 0 gw1
    1 10.0.0.0/8
    2 192.0.2.20 5070 peer two
    3 2001:db8::/32   # documentation prefix

    """

@Suite struct PermissionsTests {
    @Test func fileFormat() throws {
        let e = try AddressTable.parse(addressList)
        #expect(e.count == 4)
        #expect(e[0].group == 1 && e[0].mask == 32 && e[0].port == 0 && e[0].tag == "gw1")
        #expect(e[1].mask == 8 && e[1].tag == nil)
        #expect(e[2].port == 5070 && e[2].tag == "peer two")
        #expect(e[3].address.count == 16 && e[3].mask == 32)
        #expect(throws: AddressTable.LoadError.self) { try AddressTable.parse("x 1.2.3.4") }
        #expect(throws: AddressTable.LoadError.self) { try AddressTable.parse("1 1.2.3.4/33") }
        #expect(throws: AddressTable.LoadError.self) { try AddressTable.parse("1 nohost") }
    }

    @Test func allowSourceAddressAndTags() throws {
        let path = try tempFile(addressList)
        defer { unlink(path) }
        let s = try ModuleScript("""
            local P = KSR.permissions
            r(P.allow_source_address(1)); r(KSR.pv.get("$avp(tag)")); r(P.allow_source_address(2)); r(P.allow_source_address_group())
            r(P.allow_address(2, "192.0.2.20", 5070)); r(P.allow_address(2, "192.0.2.20", 5071)); r(P.allow_address(1, "10.200.1.1", 9))
            r(P.allow_address_group("2001:db8::1", 5060)); r(P.allow_address_group("2001:db9::1", 5060)); r(P.allow_address(1, "bogus", 0))
            r(P.allow_trusted())
            """, params: ["permissions": ["address_file": [path], "peer_tag_avp": ["$avp(tag)"]]])
        #expect(try s.run() == "1,gw1,-1,1,1,-1,1,3,-1,-1,-1")
        // a source in the subnet entry: group 1, no tag
        #expect(try s.run(from: SocketAddress(ip: "10.1.2.3", port: 5060)) == "1,nil,-1,1,1,-1,1,3,-1,-1,-1")
        #expect(try s.run(from: SocketAddress(ip: "203.0.113.1", port: 5060)) == "-1,nil,-1,-1,1,-1,1,3,-1,-1,-1")
    }

    @Test func reloadByCallAndOnFileChange() throws {
        let path = try tempFile("1 192.0.2.99\n")
        defer { unlink(path) }
        let s = try ModuleScript("r(KSR.permissions.allow_source_address(1))",
                                 params: ["permissions": ["address_file": [path]]])
        #expect(try s.run() == "-1")
        try "1 192.0.2.99\n1 192.0.2.10\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try s.h.runtime.addresses.reload() == 2)
        #expect(try s.run() == "1")
        // changed on disk: the periodic job picks it up
        try "1 192.0.2.99\n".write(toFile: path, atomically: true, encoding: .utf8)
        s.h.advance(by: .seconds(1))
        #expect(try s.run() == "-1")
        // a broken file keeps the entries that were loaded
        try "1 192.0.2.10\nbroken line\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: AddressTable.LoadError.self) { try s.h.runtime.addresses.reload() }
        #expect(s.h.runtime.addresses.entries.count == 1)
        #expect(try s.run() == "-1")
    }

    @Test func noFileMeansEmptyTable() throws {
        let s = try ModuleScript("r(KSR.permissions.allow_source_address(1)); r(KSR.permissions.allow_source_address_group())")
        #expect(try s.run() == "-1,-1")
        #expect(s.h.runtime.addresses.entries.isEmpty)
    }
}
