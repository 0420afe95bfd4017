public import SIPCore
public import SIPTransport
public import Logging

/// Where a message came from.
public struct ReceiveInfo: Sendable {
    /// The peer that sent it (`$si`, `$sp`).
    public var source: SocketAddress
    /// The local socket it arrived on (`$Ri`, `$Rp`).
    public var local: SocketAddress
    /// The transport (`$pr`).
    public var proto: SIPTransportProtocol
    /// The TCP/TLS/WS connection it came on (`$conid`); 0 for UDP. Replies go back over it.
    public var connectionID: UInt64

    public init(source: SocketAddress, local: SocketAddress, proto: SIPTransportProtocol, connectionID: UInt64 = 0) {
        self.source = source
        self.local = local
        self.proto = proto
        self.connectionID = connectionID
    }
}

/// A value a script stores: `$var`, `$avp`, `$shv`, htable cells.
public enum KemiValue: Sendable, Hashable {
    case null
    case int(Int)
    case string(String)
}

/// What the core does with outgoing messages. The server provides it; tests provide a recorder.
public protocol MessageSender: AnyObject {
    /// Sends bytes to a destination over a transport from the given local socket (nil: the default one
    /// for the destination's family). Returns false if it could not be sent.
    func send(_ bytes: [UInt8], to destination: SocketAddress, proto: SIPTransportProtocol, from local: SocketAddress?) -> Bool
    /// Sends what is queued now (tm calls it where the order of replies across workers matters). A
    /// sender that sends at once has nothing queued: the default does nothing. A requirement rather
    /// than a cast to `BatchingSender` (a dynamic cast cost ~850 instructions a relayed reply).
    func flush()
}

extension MessageSender {
    public func flush() {}
}

/// A sender that queues datagrams and sends them in batches: `flush()` sends what is queued now.
public protocol BatchingSender: MessageSender {
    func flush()
}

/// A listen socket as modules see it: its transport and address, what it advertises
/// (Kamailio's `advertise`) and its name (`name`).
public struct LocalSocket: Sendable, Hashable, CustomStringConvertible {
    public var proto: SIPTransportProtocol
    public var address: SocketAddress
    /// The advertised host as written (an IPv6 address in brackets), nil: the socket's own address.
    public var advertisedHost: String?
    /// The advertised port, nil: the socket's own port.
    public var advertisedPort: Int?
    /// The socket's name, nil: none.
    public var name: String?

    public init(proto: SIPTransportProtocol, address: SocketAddress, advertisedHost: String? = nil,
                advertisedPort: Int? = nil, name: String? = nil) {
        self.proto = proto
        self.address = address
        self.advertisedHost = advertisedHost
        self.advertisedPort = advertisedPort
        self.name = name
    }

    /// `host:port` Via and Record-Route show: the advertised address and port, else the socket's.
    public var advertised: String {
        "\(advertisedHost ?? address.uriHost):\(advertisedPort ?? Int(address.port))"
    }

    /// Kamailio's SUBST_SND_ALL (Path, Record-Route of rr): the advertised (or own) host, `:port`
    /// unless the port is 5060 and not advertised, `;transport=` unless UDP (`ws` for WS and WSS),
    /// and `;sn=NAME` with `withName` when the socket has a name.
    public func uriHostPort(withName: Bool = false) -> String {
        var out = advertisedHost ?? address.uriHost
        if let p = advertisedPort { out += ":\(p)" } else if address.port != 5060 { out += ":\(address.port)" }
        switch proto {
        case .udp: break
        case .ws, .wss: out += ";transport=ws"
        default: out += ";transport=\(proto.name)"
        }
        if withName, let name, !name.isEmpty { out += ";sn=\(name)" }
        return out
    }

    /// "udp:10.0.0.1:5060" (what `$fs` shows and `set_send_socket` takes).
    public var description: String { "\(proto.name):\(address.uriHost):\(address.port)" }
}

