import Foundation
import Logging
import Testing
import SIPCore
import StarlingServer
import StarlingTesting

/// `log_format = "json"` lines and the Call-ID of the message the logging thread is routing.
@Suite(.serialized) struct LogSupportTests {
    /// Logs through a JSONLogHandler writing into a pipe; returns the lines written.
    static func capture(_ body: (Logger) -> Void) throws -> [String] {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        var logger = Logger(label: "starling") { label in
            JSONLogHandler(label: label, metadataProvider: CurrentRoute.metadataProvider, fileDescriptor: fds[1])
        }
        logger.logLevel = .debug
        body(logger)
        close(fds[1])
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func jsonLinesCarryTheCallIDWhileRouting() throws {
        let h = try ScriptHarness(script: "function ksr_request_route() end")
        let m = try SIPMessage.parse(Array("OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: call-\"42\"@host\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".utf8))
        let lines = try Self.capture { logger in
            logger.info("before")
            CurrentRoute.set(h.context)
            logger.info("no message yet")
            h.prepare(m)
            logger.warning("routing\nnow", metadata: ["worker": "3"])
            CurrentRoute.set(nil)
            logger.debug("after")
        }
        #expect(lines.count == 4)
        for line in lines {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(obj["label"] as? String == "starling")
            #expect((obj["ts"] as? String)?.hasSuffix("Z") == true)
            #expect(obj["level"] is String && obj["msg"] is String)
        }
        #expect(lines[0].hasPrefix(#"{"ts":""#))
        #expect(!lines[0].contains("call_id") && !lines[1].contains("call_id") && !lines[3].contains("call_id"))
        let routed = try #require(try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any])
        #expect(routed["call_id"] as? String == "call-\"42\"@host")
        #expect(routed["msg"] as? String == "routing\nnow")
        #expect(routed["level"] as? String == "warning")
        #expect(routed["worker"] as? String == "3")
        #expect(CurrentRoute.callID == nil)
    }
}
