public import SIPCore
public import SIPTransport

/// A TCP, TLS, WS or WSS listen address.
public struct StreamListener: Sendable, Hashable, CustomStringConvertible {
    public var proto: SIPTransportProtocol
    public var address: SIPTransport.SocketAddress
    /// Accept a PROXY protocol v1/v2 header first and take the source address from it.
    public var proxyProtocol: Bool

    public init(proto: SIPTransportProtocol, address: SIPTransport.SocketAddress, proxyProtocol: Bool = false) {
        self.proto = proto
        self.address = address
        self.proxyProtocol = proxyProtocol
    }

    public var description: String { "\(proto.name):\(address)" }
}

/// TLS settings (`[tls]` in the configuration): PEM files, client verification, minimum version.
public struct TLSSettings: Sendable, Hashable {
    /// The server certificate chain (PEM file).
    public var certificate: String
    /// The private key of the certificate (PEM file).
    public var privateKey: String
    /// CA certificates (PEM file) that client certificates, and servers we connect to, must chain to.
    public var caList: String?
    /// Ask clients for a certificate and verify it against `caList`.
    public var verifyClient: Bool
    /// With `verifyClient`: refuse the handshake when the client sends no certificate.
    public var requireClientCertificate: Bool
    /// Verify the certificate chain and name of servers Starling connects to: the chain against
    /// `caList`, else `systemCABundle`; the name against the host the destination was resolved from
    /// (SNI is sent with it), else the IP address connected to.
    public var verifyServer: Bool
    /// Lowest protocol version accepted: "TLSv1.2" (default) or "TLSv1.3" ("TLSv1", "TLSv1.1" allowed).
    public var minVersion: String
    /// Extra certificates chosen by SNI: server name (lower case, or `*.example.com`) -> (certificate, key).
    public var domains: [String: TLSDomain]

    /// Debian's CA bundle (ca-certificates).
    public static let systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

    public init(certificate: String, privateKey: String, caList: String? = nil, verifyClient: Bool = false,
                requireClientCertificate: Bool = false, verifyServer: Bool = true, minVersion: String = "TLSv1.2",
                domains: [String: TLSDomain] = [:]) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.caList = caList
        self.verifyClient = verifyClient
        self.requireClientCertificate = requireClientCertificate
        self.verifyServer = verifyServer
        self.minVersion = minVersion
        self.domains = domains
    }
}

/// A certificate served for one SNI name.
public struct TLSDomain: Sendable, Hashable {
    public var certificate: String
    public var privateKey: String
    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// Connection handling settings (Kamailio's tcp_* core parameters).
public struct StreamSettings: Sendable {
    /// `tcp_connection_lifetime`: seconds a connection may stay idle before it is closed (default 120).
    public var connectionLifetime: Int
    /// `tcp_connect_timeout`: milliseconds to wait for an outgoing connection (default 10,000).
    public var connectTimeoutMillis: Int
    /// `tcp_max_connections`: connections (inbound and outbound) kept at once (default 2048).
    public var maxConnections: Int
    /// Bytes queued for a connection that does not read before sends to it are refused (default 1 MiB).
    public var maxQueuedBytes: Int
    /// Message size limits (the stream framer uses `maxMessageSize`).
    public var limits: SIPParserLimits
    public var tls: TLSSettings?
    /// NIO event loop threads (default 1).
    public var eventLoopThreads: Int
    /// `tcp_crlf_ping`: answer a CRLFCRLF ping with a CRLF pong (default true, as Kamailio).
    public var crlfPing = true
    /// `tcp_accept_no_cl`: a message without Content-Length has an empty body (default false: refused).
    public var acceptNoContentLength = false
    /// `tcp_keepalive`: SO_KEEPALIVE on every connection (default true, as Kamailio).
    public var keepalive = true
    /// `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt`: TCP_KEEPIDLE/KEEPINTVL/KEEPCNT (0: the system's).
    public var keepIdle = 0
    public var keepInterval = 0
    public var keepCount = 0

    public init(connectionLifetime: Int = 120, connectTimeoutMillis: Int = 10_000, maxConnections: Int = 2048,
                maxQueuedBytes: Int = 1 << 20, limits: SIPParserLimits = .default, tls: TLSSettings? = nil,
                eventLoopThreads: Int = 1) {
        self.connectionLifetime = connectionLifetime
        self.connectTimeoutMillis = connectTimeoutMillis
        self.maxConnections = maxConnections
        self.maxQueuedBytes = maxQueuedBytes
        self.limits = limits
        self.tls = tls
        self.eventLoopThreads = eventLoopThreads
    }
}

/// How a send over a connection behaves (`set_forward_close`, `set_forward_no_connect`, ...).
public struct StreamSendOptions: Sendable, Equatable {
    /// Close the connection once the message is written.
    public var close: Bool
    /// Only use an existing connection; never connect.
    public var noConnect: Bool
    public init(close: Bool = false, noConnect: Bool = false) {
        self.close = close
        self.noConnect = noConnect
    }
}
