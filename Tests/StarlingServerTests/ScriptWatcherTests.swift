import Testing
import Foundation
import Synchronization
@testable import StarlingServer

/// Records the callbacks a watcher makes.
private final class Recorder: Sendable {
    let calls = Mutex<[Set<String>]>([])
    func record(_ s: Set<String>) { calls.withLock { $0.append(s) } }
    var snapshot: [Set<String>] { calls.withLock { $0 } }

    /// Waits until at least `n` callbacks arrived (or `timeout` passed); returns them.
    func wait(for n: Int, timeout: Duration = .seconds(5)) -> [Set<String>] {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while calls.withLock({ $0.count }) < n && clock.now < end { usleep(5_000) }
        return snapshot
    }
}

/// A fresh temporary directory, removed by `cleanup`.
private func makeDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("starling-watch-\(UUID())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes in place (open, write, close: IN_CLOSE_WRITE), as `echo x > file` does.
private func writeInPlace(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path)")
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

@Suite("Script watcher (inotify)", .serialized)
struct ScriptWatcherTests {
    @Test("an in-place write is reported")
    func write() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.lua", b = dir + "/b.lua"
        writeInPlace(a, "v1")
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a, b], quietPeriod: .milliseconds(50)) { rec.record($0) }
        defer { w.stop() }
        #expect(w.paths == [a, b])
        writeInPlace(a, "v2")
        #expect(rec.wait(for: 1) == [[a]])
    }

    @Test("rename over the file (mv, editors' save) is reported; the temp file is not")
    func renameOver() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.lua"
        writeInPlace(a, "v1")
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a], quietPeriod: .milliseconds(50)) { rec.record($0) }
        defer { w.stop() }
        let tmp = dir + "/.a.lua.swp"
        writeInPlace(tmp, "v2")
        #expect(rename(tmp, a) == 0)
        #expect(rec.wait(for: 1) == [[a]])
        // The new inode is still watched (the directory is).
        usleep(150_000)
        writeInPlace(tmp, "v3")
        #expect(rename(tmp, a) == 0)
        #expect(rec.wait(for: 2) == [[a], [a]])
    }

    @Test("a burst of 10 writes gives one coalesced callback")
    func burst() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.lua", b = dir + "/b.lua"
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a, b], quietPeriod: .milliseconds(100)) { rec.record($0) }
        defer { w.stop() }
        for i in 0..<10 {
            writeInPlace(i % 3 == 0 ? b : a, "v\(i)")
            usleep(10_000)
        }
        #expect(rec.wait(for: 1) == [[a, b]])
        usleep(300_000)
        #expect(rec.snapshot.count == 1)
    }

    @Test("unrelated files in the same directory are ignored")
    func unrelated() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.lua"
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a], quietPeriod: .milliseconds(30)) { rec.record($0) }
        defer { w.stop() }
        writeInPlace(dir + "/other.lua", "x")
        usleep(200_000)
        #expect(rec.snapshot.isEmpty)
        writeInPlace(a, "x")
        #expect(rec.wait(for: 1) == [[a]])
    }

    @Test("the watched set can be replaced")
    func replacePaths() throws {
        let dir1 = try makeDirectory(), dir2 = try makeDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: dir1)
            try? FileManager.default.removeItem(atPath: dir2)
        }
        let a = dir1 + "/a.lua", m = dir2 + "/mod.lua"
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a], quietPeriod: .milliseconds(30)) { rec.record($0) }
        defer { w.stop() }
        try w.setPaths([m])
        #expect(w.paths == [m])
        writeInPlace(a, "x")
        usleep(200_000)
        #expect(rec.snapshot.isEmpty)
        writeInPlace(m, "x")
        #expect(rec.wait(for: 1) == [[m]])
    }

    @Test("a relative path is reported as given")
    func relativePath() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let saved = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(saved) }
        let rec = Recorder()
        let w = try ScriptWatcher(paths: ["rel.lua"], quietPeriod: .milliseconds(30)) { rec.record($0) }
        defer { w.stop() }
        writeInPlace(dir + "/rel.lua", "x")
        #expect(rec.wait(for: 1) == [["rel.lua"]])
    }

    @Test("no callbacks after stop")
    func stop() throws {
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/a.lua"
        let rec = Recorder()
        let w = try ScriptWatcher(paths: [a], quietPeriod: .milliseconds(30)) { rec.record($0) }
        w.stop()
        w.stop()
        writeInPlace(a, "x")
        usleep(200_000)
        #expect(rec.snapshot.isEmpty)
    }

    @Test("a missing directory is an error")
    func missingDirectory() {
        #expect(throws: ScriptWatcherError(path: "/nonexistent-starling-dir", errno: ENOENT)) {
            _ = try ScriptWatcher(paths: ["/nonexistent-starling-dir/a.lua"]) { _ in }
        }
    }
}
