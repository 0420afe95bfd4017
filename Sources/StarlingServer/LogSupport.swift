#if canImport(Glibc)
import Glibc
#endif
import Foundation
public import Logging
public import StarlingKEMI
import SIPCore

/// The route context a worker thread is routing with, so that log lines written on that thread can
/// carry the Call-ID of the message in hand. Set once when a worker thread starts (no per-message
/// cost); the Call-ID is read only when a line is actually logged.
public enum CurrentRoute {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// Binds `context` to the calling thread (nil unbinds). The context must outlive the binding.
    public static func set(_ context: RouteContext?) {
        pthread_setspecific(key, context.map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) })
    }

    /// The calling thread's route context, if bound.
    public static var context: RouteContext? {
        guard let p = pthread_getspecific(key) else { return nil }
        return Unmanaged<RouteContext>.fromOpaque(p).takeUnretainedValue()
    }

    /// The Call-ID of the message the calling thread is routing, if any.
    public static var callID: String? {
        guard let ctx = context, let m = ctx.message, let r = m.callID else { return nil }
        return m.string(r)
    }

    /// A metadata provider adding `call_id` while a message is being routed on the logging thread.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let id = CurrentRoute.callID else { return [:] }
        return ["call_id": .string(id)]
    }
}

/// `log_format = "json"`: one JSON object per line on standard error:
/// `{"ts":"2026-11-22T20:41:42.123Z","level":"info","label":"starling","msg":"...","call_id":"...",...}`,
/// then the metadata (Logger's, the provider's, the call's) as strings.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let fd: Int32

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, fileDescriptor: Int32 = 2) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.fd = fileDescriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let p = metadataProvider?.get() { all.merge(p) { _, new in new } }
        if let m = event.metadata { all.merge(m) { _, new in new } }
        var line = "{\"ts\":"
        JSONLogHandler.escape(JSONLogHandler.timestamp(), into: &line)
        line += ",\"level\":"
        JSONLogHandler.escape(event.level.rawValue, into: &line)
        line += ",\"label\":"
        JSONLogHandler.escape(label, into: &line)
        line += ",\"msg\":"
        JSONLogHandler.escape(event.message.description, into: &line)
        for key in all.keys.sorted() where !["ts", "level", "label", "msg"].contains(key) {
            line += ","
            JSONLogHandler.escape(key, into: &line)
            line += ":"
            JSONLogHandler.escape(all[key]!.description, into: &line)
        }
        line += "}\n"
        line.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }

    /// Appends `s` as a JSON string literal (quotes, escapes, control characters as \\uXXXX).
    public static func escape(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
