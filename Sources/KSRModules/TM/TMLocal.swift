import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Logging
import Synchronization

/// Requests of our own (`t_uac_send`): a transaction with a client side only. Its replies are absorbed
/// (a negative INVITE reply is ACKed by the machine, a 2xx by us to the branch's address, as tm's
/// `local_ack_mode` 1); the cell is freed when its branch machine ends.
enum TMLocal {
    /// `t_uac_send(method, ruri, nexthop, socket, headers, body)`: 1 sent, -1 on error. `headers` must
    /// hold From and To (a From tag, Call-ID, CSeq, Max-Forwards and Content-Length are added when
    /// missing); `nexthop` "" sends to the R-URI; `socket` ("proto:ip:port", "" none) is the socket it
    /// leaves from (else the one the route to the next hop gives; a socket that does not exist: -1);
    /// `socketName` names it instead (a listen entry's `name`).
    static func send(_ store: TMStore, _ ctx: RouteContext, method: String, ruri: String, nexthop: String,
                     headers: String, body: [UInt8], socket: String = "", socketName: String = "",
                     onReply: (@Sendable (RouteContext, Int, SIPMessage?, [UInt8]) -> Void)? = nil) -> Int {
        guard !method.isEmpty, method.allSatisfy({ $0.isLetter }), SIPURI(ruri) != nil else { return -1 }
        // A request of our own: the current message's forced socket does not apply, only `socket`.
        let savedSocket = ctx.forcedSocket
        defer { ctx.forcedSocket = savedSocket }
        ctx.forcedSocket = nil
        if !socketName.isEmpty {
            guard let si = ctx.services.socket(named: socketName) else {
                ctx.logger.error("t_uac_send: no socket named [\(socketName)]")
                return -1
            }
            ctx.forcedSocket = si
        } else if !socket.isEmpty {
            guard let p = CorexModule.parseSocketSpec(socket), let si = ctx.services.socket(host: p.host, port: p.port, proto: p.proto) else {
                ctx.logger.error("t_uac_send: no socket matches [\(socket)]")
                return -1
            }
            ctx.forcedSocket = si
        }
        var hdrs = headers
        if !hdrs.isEmpty && !hdrs.hasSuffix("\r\n") { hdrs += "\r\n" }
        let lower = hdrs.lowercased()
        func has(_ name: String, _ short: String? = nil) -> Bool {
            lower.hasPrefix(name + ":") || lower.contains("\r\n" + name + ":")
                || short.map { lower.hasPrefix($0 + ":") || lower.contains("\r\n" + $0 + ":") } ?? false
        }
        guard has("from", "f"), has("to", "t") else {
            ctx.logger.error("t_uac_send: the headers must have From and To")
            return -1
        }
        let id = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        if !has("call-id", "i") { hdrs += "Call-ID: \(id)@starling\r\n" }
        if !has("cseq") { hdrs += "CSeq: 10 \(method.uppercased())\r\n" }
        if !has("max-forwards") { hdrs += "Max-Forwards: 70\r\n" }
        var text = "\(method.uppercased()) \(ruri) SIP/2.0\r\n\(hdrs)"
        text = text.split(separator: "\r\n", omittingEmptySubsequences: false).filter {
            !$0.lowercased().hasPrefix("content-length:") && !$0.lowercased().hasPrefix("l:")
        }.joined(separator: "\r\n")
        if !text.hasSuffix("\r\n") { text += "\r\n" }
        text += "Content-Length: \(body.count)\r\n\r\n"
        var bytes = Array(text.utf8)
        bytes += body
        guard var m = try? SIPMessage.parse(bytes) else { return -1 }
        // A From without a tag gets one (tm generates it for a new dialog).
        if let from = m.from, from.tag == nil, let f = m.firstHeader(.from) {
            m.insertBytes(Array(";tag=\(id)".utf8), at: f.value.upper)
            guard let fixed = try? m.applyingEdits() else { return -1 }
            m = fixed
        }
        let next = nexthop.isEmpty ? ruri : nexthop
        // A request of our own may go to this server (no loop check, as tm's t_uac).
        guard let hop = try? RequestBuilder.hop(ctx, to: Array(next.utf8), caller: "t_uac_send", loopCheck: false)
        else { return -1 }
        let (target, local) = (hop.target, hop.local)
        let config = store.timerConfiguration
        let cellID = store.makeID()
        let placeholder = TransactionKey.client(branch: "z9hG4bKtmlocal\(cellID)", method: method.uppercased())
        let cell = TMCell(id: cellID, key: placeholder, request: m,
                          received: ReceiveInfo(source: local.socket, local: local.socket, proto: target.proto),
                          replyDestination: target.address, config: config, timers: store.queue(ctx))
        cell.isLocal = true
        cell.localReply = onReply
        cell.routeBusy = false
        store.liveCells.wrappingAdd(1, ordering: .relaxed)
        let life = max(config.timerB, config.timerC) + config.timerD + .seconds(5)
        cell.locked { cell.startTimer(.B, side: TMCore.lifetime, after: life) }
        let branchID = store.branchID(cell, cell.locked { cell.nextBranchSerial() })
        let out = RequestBuilder.local(m, hop: hop, branch: branchID)
        var branch = TMRelay.makeBranch(cell, branchID: branchID, request: out, to: target.address, proto: target.proto,
                                        local: local.socket)
        branch.uri = Array(ruri.utf8)
        let r = TMRelay.register(store, ctx, cell, branch)
        if r < 0 { cell.locked { TMCore.maybeFree(store, cell, force: true) } }
        return r > 0 ? 1 : -1
    }
}