/// Services the core needs from the server: local addresses, name resolution.
public protocol CoreServices: AnyObject, Sendable {
    /// True if host (and port, when given; nil = any port) is one of ours: listen addresses and aliases.
    func isMyself(host: String, port: Int?, proto: SIPTransportProtocol?) -> Bool
    /// `isMyself(host: address.ip, port: address.port, proto:)` for an address already resolved (the
    /// per-request loop check): the server compares bytes, with no text.
    func isMyself(address: SocketAddress, proto: SIPTransportProtocol?) -> Bool
    /// Resolves a host name or numeric address to socket addresses (A/AAAA; SRV when port is nil and
    /// the name is not numeric). Numeric addresses resolve to themselves.
    func resolve(host: String, port: Int?, proto: SIPTransportProtocol) -> [SocketAddress]
    /// The local socket to send from for a destination and transport, and the address/port to
    /// advertise in Via and Record-Route. Modules call `RouteContext.localSocket(for:proto:)`, which
    /// honours a socket the script forced first.
    func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)?
    /// The listen sockets (unicast and multicast), in configuration order, with their advertised
    /// addresses and names (`corex.set_send_socket*`, `$fs`, `is_socket_name`).
    var sockets: [LocalSocket] { get }
    /// `[define]` entries of the configuration.
    var defines: [String: String] { get }
    /// NAPTR records of a domain name (ENUM), through the configured resolver and its cache; nil when
    /// the lookup failed (no resolver, timeout, NXDOMAIN).
    func queryNAPTR(_ name: String) -> [NAPTRRecord]?
    /// What the TLS handshake of connection `id` established (nil: not TLS, closed, not finished).
    func tlsPeer(connection id: UInt64) -> TLSPeer?
    /// Closes a TCP/TLS/WS connection. False if it is not open.
    func closeConnection(_ id: UInt64) -> Bool
}

extension CoreServices {
    public var sockets: [LocalSocket] { [] }
    public func isMyself(address: SocketAddress, proto: SIPTransportProtocol?) -> Bool {
        isMyself(host: address.ip, port: Int(address.port), proto: proto)
    }
    /// The listen socket with this transport whose address (or advertised address) and port match
    /// `host`/`port` (Kamailio's grep_sock_info: port 0 matches any; proto nil matches any).
    public func socket(host: String, port: Int, proto: SIPTransportProtocol?) -> LocalSocket? {
        var h = host
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        let numeric = SocketAddress(ip: h, port: 0)
        for s in sockets {
            if let proto, proto != s.proto { continue }
            let addressMatches = numeric.map { $0.ip == s.address.ip } ?? false
            let advertisedMatches = s.advertisedHost.map { a in
                var x = a
                if x.hasPrefix("[") && x.hasSuffix("]") { x = String(x.dropFirst().dropLast()) }
                return x.lowercased() == h.lowercased() || (numeric != nil && SocketAddress(ip: x, port: 0)?.ip == numeric!.ip)
            } ?? false
            guard addressMatches || advertisedMatches else { continue }
            if port != 0 && port != Int(s.address.port) && port != s.advertisedPort { continue }
            return s
        }
        return nil
    }
    /// The listen socket named `name` (`;name=` / `name "..."` of a listen entry).
    public func socket(named name: String) -> LocalSocket? {
        sockets.first { $0.name == name }
    }
    /// No resolver: every NAPTR lookup fails.
    public func queryNAPTR(_ name: String) -> [NAPTRRecord]? { nil }
    public func tlsPeer(connection id: UInt64) -> TLSPeer? { nil }
    public func closeConnection(_ id: UInt64) -> Bool { false }
}

/// The peer certificate of a TLS connection (`KSR.tls`, `$tls_peer_*`).
public struct TLSPeer: Sendable, Equatable {
    /// A certificate was presented and verified against the configured CA list.
    public var verified: Bool
    public var subjectCN: String?
    /// Subject alternative names (DNS names, IP addresses).
    public var alternativeNames: [String]
    /// Serial number (hex).
    public var serial: String?

    public init(verified: Bool, subjectCN: String?, alternativeNames: [String], serial: String?) {
        self.verified = verified
        self.subjectCN = subjectCN
        self.alternativeNames = alternativeNames
        self.serial = serial
    }
}

/// The longest a worker sleeps in its poll with nothing to do: it runs its timers, notices a stop or a
/// new script version at least this often.
public let workerMaxWaitMilliseconds = 200

