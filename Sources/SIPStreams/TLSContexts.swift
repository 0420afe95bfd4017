import NIOCore
import NIOSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The server and client TLS contexts, rebuilt from the files on `reload` (new handshakes use the new
/// ones; open connections keep theirs). SNI: when `[tls.domain]` entries exist, the server context picks
/// the certificate by the client's server name.
final class TLSContexts: Sendable {
    private let current = Mutex<(server: NIOSSLContext, client: NIOSSLContext)?>(nil)
    private let sni = Mutex<[String: NIOSSLContextConfigurationOverride]>([:])

    init(_ settings: TLSSettings) throws {
        try reload(settings)
    }

    var server: NIOSSLContext { current.withLock { $0!.server } }
    var client: NIOSSLContext { current.withLock { $0!.client } }

    func reload(_ s: TLSSettings) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(s.certificate).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: s.privateKey, format: .pem)
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        server.minimumTLSVersion = try Self.version(s.minVersion)
        if s.verifyClient {
            guard let ca = s.caList else { throw TLSSettingsError("verify_client needs ca_list") }
            server.trustRoots = .file(ca)
            server.certificateVerification = s.requireClientCertificate ? .noHostnameVerification : .optionalVerification
        }
        var overrides: [String: NIOSSLContextConfigurationOverride] = [:]
        for (name, d) in s.domains {
            var o = NIOSSLContextConfigurationOverride()
            o.certificateChain = try NIOSSLCertificate.fromPEMFile(d.certificate).map { .certificate($0) }
            o.privateKey = .privateKey(try NIOSSLPrivateKey(file: d.privateKey, format: .pem))
            overrides[name.lowercased()] = o
        }
        if !overrides.isEmpty {
            server.sslContextCallback = { [weak self] values, promise in
                let name = values.serverHostname?.lowercased() ?? ""
                let table = self?.sni.withLock { $0 } ?? [:]
                var found = table[name]
                if found == nil, let dot = name.firstIndex(of: ".") { found = table["*" + name[dot...]] }
                promise.succeed(found ?? NIOSSLContextConfigurationOverride())
            }
        }
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = server.minimumTLSVersion
        client.certificateChain = chain
        client.privateKey = .privateKey(key)
        if s.verifyServer {
            // The chain against ca_list, else Debian's bundle (else BoringSSL's default locations); the
            // name against the host the destination was resolved from, else the IP address (swift-nio-ssl
            // checks the IP SANs when no server name is given).
            if let ca = s.caList {
                client.trustRoots = .file(ca)
            } else if access(TLSSettings.systemCABundle, R_OK) == 0 {
                client.trustRoots = .file(TLSSettings.systemCABundle)
            }
            client.certificateVerification = .fullVerification
        } else {
            client.certificateVerification = .none
        }
        let pair = (server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client))
        sni.withLock { $0 = overrides }
        current.withLock { $0 = pair }
    }

    static func version(_ text: String) throws -> TLSVersion {
        switch String(text.lowercased().map { $0 == "_" ? "." : $0 }) {
        case "tlsv1", "tlsv1.0", "1.0": return .tlsv1
        case "tlsv1.1", "1.1": return .tlsv11
        case "tlsv1.2", "1.2", "": return .tlsv12
        case "tlsv1.3", "1.3": return .tlsv13
        default: throw TLSSettingsError("min_version \"\(text)\": expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")
        }
    }
}

struct TLSSettingsError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
