import Foundation

/// A fresh network namespace with only loopback up, for tests whose traffic
/// must not be able to leave the machine (the RFC 4475 messages name outside
/// addresses such as 192.0.2.x and example.com). Needs root and iproute2.
final class NetworkNamespace: @unchecked Sendable {
    let name: String
    private let ip: String
    private var deleted = false

    /// Creates `starling-<random>` (or `name`) and brings `lo` up in it.
    init(name: String? = nil) throws {
        try Requirements.root(for: "a network namespace (ip netns add)")
        ip = try Requirements.tool("ip", package: "iproute2")
        self.name = name ?? "starling-\(UUID().uuidString.prefix(8).lowercased())"
        let add = try Command.run(ip, ["netns", "add", self.name], timeout: .seconds(20))
        guard add.status == 0 else {
            throw HarnessError("ip netns add \(self.name) failed (status \(add.status)): \(add.output)")
        }
        let up = try Command.run(ip, ["-n", self.name, "link", "set", "lo", "up"], timeout: .seconds(20))
        guard up.status == 0 else {
            delete()
            throw HarnessError("ip -n \(self.name) link set lo up failed (status \(up.status)): \(up.output)")
        }
    }

    deinit { delete() }

    /// Removes the namespace (idempotent).
    func delete() {
        guard !deleted else { return }
        deleted = true
        _ = try? Command.run(ip, ["netns", "delete", name], timeout: .seconds(20))
    }

    /// The argument vector that runs `command` inside the namespace.
    func wrap(_ command: [String]) -> [String] {
        [ip, "netns", "exec", name] + command
    }

    /// Runs `command` (absolute path first) inside the namespace to completion.
    func run(_ command: [String], timeout: Duration = .seconds(180), workingDirectory: URL? = nil) throws -> CommandResult {
        precondition(!command.isEmpty)
        return try Command.run(ip, ["netns", "exec", name] + command, timeout: timeout, workingDirectory: workingDirectory)
    }

    /// Creates a namespace, runs `body` with it and always deletes it afterwards.
    static func with<T>(_ body: (NetworkNamespace) throws -> T) throws -> T {
        let namespace = try NetworkNamespace()
        defer { namespace.delete() }
        return try body(namespace)
    }
}