/// The transaction layer (tm) as the core sees it: the server hands it replies that passed the core
/// reply route, and lets it run the timers its worker owns between batches.
public protocol TransactionLayer: AnyObject, Sendable {
    /// A reply that passed `ksr_reply_route`: true if a transaction took it (else it is relayed statelessly).
    func handleReply(_ ctx: RouteContext) -> Bool
    /// Runs the due timers this worker owns. Returns the milliseconds until the next one is due (the
    /// worker sleeps that long at most), nil when none is due within `workerMaxWaitMilliseconds`.
    func runTimers(_ ctx: RouteContext) -> Int?
    /// The request route of the current message has ended (its transaction may now run failure routes
    /// on other workers).
    func requestRouteFinished(_ ctx: RouteContext)
    /// Whether `requestRouteFinished` must also run after request routes without a transaction
    /// (a module such as dialog cleans up what the route left).
    var wantsEveryRequestRouteEnd: Bool { get }
}

extension TransactionLayer {
    public var wantsEveryRequestRouteEnd: Bool { false }
}

/// Per-worker state that outlives one message: `$var`s and the worker's identity.
public final class WorkerLocals {
    /// `$var(name)`: starts as integer 0, persists between messages (REFERENCE §3).
    public var vars: [String: KemiValue] = [:]
    /// Worker index (0-based).
    public let index: Int
    /// The pseudo-variable engine's per-worker cache (owned by KSRModules; a direct slot because every
    /// `KSR.pv` call reads it).
    public var pvState: AnyObject?
    /// Per-worker state of modules (caches), keyed by the owning type. A few entries (one per module
    /// type with worker state), looked up several times a message: a linear scan costs less than
    /// hashing the key (a dictionary lookup was ~170 instructions).
    private var storage: [(id: ObjectIdentifier, object: AnyObject)] = []

    public init(index: Int) { self.index = index }

    /// The worker's instance of `T`, created on first use. Lets a module keep caches per worker with
    /// no lock.
    @inlinable
    public func local<T: AnyObject>(_ type: T.Type, _ make: () -> T) -> T {
        if let existing = lookup(ObjectIdentifier(type)) { return unsafeDowncast(existing, to: T.self) }
        let made = make()
        store(made, ObjectIdentifier(type))
        return made
    }

    /// The worker's instance of `T` if one was made (nothing is created).
    @inlinable
    public func peek<T: AnyObject>(_ type: T.Type) -> T? {
        lookup(ObjectIdentifier(type)).map { unsafeDowncast($0, to: T.self) }
    }

    @usableFromInline func lookup(_ id: ObjectIdentifier) -> AnyObject? {
        for i in storage.indices where storage[i].id == id { return storage[i].object }
        return nil
    }

    @usableFromInline func store(_ o: AnyObject, _ id: ObjectIdentifier) {
        if let i = storage.firstIndex(where: { $0.id == id }) { storage[i].object = o } else { storage.append((id, o)) }
    }
}

/// A transaction as the core sees it (tm's `T`): the module that owns transactions conforms its cell
/// type and reads it back with one cast.
public protocol RouteTransaction: AnyObject, Sendable {}

