#if canImport(Glibc)
import Glibc
#endif
import CStarlingSystem

/// A failed system call in the transport layer: what was attempted and the `errno` it gave.
public struct TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The operation, e.g. "bind 127.0.0.1:5060" or "recvmmsg".
    public var operation: String
    /// The `errno` value (0 when the failure is not a system error).
    public var errno: Int32
    /// Extra text when `errno` is 0.
    public var detail: String?

    public init(_ operation: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    /// The system's text for `errno` ("Address already in use").
    public var errnoText: String { TransportError.text(forErrno: errno) }

    public var description: String {
        if errno == 0 { return "\(operation): \(detail ?? "failed")" }
        return "\(operation): \(errnoText) (errno \(errno))"
    }

    /// The system's text for an errno value. Thread-safe.
    public static func text(forErrno e: Int32) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 128) { buf in
            String(cString: st_strerror(e, buf.baseAddress!, 128))
        }
    }
}
