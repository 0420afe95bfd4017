import SIPCore
import SIPTransport
import StarlingKEMI

/// Kamailio's faked request (core/fmsg.c): the message callbacks see when there is no SIP message to
/// route, such as an http_async_client answer without a transaction or an async task with data.
enum FakedMessage {
    static let text = "OPTIONS sip:you@kamailio.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\n"
        + "From: <sip:you@kamailio.org>;tag=123\r\nTo: <sip:you@kamailio.org>\r\nCall-ID: 123\r\n"
        + "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"

    /// Marks the worker while a callback runs on the faked request (`corex.is_faked_msg`, and the
    /// functions that refuse it).
    final class Marker {
        var active = false
    }

    static func isActive(_ ctx: RouteContext) -> Bool {
        ctx.worker.local(Marker.self) { Marker() }.active
    }

    /// Runs `callback` (an event route with `event` as its argument) on a fresh faked request; the
    /// worker's state is saved around it.
    static func run(_ ctx: RouteContext, callback: String, event: String, before: ((RouteContext) -> Void)? = nil) {
        guard let run = ctx.runEvent, !callback.isEmpty else { return }
        guard let m = try? SIPMessage.parse(text) else { return }
        let marker = ctx.worker.local(Marker.self) { Marker() }
        let saved = ctx.state
        let wasActive = marker.active
        let local = ctx.services.localSocket(for: SocketAddress(ip: "127.0.0.1", port: 5060)!, proto: .udp)?.socket
            ?? ctx.received.local
        ctx.state = MessageState(message: m, received: ReceiveInfo(source: local, local: local, proto: .udp), routeType: .event)
        marker.active = true
        before?(ctx)
        run(ctx, callback, event)
        marker.active = wasActive
        ctx.state = saved
    }
}
