public import KSRModules
import GRDB

/// The dispatcher module's `dispatcher` table (Kamailio 5.6 schema: id, setid, destination, flags,
/// priority, attrs, description), read whole at start and on each reload.
public final class SQLiteDispatcherTable: DispatcherTableSource {
    let db: StarlingDatabase

    public init(_ db: StarlingDatabase) { self.db = db }

    public var name: String { db.path }

    public func rows(_ c: DispatcherTableColumns) throws -> [DispatcherTableRow] {
        for n in [c.table, c.setid, c.destination, c.flags, c.priority, c.attrs] where !StarlingDatabase.validTableName(n) {
            throw StoreError("invalid table or column name '\(n)'")
        }
        let q = StarlingDatabase.quoted
        let sql = "SELECT id, \(q(c.setid)), \(q(c.destination)), \(q(c.flags)), \(q(c.priority)), \(q(c.attrs)) FROM \(q(c.table)) ORDER BY id"
        func text(_ v: DatabaseValue) -> String? {
            switch v.storage {
            case .null: return nil
            case .int64(let i): return String(i)
            case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
            case .string(let s): return s
            case .blob(let b): return String(decoding: b, as: UTF8.self)
            }
        }
        return try db.pool.read { d in
            try Row.fetchAll(d, sql: sql).map { r in
                DispatcherTableRow(id: Int(text(r[0]) ?? "") ?? 0, setid: text(r[1]), destination: text(r[2]), flags: text(r[3]),
                                   priority: text(r[4]), attrs: text(r[5]))
            }
        }
    }
}

extension StarlingDatabase {
    /// Runs SQL statements (administration, tests).
    public func execute(_ sql: String) throws(StoreError) {
        do { try pool.write { try $0.execute(sql: sql) } } catch { throw StoreError("\(path): \(error)") }
    }
}
