public import KSRModules
import Foundation
import GRDB

/// The dialog module's persistence (`db_mode` 1/2) in Kamailio's `dialog` (version 7) and
/// `dialog_vars` (version 1) tables; profiles in `xdata` as Kamailio's JSON
/// (`{"profiles":[{"name":"tenant","value":"acme"}]}`).
public final class SQLiteDialogs: DialogPersistence {
    let db: StarlingDatabase

    public init(_ db: StarlingDatabase) throws(StoreError) {
        self.db = db
        do {
            try db.pool.write { d in
                try d.execute(sql: """
                    CREATE TABLE IF NOT EXISTS dialog (
                        id INTEGER PRIMARY KEY NOT NULL,
                        hash_entry INTEGER NOT NULL,
                        hash_id INTEGER NOT NULL,
                        callid VARCHAR(255) NOT NULL,
                        from_uri VARCHAR(255) NOT NULL,
                        from_tag VARCHAR(128) NOT NULL,
                        to_uri VARCHAR(255) NOT NULL,
                        to_tag VARCHAR(128) NOT NULL,
                        caller_cseq VARCHAR(20) NOT NULL,
                        callee_cseq VARCHAR(20) NOT NULL,
                        caller_route_set VARCHAR(512),
                        callee_route_set VARCHAR(512),
                        caller_contact VARCHAR(255) NOT NULL,
                        callee_contact VARCHAR(255) NOT NULL,
                        caller_sock VARCHAR(64) NOT NULL,
                        callee_sock VARCHAR(64) NOT NULL,
                        state INTEGER NOT NULL,
                        start_time INTEGER NOT NULL,
                        timeout INTEGER DEFAULT 0 NOT NULL,
                        sflags INTEGER DEFAULT 0 NOT NULL,
                        iflags INTEGER DEFAULT 0 NOT NULL,
                        toroute_name VARCHAR(32),
                        req_uri VARCHAR(255) NOT NULL,
                        xdata VARCHAR(512)
                    );
                    CREATE INDEX IF NOT EXISTS dialog_hash_idx ON dialog (hash_entry, hash_id);
                    CREATE TABLE IF NOT EXISTS dialog_vars (
                        id INTEGER PRIMARY KEY NOT NULL,
                        hash_entry INTEGER NOT NULL,
                        hash_id INTEGER NOT NULL,
                        dialog_key VARCHAR(128) NOT NULL,
                        dialog_value VARCHAR(512) NOT NULL
                    );
                    CREATE INDEX IF NOT EXISTS dialog_vars_hash_idx ON dialog_vars (hash_entry, hash_id);
                    INSERT OR REPLACE INTO version (table_name, table_version) VALUES ('dialog', 7);
                    INSERT OR REPLACE INTO version (table_name, table_version) VALUES ('dialog_vars', 1);
                    """)
            }
        } catch {
            throw StoreError("cannot create the dialog tables in \(db.path): \(error)")
        }
    }

    public func load() throws -> [DialogRecord] { try fetch(callID: nil) }

    func fetch(callID: String?) throws -> [DialogRecord] {
        try db.pool.read { d in
            var vars: [String: [DialogRecord.ProfileEntry]] = [:]
            let varsSQL = callID == nil
                ? "SELECT hash_entry, hash_id, dialog_key, dialog_value FROM dialog_vars ORDER BY id"
                : "SELECT v.hash_entry, v.hash_id, v.dialog_key, v.dialog_value FROM dialog_vars v JOIN dialog g "
                    + "ON g.hash_entry = v.hash_entry AND g.hash_id = v.hash_id WHERE g.callid = ? ORDER BY v.id"
            let args: StatementArguments = callID.map { [$0] } ?? []
            for r in try Row.fetchAll(d, sql: varsSQL, arguments: args) {
                let key = "\(r["hash_entry"] as Int? ?? 0):\(r["hash_id"] as Int? ?? 0)"
                vars[key, default: []].append(.init(name: r["dialog_key"] ?? "", value: r["dialog_value"] ?? ""))
            }
            let sql = callID == nil ? "SELECT * FROM dialog" : "SELECT * FROM dialog WHERE callid = ?"
            return try Row.fetchAll(d, sql: sql, arguments: args).map { r in
                let he: Int = r["hash_entry"] ?? 0
                let hi: Int = r["hash_id"] ?? 0
                return DialogRecord(
                    hashEntry: he, hashID: hi, callID: r["callid"] ?? "", fromURI: r["from_uri"] ?? "",
                    fromTag: r["from_tag"] ?? "", toURI: r["to_uri"] ?? "", toTag: r["to_tag"] ?? "",
                    callerCSeq: r["caller_cseq"] ?? "", calleeCSeq: r["callee_cseq"] ?? "",
                    callerRouteSet: r["caller_route_set"] ?? "", calleeRouteSet: r["callee_route_set"] ?? "",
                    callerContact: r["caller_contact"] ?? "", calleeContact: r["callee_contact"] ?? "",
                    callerSocket: r["caller_sock"] ?? "", calleeSocket: r["callee_sock"] ?? "", state: r["state"] ?? 0,
                    startTime: r["start_time"] ?? 0, timeout: r["timeout"] ?? 0, sflags: r["sflags"] ?? 0,
                    iflags: r["iflags"] ?? 0, requestURI: r["req_uri"] ?? "",
                    profiles: Self.profiles(fromXData: r["xdata"]), variables: vars["\(he):\(hi)"] ?? [])
            }
        }
    }