/// Everything that belongs to the one message being routed: the message, where it came from, `$du`,
/// flags, the destination set, AVPs, pending Record-Route, reply lumps... One value, so saving the
/// message around a nested route (branch, onreply, failure, uac callbacks) is `let saved = ctx.state`,
/// restoring it `ctx.state = saved`, and a transaction keeps the request as relayed by keeping one.
/// A field added here is saved, restored and reset everywhere at once.
public struct MessageState {
    /// The message being routed (request or reply). For failure routes, the transaction's request.
    public var message: SIPMessage?
    public var routeType: RouteType
    public var received: ReceiveInfo
    /// Message flags (`setflag`, `$mf`): 0..31.
    public var messageFlags: UInt32 = 0
    /// Branch flags of branch 0 (`setbflag`, `$bf`).
    public var branchFlags: UInt32 = 0
    /// Script flags (`setsflag`): zeroed around each callback.
    public var scriptFlags: UInt32 = 0
    /// `$du`: the destination URI (next hop) if set.
    public var destinationURI: [UInt8]? = nil
    /// `force_rport()` was called.
    public var forceRport: Bool = false
    /// `add_local_rport()`: add `;rport` to Starling's own Via.
    public var addLocalRport: Bool = false
    /// `set_advertised_address()` / `set_advertised_port()`: what Starling's Via shows for this message.
    public var advertisedAddress: String? = nil
    public var advertisedPort: Int? = nil
    /// `set_drop()` / `KSR.x.drop()`: do not forward this reply / send this request.
    public var dropRequested: Bool = false
    /// A reply was sent for this request (stateless).
    public var replied: Bool = false
    /// `$avp(name)` stacks (newest last).
    public var avps: [String: [KemiValue]] = [:]
    /// `$xavp(root)`: a list of items (index 0 = newest), each a map of field names to value stacks.
    public var xavps: [String: [[String: [KemiValue]]]] = [:]
    /// Extended message flags 0..63 (`corex.setxflag`).
    public var extendedFlags: UInt64 = 0
    /// Extra branches (`append_branch`, registrar lookup): URIs beyond the Request-URI.
    public var branches: [[UInt8]] = []
    /// The next hop of an extra branch (its `$du`: a NATed contact's received address, a Path), by
    /// index into `branches`; a branch without one goes to its URI.
    public var branchDestinations: [Int: [UInt8]] = [:]
    /// The branch flags of an extra branch (registrar lookup: the contact's cflags), by index into
    /// `branches`; a branch without an entry starts with no flags.
    public var extraBranchFlags: [Int: UInt32] = [:]
    /// q-values of the destination set in thousandths (0...1000, -1: none given; Kamailio's `qvalue_t`):
    /// `requestURIQ` for the Request-URI, `branchQ[i]` for `branches[i]` (an index past its end: -1, so
    /// code that appends bare URIs to `branches` stays correct).
    public var requestURIQ: Int = -1
    public var branchQ: [Int] = []
    /// Headers to add to locally generated replies (`hdr.append_to_reply`), each ending with CRLF.
    public var replyHeaders: [UInt8] = []
    /// Body and Content-Type for locally generated replies (`textops.set_reply_body`).
    public var replyBody: (body: [UInt8], contentType: String)? = nil
    /// The code of the last internal error, for `sl_reply_error` (Kamailio's `prev_ser_error`).
    public var lastError: Int = 0
    /// Time the message was received (seconds since the epoch, and microseconds).
    public var receivedAt: (seconds: Int, micros: Int) = (0, 0)
    /// `KSR.rr` record_route*: the Record-Route to add when the request is sent (nil: none). Rendered
    /// at send time (Kamailio's RR lumps), so the outgoing socket is known.
    public var recordRoute: RecordRouteLump? = nil
    /// `add_rr_param` text buffered for the Record-Route (each with its leading `;`).
    public var recordRouteParams: String = ""
    /// The parameters (with the leading `;`) of the Route URI that pointed to us, removed by `loose_route`.
    public var routedParams: String? = nil
    /// `set_forward_close` / `set_forward_no_connect` / `set_reply_close` / `set_reply_no_connect`:
    /// how sends over TCP/TLS/WS connections behave for this message.
    public var connectionFlags: ConnectionFlags = ConnectionFlags()
    /// The transaction of the message being routed (tm's `T`), once created or looked up.
    public var transaction: (any RouteTransaction)? = nil
    /// `corex.set_send_socket*`, `$fs`/`$fsn`: the socket requests of this message leave from (Kamailio's
    /// `force_send_socket`); nil: chosen by the destination.
    public var forcedSocket: LocalSocket? = nil
    /// `KSR.path.add_path*`: the Path headers to add when the request is sent (rendered then, with the
    /// outgoing socket, as Kamailio's lumps are).
    public var paths: [PathLump] = []

    /// A fresh state for a message just received (or built): nothing set yet.
    @inlinable
    public init(message: SIPMessage?, received: ReceiveInfo, routeType: RouteType) {
        self.message = message
        self.received = received
        self.routeType = routeType
    }

