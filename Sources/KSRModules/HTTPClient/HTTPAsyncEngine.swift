#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Synchronization
import SIPTransport

/// One http_async_client request, as `$http_req(...)` and the modparams left it.
struct HTTPAsyncRequest: Sendable {
    var url: String
    /// GET, POST, PUT, DELETE; nil: GET, or POST when there is a body.
    var method: String?
    var body: [UInt8]?
    var headers: [String] = []
    /// Milliseconds.
    var timeout: Int
    var verifyPeer: Bool
    var verifyHost: Bool
    var followRedirect: Bool
    var authMethod: Int
    var username: String?
    var password: String?
    var clientCert: String?
    var clientKey: String?
    var caPath: String?
    var tlsVersion: Int
    var keepalive: Bool
    var keepaliveIdle: Int
    var keepaliveInterval: Int
}

/// What came back: the raw response (status line, headers, body; the last response when redirects
/// were followed) or an error text (`$http_err`: "TIMEOUT", or libcurl's message), and the timings
/// in microseconds (`$http_time(...)`).
struct HTTPAsyncResult: Sendable {
    var error: String?
    var raw: [UInt8] = []
    var status = 0
    var reason = ""
    var headers: [(name: String, value: String)] = []
    var bodyStart = 0
    var times: [String: Int] = [:]

    var body: ArraySlice<UInt8> { raw[min(bodyStart, raw.count)...] }

