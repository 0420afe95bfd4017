public import StarlingServer
import StarlingLua
import KSRModules
import Diameter

/// `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written from the
/// per-worker counters when scraped; nothing is added to the per-message path.
public enum PrometheusMetrics {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ server: Server) -> String {
        let c = server.counters()
        let m = server.messageCounters()
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name)\(s.labels) \(s.value)\n" }
        }
        func counter(_ name: String, _ help: String, _ key: String) {
            metric(name, "counter", help, [("", String(c[key] ?? 0))])
        }
        counter("starling_messages_received_total", "SIP datagrams received (keepalives and unparsable ones included).", "received")
        let t = server.transportCounters()
        metric("starling_messages_received_by_transport_total", "counter", "SIP messages received, by transport.",
               t.received.keys.sorted().map { ("{transport=\"\($0)\"}", String(t.received[$0]!)) })
        metric("starling_messages_sent_by_transport_total", "counter", "SIP messages sent (requests and replies), by transport.",
               t.sent.keys.sorted().map { ("{transport=\"\($0)\"}", String(t.sent[$0]!)) })
        metric("starling_requests_received_total", "counter", "SIP requests received, by method.",
               m.requests.keys.sorted().map { ("{method=\"\(escape($0))\"}", String(m.requests[$0]!)) })
        metric("starling_replies_received_total", "counter", "SIP replies received, by status class.",
               m.replies.keys.sorted().map { ("{class=\"\($0)\"}", String(m.replies[$0]!)) })
        counter("starling_requests_sent_total", "SIP requests sent (forwarded or generated).", "requests_sent")
        metric("starling_replies_sent_total", "counter", "SIP replies sent (relayed or generated), by status class.",
               m.repliesSent.keys.sorted().map { ("{class=\"\($0)\"}", String(m.repliesSent[$0]!)) })
        counter("starling_send_failures_total", "Datagrams the socket could not send.", "send_failures")
        counter("starling_parse_errors_total", "Datagrams dropped because they do not parse as SIP.", "parse_errors")
        counter("starling_rejected_total", "Invalid messages refused by the core (answered 400/505, or dropped).", "rejected")
        counter("starling_script_errors_total", "Route callbacks that ended in a Lua error or the memory limit.", "script_errors")
        counter("starling_script_budget_aborts_total", "Route callbacks aborted by the instruction budget.", "budget_aborts")
        metric("starling_reloads_total", "counter", "Script reloads, by result.", [
            ("{result=\"ok\"}", String(c["reloads_ok"] ?? 0)),
            ("{result=\"failed\"}", String(c["reloads_failed"] ?? 0)),
        ])
        let sockets = server.socketStatus()
        metric("starling_socket_receive_queue_bytes", "gauge", "Bytes waiting in a UDP socket's receive queue (shared by its workers).",
               sockets.compactMap { s in s.receiveQueue.map { ("{socket=\"\(escape(s.socket))\"}", String($0)) } })
        metric("starling_socket_drops_total", "counter", "Datagrams the kernel dropped on a UDP socket (receive buffer full).",
               sockets.compactMap { s in s.drops.map { ("{socket=\"\(escape(s.socket))\"}", String($0)) } })
        metric("starling_socket_receive_buffer_bytes", "gauge", "A UDP socket's receive buffer size (SO_RCVBUF).",
               sockets.map { ("{socket=\"\(escape($0.socket))\"}", String($0.receiveBuffer)) })
        let p = server.publishedScript
        metric("starling_script_info", "gauge", "The active script version (hash of its files) and path.",
               [("{version=\"\(p.version)\",script=\"\(escape(p.source.path))\"}", "1")])
        metric("starling_script_generation", "gauge", "How many script versions have been published since start.",
               [("", String(p.generation))])
        // The loaded modules' statistics (their `statistics` rows).
        for (s, samples) in server.stack.statistics() {
            metric(s.metric, s.kind.rawValue, s.help, samples.map { sample in
                if s.labels.isEmpty { return ("", String(sample.value)) }
                let pairs = zip(s.labels, sample.labels).map { "\($0)=\"\(escape($1))\"" }
                return ("{" + pairs.joined(separator: ",") + "}", String(sample.value))
            })
        }
        // The dispatcher's per-destination gauges and counters (labels set and uri).
        for f in DispatcherMetrics.families(server.stack.runtime) { metric(f.name, f.type, f.help, f.samples) }
        // dialog: the size of each declared profile (per value for profiles with values).
        if server.stack.isLoaded("dialog") {
            let sizes = DialogModule.store(server.stack.runtime).profileSizes()
            metric("starling_dialog_profile_size", "gauge", "Dialogs in a dialog profile (by profile, and value for profiles with values).",
                   sizes.map { p in
                       ("{profile=\"\(escape(p.name))\"" + (p.value.map { ",value=\"\(escape($0))\"" } ?? "") + "}", String(p.size))
                   })
        }
        // Diameter: per-peer state, requests relayed, answers by Result-Code, answer latency.
        if let link = server.stack.runtime.diameter.link {
            let peers = link.peerStatus
            func peer(_ p: DiameterPeerStatus) -> String { "peer=\"\(escape(p.identity))\"" }
            metric("starling_diameter_peer_up", "gauge", "1 when the Diameter peer is open and its watchdog OKAY (state: RFC 6733 peer state).",
                   peers.map { ("{\(peer($0)),state=\"\($0.state)\",watchdog=\"\($0.watchdog)\"}", $0.usable ? "1" : "0") })
            metric("starling_diameter_peer_requests_relayed_total", "counter", "Requests relayed to the Diameter peer.",
                   peers.map { ("{\(peer($0))}", String($0.requestsRelayed)) })
            metric("starling_diameter_peer_requests_pending", "gauge", "Requests relayed to the peer waiting for their answer.",
                   peers.map { ("{\(peer($0))}", String($0.pending)) })
            metric("starling_diameter_peer_answers_total", "counter",
                   "Answers by Result-Code: received from the peer, or sent by Starling for requests from it (3002, 3005, local answers).",
                   peers.flatMap { p in p.answersByResult.keys.sorted().map { ("{\(peer(p)),result=\"\($0)\"}", String(p.answersByResult[$0]!)) } })
            out += "# HELP starling_diameter_peer_answer_seconds Time from relaying a request to the peer to its answer.\n"
            out += "# TYPE starling_diameter_peer_answer_seconds summary\n"
            for p in peers {
                out += "starling_diameter_peer_answer_seconds_sum{\(peer(p))} \(Double(p.latencyMicrosSum) / 1e6)\n"
                out += "starling_diameter_peer_answer_seconds_count{\(peer(p))} \(p.latencyCount)\n"
            }
        }
        out += "# HELP starling_route_duration_seconds Route callback execution time (Lua and the KSR functions it called), by callback.\n"
        out += "# TYPE starling_route_duration_seconds histogram\n"
        for h in server.routeTimes() {
            let kind = h.kind.label
            for (i, bound) in RouteTimeHistogram.bounds.enumerated() {
                out += "starling_route_duration_seconds_bucket{route=\"\(kind)\",le=\"\(bound)\"} \(h.cumulative[i])\n"
            }
            out += "starling_route_duration_seconds_bucket{route=\"\(kind)\",le=\"+Inf\"} \(h.cumulative.last ?? 0)\n"
            out += "starling_route_duration_seconds_sum{route=\"\(kind)\"} \(h.sumSeconds)\n"
            out += "starling_route_duration_seconds_count{route=\"\(kind)\"} \(h.cumulative.last ?? 0)\n"
        }
        metric("starling_workers", "gauge", "Worker threads.", [("", String(server.workerCount))])
        metric("starling_worker_messages_received_total", "counter",
               "SIP messages each worker routed (UDP and connections); a UDP socket's first worker takes them all until it falls behind.",
               server.receivedByWorker().enumerated().map { ("{worker=\"\($0.offset)\"}", String($0.element)) })
        metric("starling_udp_helper_joins_total", "counter",
               "Times a worker started reading a UDP socket besides its first worker, by reason (backlog: datagrams queued; stall: every reader busy in one message for 20 ms).",
               server.udpHelperJoins().map { ("{reason=\"\($0.reason)\"}", String($0.count)) })
        metric("starling_workers_on_active_script", "gauge", "Worker threads running the active script version.",
               [("", String(server.workersOnCurrentScript))])
        metric("starling_uptime_seconds", "gauge", "Seconds since start.", [("", String(server.uptimeSeconds))])
        metric("starling_start_time_seconds", "gauge", "Start time, seconds since the Unix epoch.",
               [("", String(server.startedAtUnix))])
        return out
    }

    /// Label value escaping: backslash, double quote, line feed.
    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }
}