    /// The same as assigning `MessageState(message:received:routeType:)`, done in place for the
    /// per-message hot path: fields already at their initial value are not written, and the
    /// collections keep their buffers (measured: assigning a fresh value cost ~1,300 instructions per
    /// request on bench/route30.lua, the retains and releases of every field). A field added to the
    /// struct must be reset here too (MessageStateTests checks every field).
    @inlinable
    public mutating func reset(message: SIPMessage?, received: ReceiveInfo, routeType: RouteType) {
        self.message = message
        self.received = received
        self.routeType = routeType
        messageFlags = 0
        branchFlags = 0
        scriptFlags = 0
        if destinationURI != nil { destinationURI = nil }
        forceRport = false
        addLocalRport = false
        if advertisedAddress != nil { advertisedAddress = nil }
        advertisedPort = nil
        dropRequested = false
        replied = false
        if !avps.isEmpty { avps.removeAll(keepingCapacity: true) }
        if !xavps.isEmpty { xavps.removeAll(keepingCapacity: true) }
        extendedFlags = 0
        if !branches.isEmpty { branches.removeAll(keepingCapacity: true) }
        if !branchDestinations.isEmpty { branchDestinations.removeAll() }
        if !extraBranchFlags.isEmpty { extraBranchFlags.removeAll() }
        requestURIQ = -1
        if !branchQ.isEmpty { branchQ.removeAll(keepingCapacity: true) }
        if !replyHeaders.isEmpty { replyHeaders.removeAll(keepingCapacity: true) }
        if replyBody != nil { replyBody = nil }
        lastError = 0
        receivedAt = (0, 0)
        if recordRoute != nil { recordRoute = nil }
        if !recordRouteParams.isEmpty { recordRouteParams = "" }
        if routedParams != nil { routedParams = nil }
        connectionFlags = ConnectionFlags()
        if transaction != nil { transaction = nil }
        if forcedSocket != nil { forcedSocket = nil }
        if !paths.isEmpty { paths.removeAll() }
    }
}

/// Everything a KSR function works on for the message being routed. One per worker (its address is
/// stable for the Lua state); `begin(...)` resets `state` for each message.
public final class RouteContext {
    // MARK: Per worker
    public let worker: WorkerLocals
    public let logger: Logger
    public let services: any CoreServices
    public var sender: any MessageSender
    /// The modules' process-wide state (KSRModules' `ModuleRuntime`: htables, pike, permissions...),
    /// set by whoever builds the context; pseudo-variables such as `$sht` reach shared tables through it.
    public var moduleState: AnyObject?
    /// Scratch storage that must outlive a Swift call until the marshaller has copied it.
    public var scratch: [UInt8] = []
    /// Runs `ksr_onsend_route` (set by the server when the script defines it): returns false when the
    /// script dropped the request. Arguments: destination, transport, the bytes about to be sent.
    public var onSend: ((RouteContext, SocketAddress, SIPTransportProtocol, [UInt8]) -> Bool)?
    /// Runs a Lua callback by name with the context as it is (set by the server; used by tm for
    /// failure, branch and onreply routes). Nil when no engine is attached.
    public var runRoute: ((RouteContext, String) -> Void)?
    /// Runs a Lua event callback by name with its event name as the argument (Kamailio's
    /// `sr_kemi_route(..., EVENT_ROUTE, callback, evname)`; the dispatcher's `event_callback`).
    public var runEvent: ((RouteContext, String, String) -> Void)?
    /// The transaction layer, if tm is loaded (process-wide, shared by the workers).
    public var transactions: (any TransactionLayer)?
    /// Jobs other threads hand back to this worker (resuming suspended routes): `WorkerMailbox`.
    public var mailbox = WorkerMailbox()
    /// `[core] async_io`: lets KSR functions that wait on the network suspend the route coroutine
    /// (nil: async_io off, every call blocks).
    public var asyncIO: AsyncIO?

    // MARK: Per message
    /// The message being routed and everything the script set for it. The properties below forward
    /// to it, so modules keep writing `ctx.destinationURI`.
    public var state: MessageState

    public init(worker: WorkerLocals, logger: Logger, services: any CoreServices, sender: any MessageSender,
                received: ReceiveInfo) {
        self.worker = worker
        self.logger = logger
        self.services = services
        self.sender = sender
        state = MessageState(message: nil, received: received, routeType: .request)
    }

    /// Resets the per-message state for a new message.
    @inlinable
    public func begin(message: SIPMessage?, received: ReceiveInfo, routeType: RouteType) {
        state.reset(message: message, received: received, routeType: routeType)
    }

