import CCurl

/// One HTTP request as the http_client functions make it.
struct CurlRequest {
    var url: String
    /// CURLOPT_CUSTOMREQUEST (nil: GET, or POST when there is a body).
    var method: String?
    /// Body; nil or empty = none.
    var body: [UInt8]?
    var contentType: String?
    /// Extra header lines (CRLF-separated, as the script passes them).
    var headers: String?
    var username: String?
    var password: String?
    var authMethod: Int = 3
    /// In `timeoutMode` units; 0 = none.
    var timeout: Int
    var timeoutMode: Int
    var verifyPeer = true
    var verifyHost = true
    var followRedirects = false
    var userAgent: String?
    var caCert: String?
    var proxy: String?
    var proxyPort = 0
    /// Keep only the first line of the body (up to the first LF).
    var firstLineOnly: Bool
    /// Store at most this many bytes (0 = all).
    var maxDataSize: Int
}

/// What a request gave: the HTTP status, or the libcurl error, and the body to store.
enum CurlOutcome: Equatable {
    case status(Int, body: [UInt8])
    case failure(code: Int, message: String)

    /// The KSR return value: the status as is (0 → -1), or the negated curl error code.
    var kemiCode: Int {
        switch self {
        case .status(let s, _): return s == 0 ? -1 : s
        case .failure(let code, _): return code > 0 ? -code : -1
        }
    }

    /// The value the result variable gets: the body for statuses 200-499, else "".
    var stored: [UInt8] {
        if case .status(let s, let body) = self, s >= 200 && s < 500 { return body }
        return []
    }
}

/// A libcurl easy handle owned by one worker (reused between requests so connections to the same
/// server are kept alive by libcurl's connection cache).
final class CurlHandle {
    private(set) var handle: UnsafeMutableRawPointer?

    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK }()

    init() {
        guard Self.globalInit else { return }
        handle = curl_easy_init()
    }

    deinit {
        if let handle { curl_easy_cleanup(handle) }
    }

    /// Closes the connection(s) this handle keeps (a connection without keep_connections).
    func reset() {
        if let handle { curl_easy_cleanup(handle) }
        handle = Self.globalInit ? curl_easy_init() : nil
    }

    /// Runs the request, blocking up to its timeout.
    func perform(_ r: CurlRequest) -> CurlOutcome {
        guard let c = handle else { return .failure(code: Int(CURLE_FAILED_INIT.rawValue), message: "libcurl could not be initialised") }
        curl_easy_reset(c)
        let sink = ResponseSink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { if let list { curl_slist_free_all(list) } }
        guard Self.configure(c, r, list: &list, writer: curlWrite, data: unmanaged.toOpaque()) else {
            return .failure(code: Int(CURLE_FAILED_INIT.rawValue), message: "could not set the request options")
        }
        return Self.outcome(c, curl_easy_perform(c), body: sink.bytes, r)
    }

    /// Sets a fresh easy handle up for the request (the blocking handle above, or a transfer of the
    /// async_io multi handle); received bytes go to `writer(data)`. `list` holds the header list,
    /// which the caller frees after the transfer. False when an option could not be set.
    static func configure(_ c: UnsafeMutableRawPointer, _ r: CurlRequest, list: inout UnsafeMutablePointer<curl_slist>?,
                          writer: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int,
                          data: UnsafeMutableRawPointer) -> Bool {
        var ok = starling_curl_setopt_string(c, CURLOPT_URL, r.url) == CURLE_OK
        func set(_ o: CURLoption, _ v: Int) { if starling_curl_setopt_long(c, o, v) != CURLE_OK { ok = false } }
        func set(_ o: CURLoption, _ v: String) { if starling_curl_setopt_string(c, o, v) != CURLE_OK { ok = false } }
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        set(CURLOPT_NOSIGNAL, 1)
        if let m = r.method { set(CURLOPT_CUSTOMREQUEST, m) }
        if let body = r.body, !body.isEmpty {
            if r.method == nil { set(CURLOPT_POST, 1) }
            if let ct = r.contentType { list = curl_slist_append(list, "Content-Type: \(ct)") }
            set(CURLOPT_POSTFIELDSIZE, body.count)
            body.withUnsafeBytes { b in
                if starling_curl_setopt_pointer(c, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: b.baseAddress)) != CURLE_OK {
                    ok = false
                }
            }
        }
        if let h = r.headers {
            for line in h.split(whereSeparator: { $0 == "\r" || $0 == "\n" }) where !line.isEmpty {
                list = curl_slist_append(list, String(line))
            }
        }
        if let list, starling_curl_setopt_slist(c, CURLOPT_HTTPHEADER, list) != CURLE_OK { ok = false }
        if let u = r.username {
            set(CURLOPT_USERNAME, u)
            set(CURLOPT_HTTPAUTH, r.authMethod)
        }
        if let p = r.password { set(CURLOPT_PASSWORD, p) }
        if let ca = r.caCert { set(CURLOPT_CAINFO, ca) }
        if let p = r.proxy { set(CURLOPT_PROXY, p) }
        if r.proxyPort > 0 { set(CURLOPT_PROXYPORT, r.proxyPort) }
        set(CURLOPT_SSL_VERIFYPEER, r.verifyPeer ? 1 : 0)
        set(CURLOPT_SSL_VERIFYHOST, r.verifyHost ? 2 : 0)
        if r.timeoutMode == 1 { set(CURLOPT_TIMEOUT, r.timeout) } else if r.timeoutMode == 2 { set(CURLOPT_TIMEOUT_MS, r.timeout) }
        set(CURLOPT_FOLLOWLOCATION, r.followRedirects ? 1 : 0)
        if let ua = r.userAgent { set(CURLOPT_USERAGENT, ua) }
        if starling_curl_setopt_writer(c, writer) != CURLE_OK { ok = false }
        if starling_curl_setopt_pointer(c, CURLOPT_WRITEDATA, data) != CURLE_OK { ok = false }
        return ok
    }

    /// What a finished transfer gave, as the http_client functions report it.
    static func outcome(_ c: UnsafeMutableRawPointer, _ res: CURLcode, body received: [UInt8], _ r: CurlRequest) -> CurlOutcome {
        guard res == CURLE_OK else {
            return .failure(code: Int(res.rawValue), message: String(cString: curl_easy_strerror(res)))
        }
        return .status(starling_curl_response_code(c), body: stored(received, r))
    }

    /// The part of a body the request keeps: its first line (query_result), or maxdatasize bytes.
    static func stored(_ received: [UInt8], _ r: CurlRequest) -> [UInt8] {
        var body = received
        if r.firstLineOnly, let lf = body.firstIndex(of: 0x0A) {
            body.removeSubrange(lf...)
        } else if r.maxDataSize > 0 && body.count > r.maxDataSize {
            body.removeSubrange(r.maxDataSize...)
        }
        return body
    }
}

/// The body being received (libcurl's write callback appends to it).
private final class ResponseSink {
    var bytes: [UInt8] = []
}

private func curlWrite(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    let n = size * count
    guard let user else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(user).takeUnretainedValue()
    if let data, n > 0 {
        sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
    }
    return n
}
