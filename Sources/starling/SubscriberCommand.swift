import ArgumentParser
import StarlingServer
import StarlingStore
import KSRModules

/// `starling subscriber add|rm|list`: the `subscriber` table of the embedded database (kamctl's
/// `add`/`rm`/`show`).
struct SubscriberCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscriber",
        abstract: "Manage the subscriber table (auth_db credentials) of the embedded database.",
        discussion: """
            The database is --db PATH, else the db_url of [modparam.auth_db] (or [modparam.usrloc]) in \
            --config FILE. ha1 and ha1b are stored as kamctl does: MD5(user:domain:password) and \
            MD5(user@domain:domain:password).

            Examples:
              starling subscriber add alice@example.com secret --db /var/lib/starling/starling.db
              starling subscriber list --config starling.toml
              starling subscriber rm alice@example.com --config starling.toml
            """,
        subcommands: [Add.self, Remove.self, List.self])

    struct DatabaseOptions: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("The database file (or sqlite:///path).", valueName: "path"))
        var db: String?

        @Option(name: .long, help: ArgumentHelp("A TOML configuration whose db_url names the database.", valueName: "file"))
        var config: String?

        func open() throws -> SQLiteSubscribers {
            var url = db
            if url == nil, let config {
                do {
                    let cfg = try StarlingConfig.load(path: config, overrides: ConfigOverrides())
                    url = cfg.modparam("auth_db", "db_url").last?.text ?? cfg.modparam("usrloc", "db_url").last?.text
                } catch {
                    FileError.print("starling subscriber: configuration error: \(error)")
                    throw ExitCode(2)
                }
                if url == nil {
                    FileError.print("starling subscriber: \(config) sets no db_url in [modparam.auth_db] or [modparam.usrloc]")
                    throw ExitCode(2)
                }
            }
            guard let url else {
                FileError.print("starling subscriber: give --db PATH or --config FILE")
                throw ExitCode(2)
            }
            guard let path = StarlingDatabase.path(fromURL: url) else {
                FileError.print("starling subscriber: '\(url)' is not an SQLite database (sqlite:///path)")
                throw ExitCode(2)
            }
            do {
                return SQLiteSubscribers(try StarlingDatabase(path: path))
            } catch {
                FileError.print("starling subscriber: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// `user@domain` split in two.
    static func account(_ s: String) throws -> (String, String) {
        guard let at = s.lastIndex(of: "@"), at != s.startIndex, s.index(after: at) != s.endIndex else {
            FileError.print("starling subscriber: '\(s)' is not USER@DOMAIN")
            throw ExitCode(2)
        }
        return (String(s[..<at]), String(s[s.index(after: at)...]))
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a subscriber (or change its password).")
        @Argument(help: "USER@DOMAIN") var account: String
        @Argument(help: "The password.") var password: String
        @OptionGroup var options: DatabaseOptions

        func run() throws {
            let (user, domain) = try SubscriberCommand.account(account)
            let subs = try options.open()
            do { try subs.add(username: user, domain: domain, password: password) } catch {
                FileError.print("starling subscriber: \(error)")
                throw ExitCode(1)
            }
            print("added \(user)@\(domain)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a subscriber.")
        @Argument(help: "USER@DOMAIN") var account: String
        @OptionGroup var options: DatabaseOptions

        func run() throws {
            let (user, domain) = try SubscriberCommand.account(account)
            let subs = try options.open()
            let removed: Bool
            do { removed = try subs.remove(username: user, domain: domain) } catch {
                FileError.print("starling subscriber: \(error)")
                throw ExitCode(1)
            }
            guard removed else {
                FileError.print("starling subscriber: no subscriber \(user)@\(domain)")
                throw ExitCode(1)
            }
            print("removed \(user)@\(domain)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the subscribers (user@domain ha1).")
        @OptionGroup var options: DatabaseOptions

        func run() throws {
            let subs = try options.open()
            do {
                for r in try subs.list() { print("\(r.username)@\(r.domain) \(r.ha1)") }
            } catch {
                FileError.print("starling subscriber: \(error)")
                throw ExitCode(1)
            }
        }
    }
}
