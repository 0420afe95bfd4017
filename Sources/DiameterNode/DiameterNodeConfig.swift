public import Diameter

/// `[diameter]` as the node uses it (validated by the configuration loader).
public struct DiameterNodeConfig: Sendable, Equatable {
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        /// TLS on this connection/listener (RFC 6733 §13: TLS from the first byte).
        public var tls: Bool
        public init(host: String, port: Int, tls: Bool = false) { self.host = host; self.port = port; self.tls = tls }
        public var description: String { "\(tls ? "tls" : "tcp"):\(host):\(port)" }

        /// Parses "tcp:IP:PORT" or "tls:IP:PORT" (port default 3868, 5658 for TLS); nil for other forms.
        public static func parse(_ s: String) -> Endpoint? {
            var rest = Substring(s)
            var tls = false
            if rest.hasPrefix("tcp:") { rest = rest.dropFirst(4) } else if rest.hasPrefix("tls:") {
                rest = rest.dropFirst(4)
                tls = true
            } else if rest.contains(":") && rest.split(separator: ":").count > 2 { return nil }
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 1 || parts.count == 2, !parts[0].isEmpty else { return nil }
            let port = parts.count == 2 ? Int(parts[1]) : (tls ? 5658 : 3868)
            guard let port, (1...65535).contains(port) else { return nil }
            guard parts[0].split(separator: ".").count == 4, parts[0].split(separator: ".").allSatisfy({ UInt8($0) != nil }) else { return nil }
            return Endpoint(host: String(parts[0]), port: port, tls: tls)
        }
    }

    public struct Peer: Sendable, Equatable {
        public var identity: String
        public var connect: Endpoint?
        public var realm: String?
        /// Application ids this peer is used for; nil: learned from its CER/CEA.
        public var applications: [UInt32]?
        public init(identity: String, connect: Endpoint? = nil, realm: String? = nil, applications: [UInt32]? = nil) {
            self.identity = identity
            self.connect = connect
            self.realm = realm
            self.applications = applications
        }
    }

    public struct Route: Sendable, Equatable {
        public var realm: String
        /// nil: any application.
        public var application: UInt32?
        /// Peers by metric (lower first).
        public var peers: [(identity: String, metric: Int)]
        public init(realm: String, application: UInt32? = nil, peers: [(identity: String, metric: Int)]) {
            self.realm = realm
            self.application = application
            self.peers = peers
        }
        public static func == (a: Route, b: Route) -> Bool {
            a.realm == b.realm && a.application == b.application && a.peers.map(\.identity) == b.peers.map(\.identity)
                && a.peers.map(\.metric) == b.peers.map(\.metric)
        }
    }

    /// The `[tls]` files used by `tls:` listeners and connections.
    public struct TLSFiles: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String
        /// Outgoing connections verify the peer's chain against it when set (no host name check:
        /// peers are addressed by IP); without it they do not verify.
        public var caList: String?
        public var verifyServer: Bool
        public init(certificate: String, privateKey: String, caList: String?, verifyServer: Bool) {
            self.certificate = certificate; self.privateKey = privateKey; self.caList = caList; self.verifyServer = verifyServer
        }
    }

    public var identity: String
    public var realm: String
    public var tls: TLSFiles?
    public var listen: [Endpoint]
    public var peers: [Peer]
    public var acceptUnknownPeers: Bool
    public var routes: [Route]
    /// RFC 3539 Tw in milliseconds (30 s by default).
    public var watchdogInterval: Int64
    /// How long a relayed request waits for its answer before 3002 is sent back.
    public var requestTimeout: Int64
    public var productName: String

    public init(identity: String, realm: String, listen: [Endpoint] = [], peers: [Peer] = [], acceptUnknownPeers: Bool = false,
                routes: [Route] = [], watchdogInterval: Int64 = 30_000, requestTimeout: Int64 = 5_000,
                productName: String = "Starling") {
        self.identity = identity
        self.realm = realm
        self.listen = listen
        self.peers = peers
        self.acceptUnknownPeers = acceptUnknownPeers
        self.routes = routes
        self.watchdogInterval = watchdogInterval
        self.requestTimeout = requestTimeout
        self.productName = productName
    }
}

/// Who runs the script for requests (the server's Diameter routing thread).
public protocol DiameterRequestRouter: AnyObject, Sendable {
    /// Routes one request; `complete` must be called exactly once, from any thread.
    func route(_ request: DiameterMessage, fromPeer: String, complete: @escaping @Sendable (DiameterDecision) -> Void)
}
