import Testing
@testable import Diameter

/// Traces of the RFC 6733 §5.6 machine with the RFC 3539 watchdog, on a mock clock (milliseconds).
@Suite("Diameter peer state machine (RFC 6733 §5.6, RFC 3539)")
struct PeerStateMachineTests {
    typealias M = PeerStateMachine
    static let timers = M.Timers(tw: 6_000, twJitter: 0, handshake: 10_000, reconnect: 1_000)

    @Test("initiator: connect, CER/CEA, I-Open; DWR after Tw of silence; DPR/DPA on stop")
    func initiatorTrace() {
        var m = M(localHost: "dra.example", peerHost: "hss1.example", initiates: true, timers: Self.timers)
        #expect(m.begin(now: 0) == [.connect])
        #expect(m.state == .waitConnAck)
        #expect(m.handle(.connAck, now: 10) == [.sendCER])
        #expect(m.state == .waitICEA)
        #expect(m.handle(.rcvCEA(result: 2001), now: 20) == [.opened(.initiator), .failback])
        #expect(m.state == .iOpen && m.watchdog == .okay && m.isUsable)
        // Traffic resets Tw; silence for Tw sends a DWR.
        #expect(m.handle(.rcvMessage(.initiator), now: 3_000) == [])
        #expect(m.tick(now: 8_999) == [])
        #expect(m.tick(now: 9_000) == [.sendDWR(.initiator)])
        #expect(m.handle(.rcvDWA(.initiator), now: 9_010) == [])
        #expect(m.isUsable)
        // The peer's DWR is answered.
        #expect(m.handle(.rcvDWR(.initiator), now: 9_500) == [.sendDWA(.initiator)])
        // Stop: DPR, Closing, DPA closes.
        #expect(m.handle(.stop, now: 10_000) == [.sendDPR(.initiator), .closed, .failover])
        #expect(m.state == .closing && !m.isUsable)
        #expect(m.handle(.rcvDPA(.initiator), now: 10_010) == [.disconnect(.initiator)])
        #expect(m.state == .closed)
    }

    @Test("responder: R-Conn-CER accepted with 2001, refused with 5010; DPR from the peer closes")
    func responderTrace() {
        var m = M(localHost: "dra.example", peerHost: "mme.example", initiates: false, timers: Self.timers)
        #expect(m.begin(now: 0) == [])
        #expect(m.handle(.rConnCER(result: 5010), now: 0) == [.accept, .sendCEA(.responder, result: 5010), .disconnect(.responder)])
        #expect(m.state == .closed)
        #expect(m.tick(now: 60_000) == [])  // accept-only peers never connect
        #expect(m.handle(.rConnCER(result: 2001), now: 1) == [.accept, .sendCEA(.responder, result: 2001), .opened(.responder), .failback])
        #expect(m.state == .rOpen && m.isUsable)
        // A second connection from the same peer is rejected.
        #expect(m.handle(.rConnCER(result: 2001), now: 2) == [.reject])
        #expect(m.handle(.rcvDPR(.responder), now: 3) == [.sendDPA(.responder), .disconnect(.responder), .closed, .failover])
        #expect(m.state == .closed)
    }

    @Test("connection refused: retried every second until open (not only every Tc)")
    func reconnect() {
        var m = M(localHost: "dra", peerHost: "hss", initiates: true, timers: Self.timers)
        #expect(m.begin(now: 0) == [.connect])
        #expect(m.handle(.connNack, now: 5) == [])
        #expect(m.state == .closed && m.nextDeadline == 1_005)
        #expect(m.tick(now: 1_004) == [])
        #expect(m.tick(now: 1_005) == [.connect])
        // No answer to the connect nor CER within the handshake time: closed, retried a second later.
        #expect(m.handle(.connAck, now: 1_010) == [.sendCER])
        #expect(m.tick(now: 11_010) == [.disconnect(.initiator)])
        #expect(m.state == .closed)
        #expect(m.tick(now: 12_010) == [.connect])
        #expect(m.handle(.connAck, now: 12_011) == [.sendCER])
        // CEA with an error closes as well.
        #expect(m.handle(.rcvCEA(result: 5010), now: 12_020) == [.disconnect(.initiator)])
        #expect(m.state == .closed)
    }

