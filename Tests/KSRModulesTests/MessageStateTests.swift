import Testing
import SIPCore
import SIPTransport
import StarlingKEMI

/// `MessageState.reset` (the in-place reset of the per-message hot path) must leave exactly what a
/// fresh `MessageState(...)` holds, for every field.
@Suite struct MessageStateTests {
    final class Transaction: RouteTransaction {}

    @Test func resetEqualsAFreshStateForEveryField() throws {
        let m = try SIPMessage.parse(Array(Msg.invite.utf8))
        let a = SocketAddress(ip: "192.0.2.10", port: 5060)!, b = SocketAddress(ip: "127.0.0.1", port: 5060)!
        var st = MessageState(message: nil, received: ReceiveInfo(source: b, local: a, proto: .tcp, connectionID: 7),
                              routeType: .failure)
        // Every field away from its initial value.
        st.messageFlags = 1
        st.branchFlags = 2
        st.scriptFlags = 3
        st.destinationURI = Array("sip:x".utf8)
        st.forceRport = true
        st.addLocalRport = true
        st.advertisedAddress = "adv.example"
        st.advertisedPort = 5099
        st.dropRequested = true
        st.replied = true
        st.avps = ["a": [.int(1)]]
        st.xavps = ["x": [["f": [.string("v")]]]]
        st.extendedFlags = 4
        st.branches = [Array("sip:b".utf8)]
        st.branchDestinations = [0: Array("sip:d".utf8)]
        st.extraBranchFlags = [0: 5]
        st.requestURIQ = 500
        st.branchQ = [100]
        st.replyHeaders = Array("X: y\r\n".utf8)
        st.replyBody = (Array("body".utf8), "text/plain")
        st.lastError = -478
        st.receivedAt = (1, 2)
        st.recordRoute = RecordRouteLump(addresses: [], lr: ";lr", fromTag: "", params: "", double: false)
        st.recordRouteParams = ";p=1"
        st.routedParams = ";r=1"
        st.connectionFlags.forwardClose = true
        st.transaction = Transaction()
        st.forcedSocket = LocalSocket(proto: .udp, address: b, name: "x")
        st.paths = [PathLump(user: "", suffix: ";lr", r2: false, socketNames: false)]
        let dirtied: Set<String> = [
            "message", "routeType", "received", "messageFlags", "branchFlags", "scriptFlags", "destinationURI",
            "forceRport", "addLocalRport", "advertisedAddress", "advertisedPort", "dropRequested", "replied", "avps",
            "xavps", "extendedFlags", "branches", "branchDestinations", "extraBranchFlags", "requestURIQ", "branchQ",
            "replyHeaders", "replyBody", "lastError", "receivedAt", "recordRoute", "recordRouteParams",
            "routedParams", "connectionFlags", "transaction", "forcedSocket", "paths",
        ]
        // A field added to MessageState must be dirtied above and reset in `reset`.
        #expect(Set(Mirror(reflecting: st).children.compactMap(\.label)) == dirtied)

        let received = ReceiveInfo(source: a, local: b, proto: .udp)
        st.reset(message: m, received: received, routeType: .request)
        let fresh = MessageState(message: m, received: received, routeType: .request)
        #expect(String(describing: st) == String(describing: fresh))
    }
}
