import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// An error of the embedded database, with a message fit for the log or the CLI.
public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Starling's embedded database: one SQLite file per server (WAL mode, so workers read while the
/// housekeeping thread writes), with Kamailio's table and column names (`location`, `subscriber`,
/// `version`) so kamctl-style tools and Kamailio's db_sqlite can read the same file.
public final class StarlingDatabase: Sendable {
    public let path: String
    let pool: DatabasePool

    /// The file path of a `db_url`: Kamailio's `sqlite:///path/to/file.db` form, or a plain path.
    /// Nil for other schemes (mysql://...), which Starling does not speak.
    public static func path(fromURL url: String) -> String? {
        let u = url.trimmingCharacters(in: " \t")
        if u.hasPrefix("sqlite://") {
            let rest = String(u.dropFirst("sqlite://".count))
            return rest.isEmpty ? nil : rest
        }
        if u.contains("://") { return nil }
        return u.isEmpty ? nil : u
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    public init(path: String) throws(StoreError) {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.label = "starling"
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
        } catch {
            throw StoreError("cannot open database \(path): \(error)")
        }
    }

    /// Kamailio's table versions (kamailio-sqlite schema of 5.6).
    static let tableVersions: [(String, Int)] = [("location", 9), ("subscriber", 7)]

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: version, location, subscriber") { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS version (
                    id INTEGER PRIMARY KEY NOT NULL,
                    table_name VARCHAR(32) NOT NULL,
                    table_version INTEGER DEFAULT 0 NOT NULL,
                    CONSTRAINT version_table_name_idx UNIQUE (table_name)
                );
                CREATE TABLE IF NOT EXISTS subscriber (
                    id INTEGER PRIMARY KEY NOT NULL,
                    username VARCHAR(64) DEFAULT '' NOT NULL,
                    domain VARCHAR(64) DEFAULT '' NOT NULL,
                    password VARCHAR(64) DEFAULT '' NOT NULL,
                    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
                    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
                    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
                );
                CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username);
                """)
            try createLocationTable(db, "location")
            for (t, v) in tableVersions {
                try db.execute(sql: "INSERT OR REPLACE INTO version (table_name, table_version) VALUES (?, ?)",
                               arguments: [t, v])
            }
        }
        m.registerMigration("v2: uacreg") { db in
            // Kamailio 5.6's uacreg (version 4), for KSR.uac's remote registrations.
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS uacreg (
                    id INTEGER PRIMARY KEY NOT NULL,
                    l_uuid VARCHAR(64) DEFAULT '' NOT NULL,
                    l_username VARCHAR(64) DEFAULT '' NOT NULL,
                    l_domain VARCHAR(64) DEFAULT '' NOT NULL,
                    r_username VARCHAR(64) DEFAULT '' NOT NULL,
                    r_domain VARCHAR(64) DEFAULT '' NOT NULL,
                    realm VARCHAR(64) DEFAULT '' NOT NULL,
                    auth_username VARCHAR(64) DEFAULT '' NOT NULL,
                    auth_password VARCHAR(64) DEFAULT '' NOT NULL,
                    auth_ha1 VARCHAR(128) DEFAULT '' NOT NULL,
                    auth_proxy VARCHAR(255) DEFAULT '' NOT NULL,
                    expires INTEGER DEFAULT 0 NOT NULL,
                    flags INTEGER DEFAULT 0 NOT NULL,
                    reg_delay INTEGER DEFAULT 0 NOT NULL,
                    contact_addr VARCHAR(255) DEFAULT '' NOT NULL,
                    socket VARCHAR(128) DEFAULT '' NOT NULL,
                    CONSTRAINT uacreg_l_uuid_idx UNIQUE (l_uuid)
                );
                INSERT OR REPLACE INTO version (table_name, table_version) VALUES ('uacreg', 4);
                """)
        }
        return m
    }

    /// A usrloc table (Kamailio's `location` schema) under another name, for scripts that save to
    /// several usrloc domains.
    static func createLocationTable(_ db: Database, _ name: String) throws {
        let q = quoted(name)
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS \(q) (
                id INTEGER PRIMARY KEY NOT NULL,
                ruid VARCHAR(64) DEFAULT '' NOT NULL,
                username VARCHAR(64) DEFAULT '' NOT NULL,
                domain VARCHAR(64) DEFAULT NULL,
                contact VARCHAR(512) DEFAULT '' NOT NULL,
                received VARCHAR(128) DEFAULT NULL,
                path VARCHAR(512) DEFAULT NULL,
                expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
                q REAL DEFAULT 1.0 NOT NULL,
                callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
                cseq INTEGER DEFAULT 1 NOT NULL,
                last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
                flags INTEGER DEFAULT 0 NOT NULL,
                cflags INTEGER DEFAULT 0 NOT NULL,
                user_agent VARCHAR(255) DEFAULT '' NOT NULL,
                socket VARCHAR(64) DEFAULT NULL,
                methods INTEGER DEFAULT NULL,
                instance VARCHAR(255) DEFAULT NULL,
                reg_id INTEGER DEFAULT 0 NOT NULL,
                server_id INTEGER DEFAULT 0 NOT NULL,
                connection_id INTEGER DEFAULT 0 NOT NULL,
                keepalive INTEGER DEFAULT 0 NOT NULL,
                partition INTEGER DEFAULT 0 NOT NULL,
                CONSTRAINT \(quoted(name + "_ruid_idx")) UNIQUE (ruid)
            );
            CREATE INDEX IF NOT EXISTS \(quoted(name + "_account_contact_idx")) ON \(q) (username, domain, contact);
            CREATE INDEX IF NOT EXISTS \(quoted(name + "_expires_idx")) ON \(q) (expires);
            CREATE INDEX IF NOT EXISTS \(quoted(name + "_connection_idx")) ON \(q) (server_id, connection_id);
            """)
    }

    /// A table name as an SQL identifier (names are checked to be plain words first).
    static func quoted(_ name: String) -> String { "\"" + name.replacing("\"", with: "\"\"") + "\"" }

    static func validTableName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F
        }
    }

    /// The schema version rows (`version` table).
    public func tableVersions() throws(StoreError) -> [String: Int] {
        do {
            return try pool.read { db in
                var out: [String: Int] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT table_name, table_version FROM version") {
                    out[row["table_name"]] = row["table_version"]
                }
                return out
            }
        } catch { throw StoreError("\(error)") }
    }

    // MARK: Kamailio's DATETIME values

    /// Seconds since 1970 as Kamailio's db_sqlite stores a DATETIME: a Julian day number (REAL).
    static func julianDay(_ t: Int) -> Double { Double(t) / 86400 + 2_440_587.5 }

    /// Seconds since 1970 from a stored DATETIME: a Julian day (Kamailio's db_sqlite), a
    /// `YYYY-MM-DD HH:MM:SS` text (UTC) or a plain number of seconds.
    static func seconds(_ value: DatabaseValue) -> Int? {
        switch value.storage {
        case .double(let d):
            return d > 1_000_000 && d < 10_000_000 ? Int(((d - 2_440_587.5) * 86400).rounded()) : Int(d)
        case .int64(let i):
            return i > 1_000_000 && i < 10_000_000 ? Int((Double(i) - 2_440_587.5) * 86400) : Int(i)
        case .string(let s):
            return seconds(s)
        default:
            return nil
        }
    }

    static func seconds(_ text: String) -> Int? {
        if let d = Double(text) { return seconds(DatabaseValue(value: d)!) }
        let parts = text.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" || $0 == "T" }).compactMap { Int32($0) }
        guard parts.count >= 6 else { return nil }
        var tmv = tm()
        tmv.tm_year = parts[0] - 1900
        tmv.tm_mon = parts[1] - 1
        tmv.tm_mday = parts[2]
        tmv.tm_hour = parts[3]
        tmv.tm_min = parts[4]
        tmv.tm_sec = parts[5]
        return Int(timegm(&tmv))
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