    public func load(callID: String) throws -> [DialogRecord] { try fetch(callID: callID) }

    public func deleteAll() throws {
        try db.pool.write { d in try d.execute(sql: "DELETE FROM dialog; DELETE FROM dialog_vars;") }
    }

    public func save(upserts: [DialogRecord], deletes: [(entry: Int, id: Int)]) throws {
        try db.pool.write { d in
            let delDialog = try d.makeStatement(sql: "DELETE FROM dialog WHERE hash_entry = ? AND hash_id = ?")
            let delVars = try d.makeStatement(sql: "DELETE FROM dialog_vars WHERE hash_entry = ? AND hash_id = ?")
            for x in deletes {
                try delDialog.execute(arguments: [x.entry, x.id])
                try delVars.execute(arguments: [x.entry, x.id])
            }
            guard !upserts.isEmpty else { return }
            let ins = try d.makeStatement(sql: """
                INSERT INTO dialog (hash_entry, hash_id, callid, from_uri, from_tag, to_uri, to_tag, caller_cseq,
                    callee_cseq, caller_route_set, callee_route_set, caller_contact, callee_contact, caller_sock,
                    callee_sock, state, start_time, timeout, sflags, iflags, req_uri, xdata)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let insVar = try d.makeStatement(sql: """
                INSERT INTO dialog_vars (hash_entry, hash_id, dialog_key, dialog_value) VALUES (?, ?, ?, ?)
                """)
            for r in upserts {
                try delDialog.execute(arguments: [r.hashEntry, r.hashID])
                try delVars.execute(arguments: [r.hashEntry, r.hashID])
                let values: [(any DatabaseValueConvertible)?] = [
                    r.hashEntry, r.hashID, r.callID, r.fromURI, r.fromTag, r.toURI, r.toTag, r.callerCSeq, r.calleeCSeq,
                    r.callerRouteSet, r.calleeRouteSet, r.callerContact, r.calleeContact, r.callerSocket, r.calleeSocket,
                    r.state, r.startTime, r.timeout, r.sflags, r.iflags, r.requestURI, Self.xdata(r.profiles),
                ]
                try ins.execute(arguments: StatementArguments(values))
                for v in r.variables { try insVar.execute(arguments: [r.hashEntry, r.hashID, v.name, v.value]) }
            }
        }
    }

    /// Kamailio's xdata JSON of the profiles ("" when none).
    static func xdata(_ profiles: [DialogRecord.ProfileEntry]) -> String {
        guard !profiles.isEmpty else { return "" }
        let items: [[String: String]] = profiles.map { p in p.value.isEmpty ? ["name": p.name] : ["name": p.name, "value": p.value] }
        guard let data = try? JSONSerialization.data(withJSONObject: ["profiles": items], options: [.sortedKeys]) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    static func profiles(fromXData text: String?) -> [DialogRecord.ProfileEntry] {
        guard let text, !text.isEmpty, let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let list = obj["profiles"] as? [[String: Any]] else { return [] }
        return list.compactMap { p in
            guard let name = p["name"] as? String else { return nil }
            return .init(name: name, value: p["value"] as? String ?? "")
        }
    }
}
