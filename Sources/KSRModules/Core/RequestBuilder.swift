import SIPCore
import SIPTransport
import StarlingKEMI
import Logging

/// The one builder of the requests Starling sends: stateless forwarding (`KSR.forward`), tm branches
/// (`t_relay`, failure-route branches, `t_replicate`) and requests of our own (`t_uac_send`,
/// `uac_req_send`). It is the one place for next-hop resolution, the loop check, socket choice, the
/// advertised address/port and `;rport` of Starling's Via, the Record-Route lines, `received`/`rport`
/// on the request's own top Via, and the `ksr_onsend_route` hook (Kamailio's forward_request /
/// t_fwd's prepare_new_uac + build_req_buf_from_sip_req).
enum RequestBuilder {
    /// Where a request goes: the next-hop URI, what it resolved to and the local socket it leaves from.
    struct Hop {
        var uri: SIPURI
        var target: Forwarder.Target
        var local: (socket: SocketAddress, advertised: String)

        var destination: SocketAddress { target.address }
        var proto: SIPTransportProtocol { target.proto }
    }

    /// Why a request cannot be sent, as Kamailio's error code (`ser_error`, for `sl_reply_error`).
    struct Failure: Error {
        var code: Int
    }

    /// Resolves `nextHop` (an explicit URI, `$du` or the Request-URI: the caller picks) and chooses the
    /// local socket. With `loopCheck`, a next hop that is this server is refused (E_BAD_ADDRESS); local
    /// requests may go to ourselves. `caller` names the function in the log lines.
    static func hop(_ ctx: RouteContext, to nextHop: [UInt8], caller: String, loopCheck: Bool = true) throws(Failure) -> Hop {
        let (uri, target) = try resolve(ctx, nextHop, caller: caller)
        if loopCheck, ctx.services.isMyself(address: target.address, proto: target.proto) {
            ctx.logger.error("\(caller): '\(uri)' points to this server; not looping the request back")
            throw Failure(code: SERError.badAddress)
        }
        guard let local = ctx.localSocket(for: target.address, proto: target.proto) else {
            ctx.logger.error("\(caller): no local socket for \(target.proto.name) to \(target.address)")
            throw Failure(code: SERError.send)
        }
        return Hop(uri: uri, target: target, local: local)
    }

    /// The next hop's URI and where it points. The last numeric next hop is kept per worker: scripts
    /// send most requests to the same `$du`, whose parse and address cost ~1,700 instructions a request.
    private static func resolve(_ ctx: RouteContext, _ nextHop: [UInt8], caller: String) throws(Failure)
        -> (SIPURI, Forwarder.Target) {
        let last = ctx.worker.local(LastNumericHop.self, LastNumericHop.init)
        if let known = last.hop, known.bytes == nextHop { return (known.uri, known.target) }
        guard let uri = SIPURI(bytes: nextHop) else {
            ctx.logger.error("\(caller): bad destination URI '\(String(decoding: nextHop, as: UTF8.self))'")
            throw Failure(code: SERError.badURI)
        }
        if let target = Forwarder.numericTarget(uri) {
            last.hop = (nextHop, uri, target)
            return (uri, target)
        }
        guard let target = Forwarder.targets(ctx, uri, all: false).first else {
            ctx.logger.error("\(caller): cannot resolve '\(uri)'")
            throw Failure(code: SERError.badAddress)
        }
        return (uri, target)
    }

    /// A worker's last next hop with a numeric host (see `resolve`): what it resolves to never changes.
    final class LastNumericHop {
        var hop: (bytes: [UInt8], uri: SIPURI, target: Forwarder.Target)?
    }

    /// The sent-by of Starling's Via (and what Record-Route advertises): `set_advertised_address` /
    /// `set_advertised_port` of the message when set, else the socket's advertised address.
    static func sentBy(_ ctx: RouteContext, _ local: (socket: SocketAddress, advertised: String)) -> String {
        guard ctx.advertisedAddress != nil || ctx.advertisedPort != nil else { return local.advertised }
        return "\(ctx.advertisedAddress ?? local.socket.uriHost):\(ctx.advertisedPort ?? Int(local.socket.port))"
    }

