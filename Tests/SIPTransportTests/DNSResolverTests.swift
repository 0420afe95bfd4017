import Testing
import Foundation
@testable import SIPTransport

private func resolver(_ server: TestDNSServer, timeout: Duration = .seconds(2), negativeTTL: Duration = .seconds(10)) throws -> DNSResolver {
    try DNSResolver(configuration: .init(servers: [server.address], timeout: timeout, attemptTimeout: .milliseconds(200),
                                         useHostsFile: false, negativeTTL: negativeTTL))
}

private func addr(_ s: String) -> SocketAddress { SocketAddress(s)! }

@Suite("DNS resolver (c-ares) against a local test server", .serialized)
struct DNSResolverTests {
    @Test("numeric addresses resolve to themselves without DNS")
    func numeric() throws {
        // An unreachable server: any DNS query would time out.
        let r = try DNSResolver(configuration: .init(servers: [addr("127.0.0.1:9")], timeout: .milliseconds(100)))
        #expect(try r.resolve(host: "192.0.2.7", port: 5080) == [addr("192.0.2.7:5080")])
        #expect(try r.resolve(host: "[2001:db8::1]", port: 5060) == [addr("[2001:db8::1]:5060")])
        #expect(try r.resolve(host: "2001:db8::1", port: nil, proto: .tls) == [addr("[2001:db8::1]:5061")])
        #expect(try r.resolve(host: "10.1.2.3", port: nil) == [addr("10.1.2.3:5060")])
    }

    @Test("A lookup")
    func aRecord() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        #expect(try r.resolve(host: "test.example", port: 5060) == [addr("127.0.0.1:5060")])
        #expect(try r.resolve(host: "TEST.example", port: 5090) == [addr("127.0.0.1:5090")])
    }

    @Test("A and AAAA, IPv4 first; AAAA only")
    func dualStack() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        #expect(try r.resolve(host: "dual.test.example", port: 5060) == [addr("192.0.2.10:5060"), addr("[2001:db8::10]:5060")])
        #expect(try r.addresses(of: "v6.test.example") == [addr("[2001:db8::6]:0")])
    }

    @Test("NXDOMAIN is notFound, and is cached briefly")
    func notFound() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        #expect {
            _ = try r.resolve(host: "missing.test.example", port: 5060)
        } throws: { ($0 as? DNSError)?.kind == .notFound && ($0 as? DNSError)?.name == "missing.test.example" }
        server.stop()
        #expect {
            _ = try r.resolve(host: "missing.test.example", port: 5060)
        } throws: { ($0 as? DNSError)?.kind == .notFound }
    }

    @Test("no answer in time is a timeout, within the configured bound")
    func timeout() throws {
        let server = try TestDNSServer()
        let r = try resolver(server, timeout: .milliseconds(300))
        let clock = ContinuousClock()
        let start = clock.now
        #expect {
            _ = try r.resolve(host: "slow.test.example", port: 5060)
        } throws: { ($0 as? DNSError)?.kind == .timeout }
        #expect(clock.now - start < .seconds(2))
        // The channel is still usable afterwards.
        #expect(try r.resolve(host: "test.example", port: 1) == [addr("127.0.0.1:1")])
    }

    @Test("answers are cached until their TTL expires")
    func cacheTTL() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        #expect(try r.addresses(of: "counter.test.example") == [addr("10.0.0.1:0")])
        #expect(try r.addresses(of: "counter.test.example") == [addr("10.0.0.1:0")])  // cached
        usleep(1_200_000)  // TTL 1 s
        #expect(try r.addresses(of: "counter.test.example") == [addr("10.0.0.2:0")])
        r.clearCache()
        #expect(try r.addresses(of: "counter.test.example") == [addr("10.0.0.3:0")])
        // A positive answer survives the server going away.
        #expect(try r.addresses(of: "test.example") == [addr("127.0.0.1:0")])
        server.stop()
        #expect(try r.addresses(of: "test.example") == [addr("127.0.0.1:0")])
    }

    @Test("SRV query and RFC 3263 resolution without a port")
    func srv() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        let records = try r.querySRV("_sip._udp.srv.test.example")
        #expect(Set(records) == [SRVRecord(priority: 10, weight: 60, port: 5070, target: "a.srv.test.example"),
                                  SRVRecord(priority: 20, weight: 0, port: 5080, target: "b.srv.test.example")])
        #expect(DNSResolver.ordered(records).map(\.port) == [5070, 5080])
        #expect(try r.resolve(host: "srv.test.example", port: nil) == [addr("192.0.2.1:5070"), addr("192.0.2.2:5080")])
        // With a port, SRV is not used.
        #expect(try r.resolve(host: "srv.test.example", port: 5060) == [addr("192.0.2.99:5060")])
        // No SRV record: A with the default port.
        #expect(try r.resolve(host: "nosrv.test.example", port: nil) == [addr("192.0.2.50:5060")])
        #expect(try r.resolve(host: "nosrv.test.example", port: nil, proto: .tls) == [addr("192.0.2.50:5061")])
    }

    @Test("NAPTR query (ENUM)")
    func naptr() throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        let records = try r.queryNAPTR("4.3.2.1.e164.arpa")
        #expect(records == [
            NAPTRRecord(order: 100, preference: 10, flags: "u", service: "E2U+sip", regexp: "!^.*$!sip:info@example.com!", replacement: ""),
            NAPTRRecord(order: 100, preference: 20, flags: "u", service: "E2U+h323", regexp: "!^.*$!h323:info@example.com!", replacement: ""),
        ])
        #expect {
            _ = try r.queryNAPTR("5.3.2.1.e164.arpa")
        } throws: { ($0 as? DNSError)?.kind == .notFound }
    }

    @Test("concurrent lookups from several threads")
    func concurrent() async throws {
        let server = try TestDNSServer()
        let r = try resolver(server)
        try await withThrowingTaskGroup(of: [SocketAddress].self) { group in
            for i in 0..<8 {
                group.addTask { try r.resolve(host: i % 2 == 0 ? "dual.test.example" : "test.example", port: 5060) }
            }
            for try await result in group { #expect(!result.isEmpty) }
        }
    }
}
