public import KSRModules
import GRDB
import GRDBSQLite
import Synchronization

/// `auth_db`'s credentials on the `subscriber` table, and its administration (`starling subscriber`).
public final class SQLiteSubscribers: SubscriberLookup {
    let db: StarlingDatabase
    /// Read-only connections for `subscriber(...)`, borrowed one per lookup (about one per worker thread).
    private let readers = Mutex<[SubscriberReader]>([])

    public init(_ db: StarlingDatabase) { self.db = db }

    /// One lookup per digest check: on a borrowed raw connection with a prepared statement (GRDB's
    /// `DatabasePool.read` costs a dispatch-queue hop and a statement compile per call). Each lookup
    /// is its own read transaction, so rows `starling subscriber add` writes from another process
    /// are seen by the next lookup.
    public func subscriber(table: String, username: String, domain: String, useDomain: Bool) -> SubscriberRow? {
        guard StarlingDatabase.validTableName(table) else { return nil }
        let reader = readers.withLock { $0.popLast() } ?? SubscriberReader(path: db.path)
        guard let reader else {
            return (try? db.pool.read { try Self.fetch($0, table: table, username: username, domain: domain,
                                                        useDomain: useDomain) }) ?? nil
        }
        let row = reader.subscriber(table: table, username: username, domain: domain, useDomain: useDomain)
        readers.withLock { $0.append(reader) }
        return row
    }

    /// The GRDB lookup, when a raw connection cannot be opened.
    static func fetch(_ d: Database, table: String, username: String, domain: String, useDomain: Bool) throws
        -> SubscriberRow?
    {
        let t = StarlingDatabase.quoted(table)
        let row: Row?
        if useDomain {
            row = try Row.fetchOne(d, sql: "SELECT * FROM \(t) WHERE username = ? AND domain = ?",
                                   arguments: [username, domain])
        } else {
            row = try Row.fetchOne(d, sql: "SELECT * FROM \(t) WHERE username = ?", arguments: [username])
        }
        return row.map(Self.subscriberRow)
    }

    static func subscriberRow(_ r: Row) -> SubscriberRow {
        var extra: [String: String] = [:]
        for (name, value) in r where !["username", "domain", "password", "ha1", "ha1b"].contains(name) {
            if let s = String.fromDatabaseValue(value) { extra[name] = s }
            else if let i = Int64.fromDatabaseValue(value) { extra[name] = String(i) }
        }
        return SubscriberRow(username: r["username"] ?? "", domain: r["domain"] ?? "", password: r["password"] ?? "",
                             ha1: r["ha1"] ?? "", ha1b: r["ha1b"] ?? "", extra: extra)
    }

    /// Adds or replaces a subscriber: the password, ha1 = MD5(user:domain:password) and
    /// ha1b = MD5(user@domain:domain:password), as kamctl's `add` stores them.
    public func add(username: String, domain: String, password: String) throws(StoreError) {
        let ha1 = DigestHash.md5.hex("\(username):\(domain):\(password)")
        let ha1b = DigestHash.md5.hex("\(username)@\(domain):\(domain):\(password)")
        do {
            try db.pool.write { d in
                try d.execute(sql: """
                    INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(username, domain) DO UPDATE SET password = excluded.password, ha1 = excluded.ha1,
                        ha1b = excluded.ha1b
                    """, arguments: [username, domain, password, ha1, ha1b])
            }
        } catch { throw StoreError("cannot add subscriber: \(error)") }
    }

    /// Removes a subscriber. Returns false when there was none.
    @discardableResult
    public func remove(username: String, domain: String) throws(StoreError) -> Bool {
        do {
            return try db.pool.write { d in
                try d.execute(sql: "DELETE FROM subscriber WHERE username = ? AND domain = ?", arguments: [username, domain])
                return d.changesCount > 0
            }
        } catch { throw StoreError("cannot remove subscriber: \(error)") }
    }

    /// Every subscriber, ordered by domain then username.
    public func list() throws(StoreError) -> [SubscriberRow] {
        do {
            return try db.pool.read { d in
                try Row.fetchAll(d, sql: "SELECT * FROM subscriber ORDER BY domain, username").map(Self.subscriberRow)
            }
        } catch { throw StoreError("cannot list subscribers: \(error)") }
    }
}

/// A read-only SQLite connection with its prepared subscriber statements; used by one thread at a time
/// (borrowed from `SQLiteSubscribers.readers`).
final class SubscriberReader: @unchecked Sendable {
    private let connection: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    init?(path: String) {
        var c: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX  // only SELECTs; no create
        guard sqlite3_open_v2(path, &c, flags, nil) == SQLITE_OK, let c else {
            sqlite3_close_v2(c)
            return nil
        }
        sqlite3_busy_timeout(c, 5000)
        connection = c
    }

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close_v2(connection)
    }

    private func statement(_ sql: String) -> OpaquePointer? {
        if let s = statements[sql] { return s }
        var s: OpaquePointer?
        guard sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil) == SQLITE_OK,
              let s
        else { return nil }
        statements[sql] = s
        return s
    }

    func subscriber(table: String, username: String, domain: String, useDomain: Bool) -> SubscriberRow? {
        let t = StarlingDatabase.quoted(table)
        let sql = useDomain ? "SELECT * FROM \(t) WHERE username = ? AND domain = ?" : "SELECT * FROM \(t) WHERE username = ?"
        guard let s = statement(sql) else { return nil }
        // Resetting ends the statement's read transaction: the next lookup reads the current file.
        defer { sqlite3_reset(s); sqlite3_clear_bindings(s) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        guard sqlite3_bind_text(s, 1, username, -1, transient) == SQLITE_OK else { return nil }
        if useDomain { guard sqlite3_bind_text(s, 2, domain, -1, transient) == SQLITE_OK else { return nil } }
        guard sqlite3_step(s) == SQLITE_ROW else { return nil }
        var row = SubscriberRow(username: "", domain: "", password: "", ha1: "", ha1b: "", extra: [:])
        for i in 0..<sqlite3_column_count(s) {
            let name = String(cString: sqlite3_column_name(s, i))
            let value: String?
            switch sqlite3_column_type(s, i) {
            case SQLITE_INTEGER: value = String(sqlite3_column_int64(s, i))
            case SQLITE_TEXT: value = sqlite3_column_text(s, i).map { String(cString: $0) }
            default: value = nil
            }
            switch name {
            case "username": row.username = value ?? ""
            case "domain": row.domain = value ?? ""
            case "password": row.password = value ?? ""
            case "ha1": row.ha1 = value ?? ""
            case "ha1b": row.ha1b = value ?? ""
            default: if let value { row.extra[name] = value }
            }
        }
        return row
    }
}
