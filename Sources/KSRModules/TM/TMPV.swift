import SIPCore
import SIPTransaction
import StarlingKEMI

/// The transaction pseudo-variables of tmx beyond `$T_reply_code` / `$T_branch_idx`: `$T_req(pv)`,
/// `$T_rpl(pv)`, `$T_inv(pv)`, `$T(name)`, `$T_branch(name)`, `$T_reply_reason`, `$T_reply_last`,
/// `$T_reply_ruid`. Read-only; the route types and null cases follow tmx's t_var.c.
indirect enum TMPV: Hashable {
    /// `$T_req(pv)`: `pv` on the transaction's request; only while the message is a reply.
    case req(PseudoVariable)
    /// `$T_rpl(pv)`: `pv` on the winning reply; only while the message is a request (failure routes).
    case rpl(PseudoVariable)
    /// `$T_inv(pv)`: `pv` on the INVITE a CANCEL targets.
    case inv(PseudoVariable)
    /// `$T(name)`.
    case attribute(Attribute)
    /// `$T_branch(flags|uri|ruid)`.
    case branch(BranchField)
    case replyReason, replyLast, replyRUID

    enum Attribute: Hashable {
        case idIndex, idLabel, idIndexN, idLabelN, replyCode, replyType, branchIndex
    }

    enum BranchField: Hashable { case flags, uri, ruid }

    /// `name(inner)` forms. Nil: not a tm name (or an invalid inner part).
    static func parse(name: String, inner: String) -> TMPV? {
        switch name {
        case "T_req", "T_rpl", "T_inv":
            guard let pv = PseudoVariable.parse(inner) else { return nil }
            return name == "T_req" ? .req(pv) : name == "T_rpl" ? .rpl(pv) : .inv(pv)
        case "T":
            switch inner {
            case "id_index": return .attribute(.idIndex)
            case "id_label": return .attribute(.idLabel)
            case "id_index_n": return .attribute(.idIndexN)
            case "id_label_n": return .attribute(.idLabelN)
            case "reply_code": return .attribute(.replyCode)
            case "reply_type": return .attribute(.replyType)
            case "branch_index": return .attribute(.branchIndex)
            default: return nil
            }
        case "T_branch":
            switch inner {
            case "flags": return .branch(.flags)
            case "uri": return .branch(.uri)
            case "ruid": return .branch(.ruid)
            default: return nil
            }
        default:
            return nil
        }
    }

    /// Plain names.
    static func parse(name: Substring) -> TMPV? {
        switch name {
        case "T_reply_reason": return .replyReason
        case "T_reply_last": return .replyLast
        case "T_reply_ruid": return .replyRUID
        default: return nil
        }
    }

    func get(_ ctx: RouteContext) -> PVValue {
        guard let store = ctx.transactions as? TMStore else { return .null }
        let ws = store.workerState(ctx)
        switch self {
        case .req(let pv):
            // tmx: only for replies (the request is the transaction's, as received, with its edits).
            guard let m = ctx.message, !m.isRequest, let cell = Self.cell(store, ctx) else { return .null }
            let (req, rcv) = cell.locked { (cell.request, cell.received) }
            return Self.evaluate(ctx, pv, on: req, received: rcv)
        case .rpl(let pv):
            // tmx: only for requests, with the branch the failure route runs for; null for a local 408.
            guard let m = ctx.message, m.isRequest, let cell = TMRelay.current(ctx),
                  ctx.routeType == .failure || ctx.routeType == .branchFailure else { return .null }
            let b = ws.branchIndex
            guard let reply = cell.locked({ b >= 0 && b < cell.branches.count ? cell.branches[b].replyMessage?.value : nil })
            else { return .null }
            return Self.evaluate(ctx, pv, on: reply, received: nil)
        case .inv(let pv):
            guard let m = ctx.message, m.isRequest, m.method == .cancel, let inv = TMRelay.lookupCancelled(store, ctx, m)
            else { return .null }
            let (req, rcv) = inv.locked { (inv.request, inv.received) }
            return Self.evaluate(ctx, pv, on: req, received: rcv)
        case .attribute(let a):
            switch a {
            case .replyCode: return .int(TMModule.replyCodePV(ctx))
            case .branchIndex: return .int(TMModule.branchIndexPV(ctx))
            default: break
            }
            var cell = TMRelay.current(ctx)
            if cell == nil, a == .idIndexN || a == .idLabelN {
                // tmx creates the transaction for the `_n` forms.
                guard TMRelay.newTransaction(store, ctx) == 1 else { return .null }
                cell = TMRelay.current(ctx)
            }
            guard let cell else { return .null }
            switch a {
            case .idIndex, .idIndexN: return .int(store.table.shardIndex(of: cell.serverKey))
            case .idLabel, .idLabelN: return .int(Int(truncatingIfNeeded: cell.id))
            case .replyType:
                guard ctx.routeType == .failure else { return .int(0) }
                let b = ws.branchIndex
                return .int(cell.locked { b >= 0 && b < cell.branches.count && cell.branches[b].finalReply == nil } ? 1 : 0)
            default: return .null
            }
        case .branch(let f):
            guard let cell = TMRelay.current(ctx) else { return .null }
            let b = ws.branchIndex
            switch f {
            case .flags:
                guard ctx.routeType == .failure || ctx.routeType == .branchFailure else { return .null }
                return cell.locked { b >= 0 && b < cell.branches.count ? .int(Int(cell.branches[b].flags)) : .null }
            case .uri:
                guard ctx.routeType == .onreply else { return .null }
                return cell.locked {
                    b >= 0 && b < cell.branches.count ? .string(String(decoding: cell.branches[b].uri, as: UTF8.self)) : .null
                }
            case .ruid:
                // Branches carry no location ruid yet (registrar does not pass one).
                return .string("")
            }
        case .replyRUID:
            // "" without T as with one: branches carry no location ruid yet.
            return .string("")
        case .replyReason:
            guard let cell = Self.cell(store, ctx) else { return .string("") }
            switch ctx.routeType {
            case .onreply, .reply:
                guard let m = ctx.message, !m.isRequest else { return .null }
                return .string(m.string(m.reasonRange))
            case .failure:
                let b = ws.branchIndex
                return cell.locked {
                    guard b >= 0 && b < cell.branches.count else { return .null }
                    if let r = cell.branches[b].replyMessage?.value { return .string(r.string(r.reasonRange)) }
                    return .string(TMReply.reasonPhrase(cell.branches[b].finalStatus))
                }
            default:
                return .null
            }
        case .replyLast:
            guard ctx.routeType == .onreply, let cell = TMRelay.current(ctx) else { return .null }
            let b = ws.branchIndex
            return cell.locked { b >= 0 && b < cell.branches.count ? .int(cell.branches[b].previousStatus) : .null }
        }
    }

    /// The transaction of the route, or the one a reply in the core reply route belongs to.
    static func cell(_ store: TMStore, _ ctx: RouteContext) -> TMCell? {
        if let c = TMRelay.current(ctx) { return c }
        guard let m = ctx.message, !m.isRequest, let key = TransactionKey.client(for: m),
              case .client(let cell, _)? = store.table.lookup(key) else { return nil }
        return cell
    }

    /// `pv` read with `m` as the route's message (bytes are copied out before the message is put back).
    static func evaluate(_ ctx: RouteContext, _ pv: PseudoVariable, on m: SIPMessage, received: ReceiveInfo?) -> PVValue {
        let (savedMessage, savedReceived) = (ctx.message, ctx.received)
        ctx.message = m
        if let received { ctx.received = received }
        defer {
            ctx.message = savedMessage
            ctx.received = savedReceived
        }
        let v = PVEngine.get(ctx, pv)
        if case .bytes(let r) = v { return .string(m.string(r)) }
        return v
    }
}