    // MARK: Forwarding to `state` (see `MessageState` for each field)
    @inlinable public var message: SIPMessage? {
        get { state.message }
        _modify { yield &state.message }
    }
    @inlinable public var routeType: RouteType {
        get { state.routeType }
        _modify { yield &state.routeType }
    }
    @inlinable public var received: ReceiveInfo {
        get { state.received }
        _modify { yield &state.received }
    }
    @inlinable public var messageFlags: UInt32 {
        get { state.messageFlags }
        _modify { yield &state.messageFlags }
    }
    @inlinable public var branchFlags: UInt32 {
        get { state.branchFlags }
        _modify { yield &state.branchFlags }
    }
    @inlinable public var scriptFlags: UInt32 {
        get { state.scriptFlags }
        _modify { yield &state.scriptFlags }
    }
    @inlinable public var destinationURI: [UInt8]? {
        get { state.destinationURI }
        _modify { yield &state.destinationURI }
    }
    @inlinable public var forceRport: Bool {
        get { state.forceRport }
        _modify { yield &state.forceRport }
    }
    @inlinable public var addLocalRport: Bool {
        get { state.addLocalRport }
        _modify { yield &state.addLocalRport }
    }
    @inlinable public var advertisedAddress: String? {
        get { state.advertisedAddress }
        _modify { yield &state.advertisedAddress }
    }
    @inlinable public var advertisedPort: Int? {
        get { state.advertisedPort }
        _modify { yield &state.advertisedPort }
    }
    @inlinable public var dropRequested: Bool {
        get { state.dropRequested }
        _modify { yield &state.dropRequested }
    }
    @inlinable public var replied: Bool {
        get { state.replied }
        _modify { yield &state.replied }
    }
    @inlinable public var avps: [String: [KemiValue]] {
        get { state.avps }
        _modify { yield &state.avps }
    }
    @inlinable public var xavps: [String: [[String: [KemiValue]]]] {
        get { state.xavps }
        _modify { yield &state.xavps }
    }
    @inlinable public var extendedFlags: UInt64 {
        get { state.extendedFlags }
        _modify { yield &state.extendedFlags }
    }
    @inlinable public var branches: [[UInt8]] {
        get { state.branches }
        _modify { yield &state.branches }
    }
    @inlinable public var branchDestinations: [Int: [UInt8]] {
        get { state.branchDestinations }
        _modify { yield &state.branchDestinations }
    }
    @inlinable public var extraBranchFlags: [Int: UInt32] {
        get { state.extraBranchFlags }
        _modify { yield &state.extraBranchFlags }
    }
    @inlinable public var requestURIQ: Int {
        get { state.requestURIQ }
        _modify { yield &state.requestURIQ }
    }
    @inlinable public var branchQ: [Int] {
        get { state.branchQ }
        _modify { yield &state.branchQ }
    }
    @inlinable public var replyHeaders: [UInt8] {
        get { state.replyHeaders }
        _modify { yield &state.replyHeaders }
    }
    @inlinable public var replyBody: (body: [UInt8], contentType: String)? {
        get { state.replyBody }
        _modify { yield &state.replyBody }
    }
    @inlinable public var lastError: Int {
        get { state.lastError }
        _modify { yield &state.lastError }
    }
    @inlinable public var receivedAt: (seconds: Int, micros: Int) {
        get { state.receivedAt }
        _modify { yield &state.receivedAt }
    }
    @inlinable public var recordRoute: RecordRouteLump? {
        get { state.recordRoute }
        _modify { yield &state.recordRoute }
    }
    @inlinable public var recordRouteParams: String {
        get { state.recordRouteParams }
        _modify { yield &state.recordRouteParams }
    }
    @inlinable public var routedParams: String? {
        get { state.routedParams }
        _modify { yield &state.routedParams }
    }
    @inlinable public var connectionFlags: ConnectionFlags {
        get { state.connectionFlags }
        _modify { yield &state.connectionFlags }
    }
    @inlinable public var transaction: (any RouteTransaction)? {
        get { state.transaction }
        _modify { yield &state.transaction }
    }
    @inlinable public var paths: [PathLump] {
        get { state.paths }
        _modify { yield &state.paths }
    }
    @inlinable public var forcedSocket: LocalSocket? {
        get { state.forcedSocket }
        _modify { yield &state.forcedSocket }
    }
}

extension RouteContext {
    /// The local socket a message to `destination` over `proto` leaves from, and the address to
    /// advertise: the socket the script forced (`set_send_socket*`, `$fs`) when it fits the transport
    /// and family (another transport on the same address and port is taken as Kamailio does), else the
    /// server's choice by destination.
    public func localSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> (socket: SocketAddress, advertised: String)? {
        if let chosen = forcedSocket(for: destination, proto: proto) { return (chosen.address, chosen.advertised) }
        return services.localSocket(for: destination, proto: proto)
    }

    /// The listen socket bound to `local` for `proto` (its advertised address and name), or a bare one.
    public func socketInfo(local: SocketAddress, proto: SIPTransportProtocol) -> LocalSocket {
        services.sockets.first { $0.address == local && $0.proto == proto } ?? LocalSocket(proto: proto, address: local)
    }

