/// A configuration problem: the key it concerns (e.g. "core.workers", "modparam.tm.fr_timer",
/// "STARLING_CORE_WORKERS", "--workers", or the file path) and what is wrong with it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the problem is: a dotted TOML key, an environment variable, a command-line flag or a file.
    public var key: String
    /// What is wrong ("expected a positive integer, got \"abc\"").
    public var message: String

    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }

    /// "core.workers: expected a positive integer, got \"abc\"".
    public var description: String { "\(key): \(message)" }
}
