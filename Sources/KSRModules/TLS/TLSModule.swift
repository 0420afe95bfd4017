import SIPTransport
import StarlingKEMI

/// `KSR.tls`: facts of the TLS connection the message came on.
enum TLSModule {
    static func exports() -> [KemiExport] {
        [
            // 1 when the message came over TLS, the peer presented a certificate and it verified against
            // the CA list (verify_client on); -1 otherwise.
            KemiExport("tls", "is_peer_verified", [], returns: .int) { ctx, _ in
                guard ctx.received.proto == .tls || ctx.received.proto == .wss,
                      let peer = ctx.services.tlsPeer(connection: ctx.received.connectionID) else { return .int(-1) }
                return .int(peer.verified ? 1 : -1)
            },
            KemiExport("tls", "set_connect_server_id", [.str], returns: .int,
                       compat: "accepted; one client profile ([tls]) serves every outgoing TLS connection") { _, _ in .int(1) },
        ]
    }
}

/// `KSR.websocket`: the WebSocket handshake is handled by the ws/wss listeners themselves.
enum WebSocketModule {
    static func exports() -> [KemiExport] {
        [
            KemiExport("websocket", "handle_handshake", [], returns: .int,
                       compat: "the ws/wss listeners upgrade by themselves (sip subprotocol); always 1") { _, _ in .int(1) },
            // Closes the WebSocket connection of the current message (status and reason are not sent:
            // the close frame carries 1000).
            KemiExport("websocket", "close", [], returns: .int, compat: "close frame status is always 1000") { ctx, _ in
                guard ctx.received.proto == .ws || ctx.received.proto == .wss else { return .int(-1) }
                return .int(ctx.services.closeConnection(ctx.received.connectionID) ? 1 : -1)
            },
            KemiExport("websocket", "close_reason", [.int, .str], returns: .int, compat: "close frame status is always 1000") { ctx, _ in
                guard ctx.received.proto == .ws || ctx.received.proto == .wss else { return .int(-1) }
                return .int(ctx.services.closeConnection(ctx.received.connectionID) ? 1 : -1)
            },
            KemiExport("websocket", "close_conid", [.int, .str, .int], returns: .int, compat: "close frame status is always 1000") { ctx, a in
                .int(ctx.services.closeConnection(UInt64(clamping: a.int(2))) ? 1 : -1)
            },
        ]
    }
}

extension TLSModule: KSRModule {
    static let name = "tls"
    static let summary = "Facts of the TLS connection a message came on (TLS itself is set up in [tls])."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}

extension WebSocketModule: KSRModule {
    static let name = "websocket"
    static let summary = "WebSocket connections (the ws/wss listeners do the handshake)."
    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] { exports() }
}
