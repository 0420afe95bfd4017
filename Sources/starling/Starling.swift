import ArgumentParser
import StarlingServer

struct Starling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling",
        abstract: "A SIP router that runs Kamailio KEMI Lua routing scripts.",
        discussion: """
            With no subcommand, runs routes/default.lua on udp:127.0.0.1:5060.
            """,
        version: StarlingVersion.string,
        subcommands: [RunCommand.self, CheckCommand.self, ParseCommand.self, ApiCommand.self, TestCommand.self, CtlCommand.self, ConfigCommand.self, SubscriberCommand.self, VersionCommand.self],
        defaultSubcommand: RunCommand.self)
}

enum StarlingVersion {
    static let string = Server.version
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print Starling's version.")
    func run() { print("starling \(StarlingVersion.string)") }
}
