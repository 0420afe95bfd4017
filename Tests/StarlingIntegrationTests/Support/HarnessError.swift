import Foundation

/// Why the integration harness could not do what a test asked. Tests let these
/// propagate so that a missing tool, missing root or a server that does not
/// come up FAILS the test with the message (it is never skipped).
struct HarnessError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Checks for the tools and privileges integration tests depend on.
enum Requirements {
    /// The absolute path of `name` found on `PATH`, or a `HarnessError` naming the package to install.
    static func tool(_ name: String, package: String) throws -> String {
        if name.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: name) else {
                throw HarnessError("required tool \(name) is missing or not executable (Debian package: \(package))")
            }
            return name
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        for dir in directories {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        throw HarnessError("required tool '\(name)' not found in \(directories.joined(separator: ":")) (install the Debian package \(package))")
    }

    /// Fails unless the test runs as root (network namespaces need CAP_SYS_ADMIN).
    static func root(for purpose: String) throws {
        guard geteuid() == 0 else {
            throw HarnessError("\(purpose) needs root (CAP_SYS_ADMIN); run the integration tests as root")
        }
    }
}
