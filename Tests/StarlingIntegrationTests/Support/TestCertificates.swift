import Foundation

/// Certificates made with the openssl CLI in a test's directory: a CA, a server certificate for
/// `sip.test` (and 127.0.0.1) and one for `other.test` (SNI), a client certificate from the CA, and a
/// second CA with a client certificate of its own (the "wrong CA").
struct TestCertificates {
    let directory: URL
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    var ca: String { path("ca.pem") }
    var serverCert: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    var otherCert: String { path("other.pem") }
    var otherKey: String { path("other.key") }
    var clientCert: String { path("client.pem") }
    var clientKey: String { path("client.key") }
    var wrongCA: String { path("wrongca.pem") }
    var wrongClientCert: String { path("wrongclient.pem") }
    var wrongClientKey: String { path("wrongclient.key") }

    static func make(in directory: URL) throws -> TestCertificates {
        let openssl = try Requirements.tool("openssl", package: "openssl")
        let c = TestCertificates(directory: directory)
        func run(_ args: [String]) throws {
            let r = try Command.run(openssl, args, timeout: .seconds(30), workingDirectory: directory)
            guard r.status == 0 else { throw HarnessError("openssl \(args.joined(separator: " ")) failed: \(r.output)") }
        }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for (name, cn) in [("ca", "Starling Test CA"), ("wrongca", "Wrong CA")] {
            try run(["req", "-x509"] + key + ["-keyout", c.path("\(name).key"), "-out", c.path("\(name).pem"), "-days", "2",
                     "-subj", "/CN=\(cn)"])
        }
        for (name, cn, ca, san) in [("server", "sip.test", "ca", "DNS:sip.test,IP:127.0.0.1"), ("other", "other.test", "ca", "DNS:other.test"),
                                    ("client", "alice.test", "ca", "DNS:alice.test"),
                                    ("wrongclient", "mallory.test", "wrongca", "DNS:mallory.test")] {
            try run(["req"] + key + ["-keyout", c.path("\(name).key"), "-out", c.path("\(name).csr"), "-subj", "/CN=\(cn)"])
            try "subjectAltName=\(san)\n".write(to: directory.appendingPathComponent("\(name).ext"), atomically: true, encoding: .utf8)
            try run(["x509", "-req", "-in", c.path("\(name).csr"), "-CA", c.path("\(ca).pem"), "-CAkey", c.path("\(ca).key"),
                     "-CAcreateserial", "-out", c.path("\(name).pem"), "-days", "2", "-extfile", c.path("\(name).ext")])
        }
        return c
    }

    /// A `[tls]` section using these files.
    func tlsSection(verifyClient: Bool = false, require: Bool = false, sni: Bool = false, minVersion: String = "TLSv1.2") -> String {
        var s = """
        [tls]
        certificate = "\(serverCert)"
        private_key = "\(serverKey)"
        ca_list = "\(ca)"
        verify_client = \(verifyClient)
        require_client_certificate = \(require)
        min_version = "\(minVersion)"

        """
        if sni {
            s += """
            [tls.domain."other.test"]
            certificate = "\(otherCert)"
            private_key = "\(otherKey)"

            """
        }
        return s
    }
}
