public import KSRModules
#if canImport(Glibc)
import Glibc
#endif
import GRDB
import Synchronization

/// acc's records in the embedded database: Kamailio's `acc` and `missed_calls` tables (5.6 schema),
/// the CDR table (`cdrs_table`), and the `db_extra` / `cdr_extra` columns, added when missing. Workers
/// queue records; the housekeeping thread writes them in one transaction about once a second.
public final class SQLiteAccounting: AccountingSink {
    let db: StarlingDatabase
    private let queue = Mutex<[AccRecord]>([])
    /// Columns known per table (created or checked once).
    private let known = Mutex<[String: Set<String>]>([:])
    private let writing = Mutex(())

    public init(_ db: StarlingDatabase) { self.db = db }

    public func write(_ record: AccRecord) { queue.withLock { $0.append(record) } }

    public func flush() {
        writing.withLock { _ in
            let batch = queue.withLock { q -> [AccRecord] in
                defer { q.removeAll() }
                return q
            }
            guard !batch.isEmpty else { return }
            do {
                try db.pool.write { d in
                    for r in batch { try insert(d, r) }
                }
            } catch {
                // Kept for the next try only once: a broken table must not grow the queue forever.
                FileHandleLog.error("acc: cannot write \(batch.count) records to \(db.path): \(error)")
            }
        }
    }

    func ensure(_ d: Database, _ r: AccRecord) throws {
        guard StarlingDatabase.validTableName(r.table) else { throw StoreError("invalid acc table name '\(r.table)'") }
        var cols = known.withLock { $0[r.table] }
        if cols == nil {
            if try !d.tableExists(r.table) {
                try d.execute(sql: Self.createSQL(r))
            }
            cols = Set(try d.columns(in: r.table).map { $0.name.lowercased() })
        }
        guard var have = cols else { return }
        for (name, value) in r.columns where !have.contains(name.lowercased()) {
            guard StarlingDatabase.validTableName(name) else { throw StoreError("invalid acc column name '\(name)'") }
            let type: String
            switch value {
            case .int: type = "INTEGER"
            case .double: type = "REAL"
            case .time: type = "TIMESTAMP"
            default: type = "VARCHAR(255)"
            }
            try d.execute(sql: "ALTER TABLE \(StarlingDatabase.quoted(r.table)) ADD COLUMN \(StarlingDatabase.quoted(name)) \(type)")
            have.insert(name.lowercased())
        }
        let final = have
        known.withLock { $0[r.table] = final }
    }

    /// Kamailio's schema for acc / missed_calls (db_sqlite acc-create.sql); a CDR table like acc_cdrs.
    static func createSQL(_ r: AccRecord) -> String {
        let q = StarlingDatabase.quoted(r.table)
        if r["method"] != nil {
            return """
                CREATE TABLE \(q) (
                    id INTEGER PRIMARY KEY NOT NULL,
                    method VARCHAR(16) DEFAULT '' NOT NULL,
                    from_tag VARCHAR(128) DEFAULT '' NOT NULL,
                    to_tag VARCHAR(128) DEFAULT '' NOT NULL,
                    callid VARCHAR(255) DEFAULT '' NOT NULL,
                    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
                    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
                    time TIMESTAMP WITHOUT TIME ZONE NOT NULL
                );
                CREATE INDEX \(StarlingDatabase.quoted(r.table + "_callid_idx")) ON \(q) (callid);
                """
        }
        return """
            CREATE TABLE \(q) (
                id INTEGER PRIMARY KEY NOT NULL,
                start_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
                end_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
                duration REAL DEFAULT 0 NOT NULL
            );
            """
    }

    func insert(_ d: Database, _ r: AccRecord) throws {
        try ensure(d, r)
        let names = r.columns.map { StarlingDatabase.quoted($0.0) }.joined(separator: ", ")
        let marks = Array(repeating: "?", count: r.columns.count).joined(separator: ", ")
        let values: [(any DatabaseValueConvertible)?] = r.columns.map { c -> (any DatabaseValueConvertible)? in
            switch c.1 {
            case .text(let s): return s
            case .int(let i): return i
            case .double(let x): return x
            case .time(let t): return t / 86400 + 2_440_587.5  // a Julian day, as Kamailio's db_sqlite
            case .null: return nil
            }
        }
        try d.execute(sql: "INSERT INTO \(StarlingDatabase.quoted(r.table)) (\(names)) VALUES (\(marks))",
                      arguments: StatementArguments(values))
    }
}

/// A last-resort error line on stderr (the store has no logger).
enum FileHandleLog {
    static func error(_ s: String) {
        let line = Array((s + "\n").utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