    @Test("RFC 3539: no DWA for Tw -> failover (SUSPECT), another Tw -> DOWN and closed; reconnect needs 3 DWAs (REOPEN) before failback")
    func watchdogFailoverFailback() {
        var m = M(localHost: "dra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = m.begin(now: 0)
        _ = m.handle(.connAck, now: 0)
        _ = m.handle(.rcvCEA(result: 2001), now: 0)
        #expect(m.tick(now: 6_000) == [.sendDWR(.initiator)])
        #expect(m.tick(now: 12_000) == [.failover])
        #expect(m.watchdog == .suspect && !m.isUsable && m.isOpen)
        // A late answer in SUSPECT fails back at once.
        #expect(m.handle(.rcvDWA(.initiator), now: 12_500) == [.failback])
        #expect(m.isUsable)
        #expect(m.tick(now: 18_500) == [.sendDWR(.initiator)])
        #expect(m.tick(now: 24_500) == [.failover])
        #expect(m.tick(now: 30_500) == [.disconnect(.initiator), .closed])
        #expect(m.state == .closed && m.watchdog == .down)
        // Reconnect a second later; the reopened connection is not used until three DWAs arrived.
        #expect(m.tick(now: 31_500) == [.connect])
        _ = m.handle(.connAck, now: 31_500)
        #expect(m.handle(.rcvCEA(result: 2001), now: 31_510) == [.opened(.initiator), .sendDWR(.initiator)])
        #expect(m.watchdog == .reopen && !m.isUsable)
        #expect(m.handle(.rcvMessage(.initiator), now: 31_520) == [.throwaway(.initiator)])
        #expect(m.handle(.rcvDWA(.initiator), now: 31_600) == [])
        #expect(m.tick(now: 37_600) == [.sendDWR(.initiator)])
        #expect(m.handle(.rcvDWA(.initiator), now: 37_700) == [])
        #expect(m.tick(now: 43_700) == [.sendDWR(.initiator)])
        #expect(m.handle(.rcvDWA(.initiator), now: 43_800) == [.failback])
        #expect(m.watchdog == .okay && m.isUsable)
    }

    @Test("connection lost while open: closed + failover, then reconnect attempts every second")
    func lostConnection() {
        var m = M(localHost: "dra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = m.begin(now: 0); _ = m.handle(.connAck, now: 0); _ = m.handle(.rcvCEA(result: 2001), now: 0)
        #expect(m.handle(.peerDisc(.initiator), now: 100) == [.closed, .failover])
        #expect(m.tick(now: 1_100) == [.connect])
    }

    @Test("election: both sides connect at once; the higher Origin-Host keeps the peer's connection")
    func election() {
        // "zdra" > "hss": Starling wins, closes its own connection and answers the peer's CER.
        var w = M(localHost: "zdra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = w.begin(now: 0); _ = w.handle(.connAck, now: 0)
        #expect(w.state == .waitICEA)
        #expect(w.handle(.rConnCER(result: 2001), now: 1) == [.accept, .disconnect(.initiator), .sendCEA(.responder, result: 2001), .opened(.responder), .failback])
        #expect(w.state == .rOpen)
        // "adra" < "hss": Starling loses, waits for the CEA on its own connection and drops the peer's.
        var l = M(localHost: "adra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = l.begin(now: 0); _ = l.handle(.connAck, now: 0)
        #expect(l.handle(.rConnCER(result: 2001), now: 1) == [.accept])
        #expect(l.state == .waitReturns)
        #expect(l.handle(.rcvCEA(result: 2001), now: 2) == [.disconnect(.responder), .opened(.initiator), .failback])
        #expect(l.state == .iOpen)
        // Wait-Conn-Ack/Elect: the peer's CER arrives before our connect completes.
        var e = M(localHost: "zdra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = e.begin(now: 0)
        #expect(e.handle(.rConnCER(result: 2001), now: 1) == [.accept])
        #expect(e.state == .waitConnAckElect)
        #expect(e.handle(.connAck, now: 2) == [.sendCER, .disconnect(.initiator), .sendCEA(.responder, result: 2001), .opened(.responder), .failback])
        var n = M(localHost: "adra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = n.begin(now: 0); _ = n.handle(.rConnCER(result: 2001), now: 1)
        #expect(n.handle(.connNack, now: 2) == [.sendCEA(.responder, result: 2001), .opened(.responder), .failback])
    }

    @Test("disable_peer sends DPR and stops reconnecting; enable_peer connects again; DPA timeout closes")
    func adminDisable() {
        var m = M(localHost: "dra", peerHost: "hss", initiates: true, timers: Self.timers)
        _ = m.begin(now: 0); _ = m.handle(.connAck, now: 0); _ = m.handle(.rcvCEA(result: 2001), now: 0)
        #expect(m.setEnabled(false, now: 10) == [.sendDPR(.initiator), .closed, .failover])
        #expect(m.tick(now: 10_010) == [.disconnect(.initiator)])
        #expect(m.state == .closed)
        #expect(m.tick(now: 60_000) == [])
        #expect(m.setEnabled(true, now: 60_000) == [.connect])
    }

    @Test("jitter keeps Tw within ±jitter")
    func jitter() {
        var m = M(localHost: "dra", peerHost: "hss", initiates: true, timers: M.Timers(tw: 30_000, twJitter: 2_000), seed: 42)
        _ = m.begin(now: 0); _ = m.handle(.connAck, now: 0); _ = m.handle(.rcvCEA(result: 2001), now: 0)
        let d = m.nextDeadline ?? 0
        #expect(d >= 28_000 && d <= 32_000)
    }
}

extension PeerStateMachineTests {
    @Test("a client peer that reconnects opens straight into OKAY (REOPEN is for peers Starling connects to)")
    func clientReconnect() {
        var m = M(localHost: "dra", peerHost: "mme", initiates: false, timers: Self.timers)
        _ = m.handle(.rConnCER(result: 2001), now: 0)
        #expect(m.handle(.rcvDPR(.responder), now: 10) == [.sendDPA(.responder), .disconnect(.responder), .closed, .failover])
        #expect(m.handle(.rConnCER(result: 2001), now: 20) == [.accept, .sendCEA(.responder, result: 2001), .opened(.responder), .failback])
        #expect(m.isUsable)
    }
}
