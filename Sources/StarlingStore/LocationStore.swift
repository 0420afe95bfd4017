public import KSRModules
import GRDB

/// usrloc's persistence (`db_mode` 1 and 2) on the `location` table of the embedded database.
public final class SQLiteLocations: LocationPersistence {
    let db: StarlingDatabase
    /// Whether AORs are `user@domain` (usrloc `use_domain`): decides how rows map back to AORs.
    let useDomain: Bool

    public init(_ db: StarlingDatabase, useDomain: Bool) {
        self.db = db
        self.useDomain = useDomain
    }

    func ensureTable(_ table: String) throws {
        guard StarlingDatabase.validTableName(table) else { throw StoreError("invalid usrloc table name '\(table)'") }
        guard table != "location" else { return }
        try db.pool.write { try StarlingDatabase.createLocationTable($0, table) }
    }

    public func loadContacts(table: String) throws -> [LocationContact] {
        try ensureTable(table)
        return try db.pool.read { d in
            try Row.fetchAll(d, sql: "SELECT * FROM \(StarlingDatabase.quoted(table))").map(contact)
        }
    }

    func contact(_ r: Row) -> LocationContact {
        let username: String = r["username"] ?? ""
        let domain: String? = r["domain"]
        let aor = useDomain && !(domain ?? "").isEmpty ? "\(username)@\(domain!)" : username
        let qValue: Double = r["q"] ?? -1
        let expires: DatabaseValue = r["expires"]
        let modified: DatabaseValue = r["last_modified"]
        let methods: Int64? = r["methods"]
        return LocationContact(
            ruid: r["ruid"] ?? "", aor: aor, username: username, domain: domain, contact: r["contact"] ?? "",
            received: nonEmpty(r["received"]), path: nonEmpty(r["path"]),
            expires: StarlingDatabase.seconds(expires) ?? 0,
            q: qValue < 0 ? -1 : Int((qValue * 1000).rounded()),
            callid: r["callid"] ?? "", cseq: r["cseq"] ?? 0,
            lastModified: StarlingDatabase.seconds(modified) ?? 0, flags: r["flags"] ?? 0, cflags: r["cflags"] ?? 0,
            userAgent: r["user_agent"] ?? "", socket: nonEmpty(r["socket"]),
            methods: methods.map { Int(Int32(truncatingIfNeeded: $0)) } ?? -1,
            instance: nonEmpty(r["instance"]), regId: r["reg_id"] ?? 0, serverId: r["server_id"] ?? 0,
            connectionId: r["connection_id"] ?? -1, keepalive: r["keepalive"] ?? 0, partition: r["partition"] ?? 0)
    }

    private func nonEmpty(_ s: String?) -> String? { (s ?? "").isEmpty ? nil : s }

    public func saveContacts(table: String, upserts: [LocationContact], deletes: [String]) throws {
        try ensureTable(table)
        let t = StarlingDatabase.quoted(table)
        try db.pool.write { d in
            if !deletes.isEmpty {
                let del = try d.makeStatement(sql: "DELETE FROM \(t) WHERE ruid = ?")
                for r in deletes { try del.execute(arguments: [r]) }
            }
            guard !upserts.isEmpty else { return }
            let ins = try d.makeStatement(sql: """
                INSERT INTO \(t) (ruid, username, domain, contact, received, path, expires, q, callid, cseq,
                    last_modified, flags, cflags, user_agent, socket, methods, instance, reg_id, server_id,
                    connection_id, keepalive, partition)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(ruid) DO UPDATE SET username = excluded.username, domain = excluded.domain,
                    contact = excluded.contact, received = excluded.received, path = excluded.path,
                    expires = excluded.expires, q = excluded.q, callid = excluded.callid, cseq = excluded.cseq,
                    last_modified = excluded.last_modified, flags = excluded.flags, cflags = excluded.cflags,
                    user_agent = excluded.user_agent, socket = excluded.socket, methods = excluded.methods,
                    instance = excluded.instance, reg_id = excluded.reg_id, server_id = excluded.server_id,
                    connection_id = excluded.connection_id, keepalive = excluded.keepalive, partition = excluded.partition
                """)
            for c in upserts {
                let q: Double = c.q < 0 ? -1 : Double(c.q) / 1000
                let values: [(any DatabaseValueConvertible)?] = [
                    c.ruid, c.username, c.domain, c.contact, c.received, c.path,
                    StarlingDatabase.julianDay(c.expires), q, c.callid, c.cseq,
                    StarlingDatabase.julianDay(c.lastModified), c.flags, c.cflags, c.userAgent, c.socket,
                    c.methods, c.instance, c.regId, c.serverId, c.connectionId, c.keepalive, c.partition,
                ]
                try ins.execute(arguments: StatementArguments(values))
            }
        }
    }
}