    /// The first header of that name (case-insensitive).
    func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }

    /// Splits the received bytes: header blocks of interim (1xx) and redirect responses are skipped,
    /// the last one is the answer.
    mutating func parse(_ bytes: [UInt8]) {
        var start = 0
        while true {
            guard let end = Self.headerEnd(bytes, from: start) else {
                raw = Array(bytes[start...])
                bodyStart = raw.count
                return
            }
            let head = String(decoding: bytes[start..<end], as: UTF8.self)
            var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
            let statusLine = lines.isEmpty ? "" : lines.removeFirst()
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            let code = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            // Another response follows (100 Continue, a followed redirect): skip this one.
            let next = end + 4
            if next < bytes.count, bytes[next...].starts(with: Array("HTTP/".utf8)) {
                start = next
                continue
            }
            status = code
            reason = parts.count > 2 ? String(parts[2]) : ""
            headers = lines.compactMap { l in
                guard let c = l.firstIndex(of: ":") else { return nil }
                return (String(l[..<c]).trimmingSpacesAndTabs(), String(l[l.index(after: c)...]).trimmingSpacesAndTabs())
            }
            raw = Array(bytes[start...])
            bodyStart = next - start
            return
        }
    }

    private static func headerEnd(_ b: [UInt8], from: Int) -> Int? {
        guard b.count >= from + 4 else { return nil }
        var i = from
        while i + 3 < b.count {
            if b[i] == 13, b[i + 1] == 10, b[i + 2] == 13, b[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }
}

/// http_async_client's workers: `workers` threads, each driving a libcurl multi handle, so any number
/// of requests wait at once without a SIP worker waiting. A request is queued to one of them (round
/// robin, as Kamailio); when it ends, its completion runs on that thread and hands the result to the
/// SIP worker that asked (`WorkerMailbox`). The threads start with the first request and stop when
/// the module state goes away.
final class HTTPAsyncEngine: Sendable {
    private let lanes: [Lane]
    private let next = Atomic<Int>(0)
    /// Counters (`http_async_client:requests|replies|errors|timeouts`).
    let requests = Atomic<Int>(0)
    let replies = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)

    init(workers: Int) {
        lanes = (0..<max(1, workers)).map { Lane(index: $0) }
    }

    deinit { for l in lanes { l.stop() } }

    /// Queues a request; `done` runs on an HTTP thread when it ends. False when it could not be queued.
    func submit(_ r: HTTPAsyncRequest, done: @escaping @Sendable (HTTPAsyncResult) -> Void) -> Bool {
        let lane = lanes[next.wrappingAdd(1, ordering: .relaxed).oldValue % lanes.count]
        requests.wrappingAdd(1, ordering: .relaxed)
        return lane.submit(Job(request: r, done: { [weak self] res in
            if let self {
                if res.error == nil {
                    self.replies.wrappingAdd(1, ordering: .relaxed)
                } else {
                    self.errors.wrappingAdd(1, ordering: .relaxed)
                    if res.error == "TIMEOUT" { self.timeouts.wrappingAdd(1, ordering: .relaxed) }
                }
            }
            done(res)
        }))
    }

    /// async_io: an http_client request on the multi handle instead of the worker's blocking handle;
    /// `done` runs on an HTTP thread with the outcome the blocking call would have returned.
    func submit(plain r: CurlRequest, done: @escaping @Sendable (CurlOutcome) -> Void) -> Bool {
        let lane = lanes[next.wrappingAdd(1, ordering: .relaxed).oldValue % lanes.count]
        return lane.submit(Job(plain: r, done: done))
    }

    /// A queued request: an http_async_client one, or (async_io) an http_client one.
    struct Job: Sendable {
        let request: HTTPAsyncRequest
        let done: @Sendable (HTTPAsyncResult) -> Void
        let plain: (request: CurlRequest, done: @Sendable (CurlOutcome) -> Void)?

        init(request: HTTPAsyncRequest, done: @escaping @Sendable (HTTPAsyncResult) -> Void) {
            self.request = request
            self.done = done
            plain = nil
        }

        init(plain r: CurlRequest, done: @escaping @Sendable (CurlOutcome) -> Void) {
            request = HTTPAsyncRequest(url: r.url, timeout: 0, verifyPeer: true, verifyHost: true, followRedirect: false,
                                       authMethod: 0, tlsVersion: 0, keepalive: false, keepaliveIdle: 0, keepaliveInterval: 0)
            self.done = { res in done(.failure(code: Int(CURLE_FAILED_INIT.rawValue), message: res.error ?? "failed")) }
            plain = (r, done)
        }
    }

    /// One thread and its multi handle.
    final class Lane: @unchecked Sendable {
        // Safety: `queue` and `stopped` are behind the mutex; the multi handle and `active` are touched
        // only by the lane's thread (curl_multi_wakeup is documented thread-safe).
        let index: Int
        private let state = Mutex<(queue: [Job], stopped: Bool, started: Bool)>(([], false, false))
        /// Made with the lane (cheap: no thread, no socket), so that every submitter sees it.
        private let multi: UnsafeMutableRawPointer?
        /// Written once by the submitter that starts the thread; read by `stop()`.
        private let thread = Mutex<PosixThread?>(nil)

        init(index: Int) {
            self.index = index
            multi = HTTPAsyncEngine.globalInit ? curl_multi_init() : nil
        }

        func submit(_ job: Job) -> Bool {
            guard let multi else {
                job.done(HTTPAsyncResult(error: "libcurl could not be initialised"))
                return true
            }
            let (ok, start) = state.withLock { s -> (Bool, Bool) in
                if s.stopped { return (false, false) }
                s.queue.append(job)
                let start = !s.started
                s.started = true
                return (true, start)
            }
            guard ok else { return false }
            if start {
                do {
                    let t = try PosixThread(name: "http-async-\(index)") { [self] in run() }
                    thread.withLock { $0 = t }
                } catch {
                    let jobs = state.withLock { s -> [Job] in
                        s.stopped = true
                        defer { s.queue.removeAll() }
                        return s.queue
                    }
                    for j in jobs { j.done(HTTPAsyncResult(error: "cannot start the HTTP thread")) }
                }
            } else {
                curl_multi_wakeup(multi)
            }
            return true
        }

        func stop() {
            state.withLock { $0.stopped = true }
            guard let multi else { return }
            curl_multi_wakeup(multi)
            thread.withLock { $0 }?.join()
            curl_multi_cleanup(multi)
        }

        /// Transfers in progress: the easy handle's address → its transfer.
        private var active: [UnsafeMutableRawPointer: Transfer] = [:]

        private func run() {
            guard let m = multi else { return }
            while true {
                let (jobs, stopped) = state.withLock { s -> ([Job], Bool) in
                    let q = s.queue
                    s.queue.removeAll()
                    return (q, s.stopped)
                }
                if stopped {
                    for (easy, t) in active {
                        curl_multi_remove_handle(m, easy)
                        curl_easy_cleanup(easy)
                        t.job.done(HTTPAsyncResult(error: "shutting down"))
                    }
                    active.removeAll()
                    for j in jobs { j.done(HTTPAsyncResult(error: "shutting down")) }
                    return
                }
                for j in jobs { start(j, m) }
                var running: Int32 = 0
                curl_multi_perform(m, &running)
                var result = CURLE_OK
                while let easy = starling_curl_multi_done(m, &result) {
                    let key = UnsafeMutableRawPointer(easy)
                    curl_multi_remove_handle(m, easy)
                    if let t = active.removeValue(forKey: key) {
                        if let plain = t.job.plain {
                            plain.done(CurlHandle.outcome(easy, result, body: t.bytes, plain.request))
                        } else {
                            t.job.done(t.finish(easy, result))
                        }
                    }
                    curl_easy_cleanup(easy)
                }
                var fds: Int32 = 0
                curl_multi_poll(m, nil, 0, 1000, &fds)
            }
        }

        private func start(_ j: Job, _ m: UnsafeMutableRawPointer) {
            guard let easy = curl_easy_init() else {
                j.done(HTTPAsyncResult(error: "curl_easy_init() failed"))
                return
            }
            let t = Transfer(job: j)
            if let plain = j.plain {
                let data = Unmanaged.passUnretained(t).toOpaque()
                guard CurlHandle.configure(easy, plain.request, list: &t.headerList, writer: asyncCurlWrite, data: data) else {
                    curl_easy_cleanup(easy)
                    j.done(HTTPAsyncResult(error: "could not set the request options"))
                    return
                }
                add(t, easy, m)
                return
            }
            let r = j.request
            var ok = starling_curl_setopt_string(easy, CURLOPT_URL, r.url) == CURLE_OK
            func set(_ o: CURLoption, _ v: Int) { if starling_curl_setopt_long(easy, o, v) != CURLE_OK { ok = false } }
            func set(_ o: CURLoption, _ v: String) { if starling_curl_setopt_string(easy, o, v) != CURLE_OK { ok = false } }
            set(CURLOPT_PROTOCOLS_STR, "http,https")
            set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
            set(CURLOPT_NOSIGNAL, 1)
            set(CURLOPT_HEADER, 1)
            if r.timeout > 0 { set(CURLOPT_TIMEOUT_MS, r.timeout) }
            if r.followRedirect { set(CURLOPT_FOLLOWLOCATION, 1) }
            set(CURLOPT_SSL_VERIFYPEER, r.verifyPeer ? 1 : 0)
            set(CURLOPT_SSL_VERIFYHOST, r.verifyHost ? 2 : 0)
            if r.tlsVersion > 0 { set(CURLOPT_SSLVERSION, r.tlsVersion) }
            if let c = r.clientCert { set(CURLOPT_SSLCERT, c) }
            if let k = r.clientKey { set(CURLOPT_SSLKEY, k) }
            if let p = r.caPath { set(CURLOPT_CAPATH, p) }
            for h in r.headers { t.headerList = curl_slist_append(t.headerList, h) }
            if let l = t.headerList, starling_curl_setopt_slist(easy, CURLOPT_HTTPHEADER, l) != CURLE_OK { ok = false }
            if let body = r.body, !body.isEmpty {
                set(CURLOPT_POSTFIELDSIZE, body.count)
                body.withUnsafeBytes { b in
                    if starling_curl_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: b.baseAddress)) != CURLE_OK {
                        ok = false
                    }
                }
            }
            if let method = r.method { set(CURLOPT_CUSTOMREQUEST, method) }
            if let u = r.username {
                set(CURLOPT_USERNAME, u)
                set(CURLOPT_HTTPAUTH, r.authMethod)
            }
            if let p = r.password { set(CURLOPT_PASSWORD, p) }
            if r.keepalive {
                set(CURLOPT_TCP_KEEPALIVE, 1)
                if r.keepaliveIdle > 0 { set(CURLOPT_TCP_KEEPIDLE, r.keepaliveIdle) }
                if r.keepaliveInterval > 0 { set(CURLOPT_TCP_KEEPINTVL, r.keepaliveInterval) }
            }
            let opaque = Unmanaged.passUnretained(t).toOpaque()
            if starling_curl_setopt_writer(easy, asyncCurlWrite) != CURLE_OK { ok = false }
            if starling_curl_setopt_pointer(easy, CURLOPT_WRITEDATA, opaque) != CURLE_OK { ok = false }
            guard ok else {
                curl_easy_cleanup(easy)
                j.done(HTTPAsyncResult(error: "could not set the request options"))
                return
            }
            add(t, easy, m)
        }

        private func add(_ t: Transfer, _ easy: UnsafeMutableRawPointer, _ m: UnsafeMutableRawPointer) {
            let j = t.job
            active[easy] = t
            if curl_multi_add_handle(m, easy) != CURLM_OK {
                active.removeValue(forKey: easy)
                curl_easy_cleanup(easy)
                j.done(HTTPAsyncResult(error: "cannot add the request to the multi handle"))
            }
        }
    }

    /// A transfer in progress: the bytes received so far (headers and body: CURLOPT_HEADER).
    final class Transfer {
        let job: Job
        var bytes: [UInt8] = []
        var headerList: UnsafeMutablePointer<curl_slist>?

        init(job: Job) { self.job = job }
        deinit { if let headerList { curl_slist_free_all(headerList) } }

        func finish(_ easy: UnsafeMutableRawPointer, _ code: CURLcode) -> HTTPAsyncResult {
            var r = HTTPAsyncResult()
            if code != CURLE_OK {
                r.error = code == CURLE_OPERATION_TIMEDOUT ? "TIMEOUT" : String(cString: curl_easy_strerror(code))
                return r
            }
            r.parse(bytes)
            if r.status == 0 { r.status = starling_curl_response_code(easy) }
            let names: [(String, CURLINFO)] = [
                ("total", CURLINFO_TOTAL_TIME_T), ("lookup", CURLINFO_NAMELOOKUP_TIME_T),
                ("connect", CURLINFO_CONNECT_TIME_T), ("redirect", CURLINFO_REDIRECT_TIME_T),
                ("appconnect", CURLINFO_APPCONNECT_TIME_T), ("pretransfer", CURLINFO_PRETRANSFER_TIME_T),
                ("starttransfer", CURLINFO_STARTTRANSFER_TIME_T),
            ]
            for (n, i) in names { r.times[n] = Int(starling_curl_info_off(easy, i)) }
            return r
        }
    }

    static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK }()
}

private func asyncCurlWrite(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    let n = size * count
    guard let user else { return 0 }
    let t = Unmanaged<HTTPAsyncEngine.Transfer>.fromOpaque(user).takeUnretainedValue()
    if let data, n > 0 { t.bytes.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n)) }
    return n
}
