public import KSRModules
import GRDB

/// `auth_db`'s credentials on the `subscriber` table, and its administration (`starling subscriber`).
public final class SQLiteSubscribers: SubscriberLookup {
    let db: StarlingDatabase

    public init(_ db: StarlingDatabase) { self.db = db }

    public func subscriber(table: String, username: String, domain: String, useDomain: Bool) -> SubscriberRow? {
        guard StarlingDatabase.validTableName(table) else { return nil }
        let t = StarlingDatabase.quoted(table)
        return try? db.pool.read { d -> SubscriberRow? in
            let row: Row?
            if useDomain {
                row = try Row.fetchOne(d, sql: "SELECT * FROM \(t) WHERE username = ? AND domain = ?",
                                       arguments: [username, domain])
            } else {
                row = try Row.fetchOne(d, sql: "SELECT * FROM \(t) WHERE username = ?", arguments: [username])
            }
            return row.map(Self.subscriberRow)
        }
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
