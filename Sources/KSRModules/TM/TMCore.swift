import SIPCore
import SIPTransport
import SIPTransaction
import StarlingKEMI
import Synchronization

/// What the machines asked for that must happen after the cell's lock is released: datagrams to send,
/// and events for the route layer (which may run Lua).
struct TMOutbox {
    enum Event {
        /// Branch `i` passed a reply with this code to the TU.
        case reply(Int, Int)
        /// Branch `i` timed out (or failed to send): a local 408.
        case timeout(Int)
        /// The server transaction passed an ACK for its 2xx up (RFC 6026 Accepted).
        case ackPassed

        /// A final outcome of a branch: handling it may send the transaction's final response.
        var isFinal: Bool {
            switch self {
            case .reply(_, let code): return code >= 200
            case .timeout: return true
            case .ackPassed: return false
            }
        }
    }
    var sends: [(bytes: [UInt8], to: SocketAddress, proto: SIPTransportProtocol, from: SocketAddress?)] = []
    var events: [Event] = []
    var sentResponse = false

    mutating func send(_ b: [UInt8], _ to: SocketAddress, _ proto: SIPTransportProtocol, _ from: SocketAddress?) {
        sends.append((b, to, proto, from))
    }

    /// Sends everything (outside any lock).
    mutating func flush(_ ctx: RouteContext) {
        for s in sends { _ = ctx.sender.send(s.bytes, to: s.to, proto: s.proto, from: s.from) }
        sends.removeAll()
    }

    /// Sends everything at once, past the worker's batch: called with the cell locked for replies
    /// relayed upstream, so that two workers relaying replies of one transaction keep their order.
    mutating func flushNow(_ ctx: RouteContext) {
        guard !sends.isEmpty else { return }
        flush(ctx)
        ctx.sender.flush()
    }
}

/// Carries out machine actions on a cell. Every function here runs with the cell's lock held.
enum TMCore {
    static let serverSide = -1
    static let lifetime = -2

    /// Runs server-machine actions. `response` is the response `.sendResponse` sends (and keeps).
    static func runServer(_ store: TMStore, _ cell: TMCell, _ actions: TransactionActions, _ out: inout TMOutbox,
                          response: [UInt8]? = nil) {
        for a in actions {
            switch a {
            case .sendResponse:
                guard let response else { continue }
                cell.lastResponse = response
                out.sentResponse = true
                out.send(response, cell.replyDestination, cell.received.proto, cell.received.local)
            case .retransmitResponse:
                if let r = cell.lastResponse { out.send(r, cell.replyDestination, cell.received.proto, cell.received.local) }
            case .startTimer(let t, let d):
                cell.startTimer(t, side: serverSide, after: d)
            case .stopTimer(let t):
                cell.stopTimer(t, side: serverSide)
            case .passACKToTU:
                out.events.append(.ackPassed)
            case .terminate:
                cancelTimers(cell, serverSide)
                maybeFree(store, cell)
            default:
                break
            }
        }
    }

    /// Runs the actions of branch `i`'s client machine. `response` is the reply that caused them.
    static func runBranch(_ store: TMStore, _ cell: TMCell, _ i: Int, _ actions: TransactionActions, _ out: inout TMOutbox,
                          response: SIPMessage? = nil) {
        let previous = cell.branches[i].lastStatus
        // The branch is copied (a dozen references retained) only by the actions that send: most
        // actions are timer starts and stops.
        for a in actions {
            switch a {
            case .retransmitRequest:
                let b = cell.branches[i]
                out.send(b.request, b.destination, b.proto, b.local)
            case .sendACK:
                let b = cell.branches[i]
                if let response, let sent = try? SIPMessage.parse(b.request),
                   let ack = SIPBuilder.ackForNon2xx(invite: sent, response: response) {
                    cell.branches[i].ack = ack
                    out.send(ack, b.destination, b.proto, b.local)
                }
            case .retransmitACK:
                let b = cell.branches[i]
                if let ack = b.ack { out.send(ack, b.destination, b.proto, b.local) }
            case .startTimer(let t, let d):
                // restart_fr_on_each_reply=0: a provisional restarts fr_inv_timer (Timer C) only when it
                // is the first one or an increasing one from 180 on.
                if t == .C, let response, !store.settings.restartFROnEachReply,
                   (101...199).contains(response.statusCode), previous > 100,
                   !(response.statusCode >= 180 && response.statusCode > previous) {
                    continue
                }
                cell.startTimer(t, side: i, after: d)
            case .stopTimer(let t):
                cell.stopTimer(t, side: i)
            case .passToTU(let code):
                cell.branches[i].previousStatus = cell.branches[i].lastStatus
                cell.branches[i].lastStatus = code
                out.events.append(.reply(i, code))
            case .timeoutToTU, .transportErrorToTU:
                out.events.append(.timeout(i))
            case .cancelBranch:
                let b = cell.branches[i]
                guard !b.cancelSent, let sent = try? SIPMessage.parse(b.request),
                      let cancel = SIPBuilder.cancel(for: sent) else { continue }
                let key = TransactionKey.client(branch: b.branchID, method: "CANCEL")
                cell.branches[i].cancelSent = true
                cell.branches[i].cancelKey = key
                store.table.insert(.cancel(cell, i), for: key)
                out.send(cancel, b.destination, b.proto, b.local)
            case .terminate:
                cancelTimers(cell, i)
                maybeFree(store, cell)
            default:
                break
            }
        }
    }

    static func cancelTimers(_ cell: TMCell, _ side: Int) {
        cell.stopTimers(side: side)
    }

    /// Frees the cell once its server machine and every branch machine have terminated: its keys leave
    /// the table and its timers the wheel.
    static func maybeFree(_ store: TMStore, _ cell: TMCell, force: Bool = false) {
        guard !cell.freed else { return }
        if !force {
            guard cell.isLocal || cell.server.isTerminated, cell.branches.allSatisfy({ $0.machine.isTerminated })
            else { return }
        }
        cell.freed = true
        if cell.suspended { store.suspendedCells.withLock { _ = $0.removeValue(forKey: cell.id) } }
        cell.suspendedReply = nil
        if cell.watchFree && !store.hooks.freed.isEmpty {
            // Outside the lock, on a worker (the callbacks may run Lua).
            let (hooks, id) = (store.hooks.freed, cell.id)
            store.post { ctx in for h in hooks { h(ctx, id) } }
        }
        store.table.remove(cell.serverKey)
        cell.stopAllTimers()
        for i in cell.branches.indices {  // by index: `for b in` copied each branch
            store.table.remove(cell.branches[i].key)
            if let k = cell.branches[i].cancelKey { store.table.remove(k) }
        }
        store.liveCells.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Asks every pending branch except `except` to be cancelled (RFC 3261 §16.7 step 10, §16.10).
    static func cancelPending(_ store: TMStore, _ cell: TMCell, except: Int?, _ out: inout TMOutbox) {
        for j in cell.branches.indices where j != except && cell.branches[j].isPending && !cell.branches[j].replicated {
            let a = cell.branches[j].machine.cancelRequested()
            runBranch(store, cell, j, a, &out)
        }
    }
}
