import CStarlingSystem

/// Process-wide stdout buffering (Glibc's `stdout` global is not concurrency-safe to touch from Swift).
public enum StandardOutput {
    public enum Buffering: Int32, Sendable { case none = 0, line = 1, full = 2 }
    /// Sets stdout's buffering; call early, before other threads write.
    public static func setBuffering(_ mode: Buffering) { st_stdout_buffering(mode.rawValue) }
}
