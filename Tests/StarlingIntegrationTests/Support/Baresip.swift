import Foundation

/// baresip (Debian package baresip-core) as a real SIP phone: registers with digest auth through
/// an outbound proxy on 127.0.0.1, dials a URI at start (`-e /dial ...`), answers incoming calls
/// by itself, and quits (hanging up) after a given time. No sound device: the audio source is a
/// silent 8 kHz WAV file (module aufile) and the player writes to a file.
enum Baresip {
    static let modulePath = "/usr/lib/baresip/modules"

    static func executable() throws -> String {
        try Requirements.tool(ProcessInfo.processInfo.environment["BARESIP_BIN"] ?? "baresip", package: "baresip-core")
    }

    /// Writes `directory`/config, accounts and silence.wav for `user`@`domain` registering through
    /// 127.0.0.1:`proxyPort` (`register` false: no registration, it only answers calls to `user`),
    /// listening on 127.0.0.1:`sipPort`.
    static func configure(directory: URL, user: String, password: String, domain: String, proxyPort: Int,
                          sipPort: Int, rtpPorts: ClosedRange<Int>, register: Bool = true) throws {
        for module in ["g711", "aufile", "account", "menu"] {
            guard FileManager.default.fileExists(atPath: "\(modulePath)/\(module).so") else {
                throw HarnessError("baresip module \(modulePath)/\(module).so not found (install the Debian package baresip-core)")
            }
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try silence().write(to: directory.appendingPathComponent("silence.wav"))
        try """
        poll_method\t\tepoll
        net_interface\t\t127.0.0.1
        sip_listen\t\t127.0.0.1:\(sipPort)
        call_local_timeout\t120
        call_max_calls\t\t4
        audio_player\t\taufile,\(directory.appendingPathComponent("received.wav").path)
        audio_source\t\taufile,\(directory.appendingPathComponent("silence.wav").path)
        audio_alert\t\taufile,\(directory.appendingPathComponent("alert.wav").path)
        rtp_ports\t\t\(rtpPorts.lowerBound)-\(rtpPorts.upperBound)
        module_path\t\t\(modulePath)
        module\t\t\tg711.so
        module\t\t\taufile.so
        module_app\t\taccount.so
        module_app\t\tmenu.so

        """.write(to: directory.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        try "<sip:\(user)@\(domain)>;auth_pass=\(password);outbound=\"sip:127.0.0.1:\(proxyPort)\";regint=\(register ? 600 : 0);answermode=auto\n"
            .write(to: directory.appendingPathComponent("accounts"), atomically: true, encoding: .utf8)
    }

    /// Starts baresip with the config in `directory`, running `commands` at start and quitting
    /// after `seconds`; its output goes to `directory`/baresip.log.
    static func start(directory: URL, commands: [String], seconds: Int) throws -> ServerProcess {
        try ServerProcess(name: "baresip", executable: try executable(),
                          arguments: ["-f", directory.path, "-t", String(seconds)] + commands.flatMap { ["-e", $0] },
                          logFile: directory.appendingPathComponent("baresip.log"), workingDirectory: directory)
    }

    /// Waits until `process`'s log contains `text`; false after `timeout` or when it exits first.
    static func waitForLog(_ process: ServerProcess, containing text: String, timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if process.log.contains(text) { return true }
            if !process.isRunning { return process.log.contains(text) }
            usleep(50_000)
        }
        return process.log.contains(text)
    }

    /// 10 s of 8 kHz mono 16-bit silence as a WAV file (PCMU's rate: ausine only does 48 kHz).
    static func silence() -> Data {
        let samples = 8000 * 10
        let dataSize = samples * 2
        var data = Data()
        func append(_ text: String) { data.append(contentsOf: Array(text.utf8)) }
        func append32(_ value: Int) { withUnsafeBytes(of: UInt32(value).littleEndian) { data.append(contentsOf: $0) } }
        func append16(_ value: Int) { withUnsafeBytes(of: UInt16(value).littleEndian) { data.append(contentsOf: $0) } }
        append("RIFF"); append32(36 + dataSize); append("WAVE")
        append("fmt "); append32(16); append16(1); append16(1); append32(8000); append32(16000); append16(2); append16(16)
        append("data"); append32(dataSize)
        data.append(Data(count: dataSize))
        return data
    }
}
