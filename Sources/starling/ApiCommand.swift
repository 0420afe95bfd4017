import ArgumentParser
import KSRModules

struct ApiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api", abstract: "Print the KSR API reference generated from the export tables.")

    @Flag(name: .long, help: "Markdown output (the text of docs/KSR.md).")
    var markdown = false

    func run() {
        print(KSRModules.markdownReference(), terminator: "")
    }
}
