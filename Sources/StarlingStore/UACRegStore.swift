public import KSRModules
import GRDB

/// KSR.uac's remote registrations from the `uacreg` table (Kamailio's columns; `reg_db_table`
/// names another table with the same columns).
public final class SQLiteUACRegistrations: UACRegistrationSource {
    let db: StarlingDatabase
    let table: String

    public init(_ db: StarlingDatabase, table: String = "uacreg") {
        self.db = db
        self.table = table
    }

    public func uacRegistrations() throws -> [UACRegRow] {
        guard StarlingDatabase.validTableName(table) else { throw StoreError("invalid uacreg table name '\(table)'") }
        let t = StarlingDatabase.quoted(table)
        return try db.pool.read { d in
            try Row.fetchAll(d, sql: "SELECT * FROM \(t)").map { r in
                UACRegRow(l_uuid: r["l_uuid"] ?? "", l_username: r["l_username"] ?? "", l_domain: r["l_domain"] ?? "",
                          r_username: r["r_username"] ?? "", r_domain: r["r_domain"] ?? "", realm: r["realm"] ?? "",
                          auth_username: r["auth_username"] ?? "", auth_password: r["auth_password"] ?? "",
                          auth_proxy: r["auth_proxy"] ?? "", expires: r["expires"] ?? 0, flags: r["flags"] ?? 0,
                          reg_delay: r["reg_delay"] ?? 0)
            }
        }
    }
}
