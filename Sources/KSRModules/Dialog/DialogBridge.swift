import SIPCore
import StarlingKEMI
import Logging

/// `dlg_bridge(from, to, op)` (Kamailio's dlg_transfer.c): the proxy calls `from` with an INVITE of its
/// own (From `bridge_controller`, Contact `bridge_contact`, a hold SDP), and once it is answered sends
/// it a REFER to `to` (Referred-By the controller) and then, whatever the REFER's outcome, a BYE.
enum DialogBridge {
    /// Kamailio's DLG_HOLD_SDP.
    static let holdSDP = "v=0\r\no=kamailio-bridge 0 0 IN IP4 0.0.0.0\r\ns=kamailio\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        + "m=audio 9 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"

    /// 1 when the INVITE left, -1 otherwise (Kamailio: dlg_bridge() != 0).
    static func bridge(_ s: DialogStore, _ ctx: RouteContext, from: String?, to: String?, outboundProxy: String?) -> Int {
        guard let from, !from.isEmpty, SIPURI(from) != nil else {
            ctx.logger.error("dialog: dlg_bridge: invalid From parameter '\(from ?? "")'")
            return -1
        }
        guard let to, !to.isEmpty else {
            ctx.logger.error("dialog: dlg_bridge: invalid To parameter")
            return -1
        }
        guard let rt = ctx.runtime else { return -1 }
        let controller = s.settings.bridgeController
        let contact = s.settings.bridgeContact
        let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let callID = "dlgb-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let cseq = 10
        let headers = "From: <\(controller)>;tag=\(tag)\r\nTo: <\(from)>\r\nCall-ID: \(callID)\r\nCSeq: \(cseq) INVITE\r\n"
            + "Contact: <\(contact)>\r\nContent-Type: application/sdp\r\n"
        let op = outboundProxy ?? ""
        let r = TMLocal.send(rt.tm, ctx, method: "INVITE", ruri: from, nexthop: op, headers: headers, body: Array(holdSDP.utf8),
                             onReply: { ctx, code, reply, _ in
            guard code >= 200 else { return }
            guard code < 300, let reply else {
                ctx.logger.info("dialog: dlg_bridge: the INVITE to \(from) failed with \(code)")
                return
            }
            refer(ctx, reply, from: from, to: to, controller: controller, contact: contact, tag: tag, callID: callID, cseq: cseq)
        })
        if r < 0 { ctx.logger.error("dialog: dlg_bridge: cannot send the INVITE to \(from)") }
        return r > 0 ? 1 : -1
    }

    /// The answered leg: REFER to `to`, then a BYE (the REFER's reply, whatever it is).
    static func refer(_ ctx: RouteContext, _ reply: SIPMessage, from: String, to: String, controller: String, contact: String,
                      tag: String, callID: String, cseq: Int) {
        guard let rt = ctx.runtime, let tt = reply.toTag else {
            ctx.logger.error("dialog: dlg_bridge: the 2xx of \(from) has no To tag")
            return
        }
        let toTag = reply.string(tt)
        var contactURI: String?
        if let v = reply.firstValue(.contact), let na = reply.parseNameAddr(v), !na.isStar { contactURI = reply.string(na.uri) }
        let target = contactURI ?? from
        // The route set toward the callee: the 2xx's Record-Route, reversed (we are the UAC).
        var routes: [String] = []
        reply.forEachHeader(.recordRoute) { f in
            reply.forEachValue(of: f) { v in if let na = reply.parseNameAddr(v) { routes.append(reply.string(na.uri)) } }
        }
        routes.reverse()
        let dialog = "From: <\(controller)>;tag=\(tag)\r\nTo: <\(from)>;tag=\(toTag)\r\nCall-ID: \(callID)\r\n"
            + routes.map { "Route: <\($0)>\r\n" }.joined()
        let referHeaders = dialog + "CSeq: \(cseq + 1) REFER\r\nReferred-By: \(controller)\r\nRefer-To: \(to)\r\nContact: <\(contact)>\r\n"
        let nexthop = routes.first ?? ""
        let r = TMLocal.send(rt.tm, ctx, method: "REFER", ruri: target, nexthop: nexthop, headers: referHeaders, body: [],
                             onReply: { ctx, code, _, _ in
            guard code >= 200, let rt = ctx.runtime else { return }
            // Kamailio sends the BYE whatever the REFER's outcome.
            let bye = dialog + "CSeq: \(cseq + 2) BYE\r\n"
            if TMLocal.send(rt.tm, ctx, method: "BYE", ruri: target, nexthop: nexthop, headers: bye, body: []) < 0 {
                ctx.logger.error("dialog: dlg_bridge: cannot send the BYE to \(target)")
            }
        })
        if r < 0 { ctx.logger.error("dialog: dlg_bridge: cannot send the REFER to \(target)") }
    }
}