    /// Starling's Via line: `Via: SIP/2.0/<PROTO> <sent-by>;branch=<branch>[;rport]` and CRLF.
    static func viaLine(proto: SIPTransportProtocol, sentBy: String, branch: String, rport: Bool) -> [UInt8] {
        // Appended as bytes, each piece with one copy: string interpolation cost more than the rest of
        // the line building, and `append(contentsOf: s.utf8)` ~160 instructions a piece.
        var via: [UInt8] = []
        via.reserveCapacity(40 + sentBy.utf8.count + branch.utf8.count)
        via.append(literal: "Via: SIP/2.0/")
        via.append(utf8: proto.viaName)
        via.append(0x20)
        via.append(utf8: sentBy)
        via.append(literal: ";branch=")
        via.append(utf8: branch)
        if rport { via.append(literal: ";rport") }
        via.append(0x0D)
        via.append(0x0A)
        return via
    }

    /// The route's request as it leaves for `hop` with Via branch `branch`: the Record-Route lines the
    /// script asked for and Starling's Via (advertised address/port, `;rport` after `add_local_rport()`)
    /// on top, `received`/`rport` added to the request's own top Via (RFC 3261 §18.2.1, RFC 3581 §4),
    /// `requestURI` (a branch's) instead of the message's.
    static func forwarded(_ ctx: RouteContext, _ m: SIPMessage, hop: Hop, branch: String,
                          requestURI: [UInt8]? = nil) -> [UInt8] {
        var top = RRModule.recordRouteLines(ctx, outgoing: hop.local, proto: hop.proto)
        top.append(contentsOf: viaLine(proto: hop.proto, sentBy: sentBy(ctx, hop.local), branch: branch,
                                       rport: ctx.addLocalRport))
        var options = SIPSerializeOptions(prependLine: top, requestURI: requestURI)
        let path = PathModule.pathLines(ctx, outgoing: hop.local.socket, proto: hop.proto)
        if !path.isEmpty {
            // Before the Path the request has (ours is the newest), else after the last header.
            if let first = m.firstHeader(.path) { options.inserts.append((first.line.lower, path)) } else { options.appendLines = path }
        }
        if let via = m.topVia {
            let (params, fill) = MessageTools.viaUpdate(ctx)
            if let fill, let rp = via.rport { options.inserts.append((rp.upper, Array("=\(fill)".utf8))) }
            if !params.isEmpty { options.inserts.append((via.whole.upper, Array(params.utf8))) }
        }
        return m.serialized(options: options)
    }

    /// A request of our own (no route message behind it: no Record-Route, no advertised address of a
    /// message) as it leaves for `hop`: Starling's Via on top.
    static func local(_ m: SIPMessage, hop: Hop, branch: String) -> [UInt8] {
        m.serialized(options: SIPSerializeOptions(
            prependLine: viaLine(proto: hop.proto, sentBy: hop.local.advertised, branch: branch, rport: false)))
    }

    /// Runs `ksr_onsend_route` on the bytes about to go to `hop`: false when the script dropped them.
    static func passesOnSend(_ ctx: RouteContext, _ hop: Hop, _ bytes: [UInt8]) -> Bool {
        guard let hook = ctx.onSend else { return true }
        return hook(ctx, hop.destination, hop.proto, bytes)
    }
}

extension Array where Element == UInt8 {
    /// Appends a literal's bytes with one copy.
    mutating func append(literal s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Appends a string's UTF-8 bytes with one copy.
    mutating func append(utf8 s: String) {
        var s = s  // withUTF8: no copy of a native string
        s.withUTF8 { append(contentsOf: $0) }
    }
}