    /// The forced socket as it applies to this destination and transport (nil: none, or it does not fit).
    public func forcedSocket(for destination: SocketAddress, proto: SIPTransportProtocol) -> LocalSocket? {
        guard var f = state.forcedSocket else { return nil }
        if f.proto != proto && !(f.proto == .tls && proto == .ws) {
            guard let other = services.sockets.first(where: { $0.proto == proto && $0.address == f.address }) else {
                logger.warning("protocol/port mismatch (forced \(f), to \(proto.name):\(destination))")
                return nil
            }
            f = other
        }
        guard f.address.family == destination.family, !f.address.isMulticast else { return nil }
        return f
    }
}

extension RouteContext {
    /// Appends a branch to the destination set with its q-value (thousandths, -1: none).
    public func appendBranch(_ uri: [UInt8], q: Int = -1) {
        if q >= 0 || !branchQ.isEmpty {
            while branchQ.count < branches.count { branchQ.append(-1) }
            branchQ.append(q)
        }
        branches.append(uri)
    }

    /// The q-value of `branches[i]` (-1: none given).
    public func branchQValue(_ i: Int) -> Int { i < branchQ.count ? branchQ[i] : -1 }

    /// Empties the destination set (the extra branches and their q-values).
    public func clearBranches() {
        branches.removeAll(keepingCapacity: true)
        branchQ.removeAll(keepingCapacity: true)
        if !branchDestinations.isEmpty { branchDestinations.removeAll() }
        if !extraBranchFlags.isEmpty { extraBranchFlags.removeAll() }
    }
}

/// Per-message connection flags (Kamailio's `set_forward_close()` and friends).
public struct ConnectionFlags: Sendable, Equatable {
    /// Close the connection after forwarding the request over it.
    public var forwardClose = false
    /// Forward only over an existing connection (never connect).
    public var forwardNoConnect = false
    /// Close the connection after sending the reply.
    public var replyClose = false
    /// Reply only over an existing connection.
    public var replyNoConnect = false
    public init() {}
}

/// A Path header the script asked for (`KSR.path.add_path*`): `Path: <sip:[user@]ADDR;lr[;received=...]
/// [;params][;r2=on]>`, ADDR the outgoing socket's advertised address (then a second line with the
/// incoming socket's with `enable_r2`).
public struct PathLump: Sendable, Equatable {
    /// The user part ("" for none).
    public var user: String
    /// Everything after `;lr` and before `>`: `;received=...`, the parameters, `;r2=on`.
    public var suffix: String
    /// `enable_r2`: a second Path line for the incoming socket.
    public var r2: Bool
    /// `sockname_mode`: `;sn=NAME` after the address.
    public var socketNames: Bool

    public init(user: String, suffix: String, r2: Bool, socketNames: Bool) {
        self.user = user
        self.suffix = suffix
        self.r2 = r2
        self.socketNames = socketNames
    }
}

/// A Record-Route the script asked for (`KSR.rr.record_route*`), added when the request is sent.
public struct RecordRouteLump: Sendable {
    /// Explicit addresses (`record_route_preset*`, `record_route_advertised_address`), written after
    /// `sip:`; empty: the advertised addresses of the sockets.
    public var addresses: [String]
    /// `;lr` or `;lr=on`.
    public var lr: String
    /// `;ftag=...` when `append_fromtag` is set, else empty.
    public var fromTag: String
    /// Parameters given to `record_route_params` (with the leading `;`).
    public var params: String
    /// `enable_double_rr`: 0 one Record-Route; 1 two when the outgoing socket or transport differs
    /// from the incoming one; 2 always two.
    public var doubleMode: Int
    /// `sockname_mode`: `;sn=NAME` after the address.
    public var socketNames: Bool

    public init(addresses: [String], lr: String, fromTag: String, params: String, doubleMode: Int, socketNames: Bool = false) {
        self.addresses = addresses
        self.lr = lr
        self.fromTag = fromTag
        self.params = params
        self.doubleMode = doubleMode
        self.socketNames = socketNames
    }

    /// Double RR on (mode 1) or off (0).
    public init(addresses: [String], lr: String, fromTag: String, params: String, double: Bool) {
        self.init(addresses: addresses, lr: lr, fromTag: fromTag, params: params, doubleMode: double ? 1 : 0)
    }
}
