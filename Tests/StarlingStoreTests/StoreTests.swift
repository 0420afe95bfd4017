import Testing
import Foundation
import KSRModules
import GRDB
@testable import StarlingStore

/// A fresh database file in a new temporary directory, removed after the test.
private final class TempDB {
    let dir: String
    let path: String
    init() {
        dir = NSTemporaryDirectory() + "starling-store-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir + "/starling.db"
    }
    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

private func contact(_ ruid: String, aor: String = "alice", uri: String = "sip:alice@192.0.2.10:5060", expires: Int = 2_000_000_000,
                     q: Int = 500) -> LocationContact {
    LocationContact(ruid: ruid, aor: aor, username: aor, domain: nil, contact: uri, received: "sip:203.0.113.1:4000",
                    path: "<sip:edge;lr>", expires: expires, q: q, callid: "cid-\(ruid)", cseq: 7, lastModified: 1_700_000_000,
                    flags: 0, cflags: 64, userAgent: "UA/1", socket: "udp:127.0.0.1:5060", methods: 0x1FF,
                    instance: "<urn:uuid:1>", regId: 1)
}

@Suite struct UACRegStoreTests {
    @Test func rowsAreReadWithKamailiosColumns() throws {
        let t = TempDB()
        let db = try StarlingDatabase(path: t.path)
        try db.pool.write { d in
            try d.execute(sql: """
                INSERT INTO uacreg (l_uuid, l_username, l_domain, r_username, r_domain, realm, auth_username,
                    auth_password, auth_proxy, expires, flags, reg_delay)
                VALUES ('t1', 'pbx', 'local.example', 'acct42', 'reg.example', 'reg.example', 'acct42', 'pw42',
                    'sip:127.0.0.1:5070', 600, 0, 3)
                """)
        }
        let rows = try SQLiteUACRegistrations(db).uacRegistrations()
        #expect(rows == [UACRegRow(l_uuid: "t1", l_username: "pbx", l_domain: "local.example", r_username: "acct42",
                                   r_domain: "reg.example", realm: "reg.example", auth_username: "acct42",
                                   auth_password: "pw42", auth_proxy: "sip:127.0.0.1:5070", expires: 600, flags: 0,
                                   reg_delay: 3)])
        #expect(throws: (any Error).self) { try SQLiteUACRegistrations(db, table: "bad;name").uacRegistrations() }
    }
}

@Suite struct StoreTests {
    @Test func dbURLForms() {
        #expect(StarlingDatabase.path(fromURL: "sqlite:///var/lib/starling/s.db") == "/var/lib/starling/s.db")
        #expect(StarlingDatabase.path(fromURL: "/tmp/x.db") == "/tmp/x.db")
        #expect(StarlingDatabase.path(fromURL: "mysql://kamailio:pw@localhost/kamailio") == nil)
    }

    @Test func migrationsCreateKamailioTables() throws {
        let t = TempDB()
        let db = try StarlingDatabase(path: t.path)
        #expect(try db.tableVersions() == ["location": 9, "subscriber": 7, "uacreg": 4])
        let columns = try db.pool.read { d in try d.columns(in: "location").map(\.name) }
        #expect(columns == ["id", "ruid", "username", "domain", "contact", "received", "path", "expires", "q", "callid",
                            "cseq", "last_modified", "flags", "cflags", "user_agent", "socket", "methods", "instance",
                            "reg_id", "server_id", "connection_id", "keepalive", "partition"])
        let mode = try db.pool.read { d in try String.fetchOne(d, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        // Opening again runs no migration twice.
        _ = try StarlingDatabase(path: t.path)
    }

    @Test func subscriberRowsAndHashes() throws {
        let t = TempDB()
        let subs = SQLiteSubscribers(try StarlingDatabase(path: t.path))
        try subs.add(username: "alice", domain: "example.com", password: "secret")
        let row = try #require(subs.subscriber(table: "subscriber", username: "alice", domain: "example.com", useDomain: true))
        #expect(row.password == "secret")
        #expect(row.ha1 == DigestHash.md5.hex("alice:example.com:secret"))
        #expect(row.ha1b == DigestHash.md5.hex("alice@example.com:example.com:secret"))
        #expect(subs.subscriber(table: "subscriber", username: "alice", domain: "other", useDomain: true) == nil)
        #expect(subs.subscriber(table: "subscriber", username: "alice", domain: "other", useDomain: false) != nil)
        // Replacing the password keeps one row.
        try subs.add(username: "alice", domain: "example.com", password: "new")
        #expect(try subs.list().map(\.password) == ["new"])
        #expect(try subs.remove(username: "alice", domain: "example.com"))
        #expect(try subs.list().isEmpty)
        #expect(try !subs.remove(username: "alice", domain: "example.com"))
    }

    /// Lookups run on their own connections: rows another connection (`starling subscriber add` in
    /// another process) writes, changes and removes are seen by the next lookup, and extra columns
    /// come back as text.
    @Test func subscriberLookupsSeeOtherWriters() throws {
        let t = TempDB()
        let server = SQLiteSubscribers(try StarlingDatabase(path: t.path))
        let cli = SQLiteSubscribers(try StarlingDatabase(path: t.path))
        #expect(server.subscriber(table: "subscriber", username: "bob", domain: "example.com", useDomain: true) == nil)
        try cli.add(username: "bob", domain: "example.com", password: "one")
        #expect(server.subscriber(table: "subscriber", username: "bob", domain: "example.com", useDomain: true)?.password
                == "one")
        try cli.add(username: "bob", domain: "example.com", password: "two")
        let row = try #require(server.subscriber(table: "subscriber", username: "bob", domain: "example.com",
                                                 useDomain: false))
        #expect(row.password == "two")
        #expect(row.ha1 == DigestHash.md5.hex("bob:example.com:two"))
        #expect(row.extra["id"] != nil)
        try cli.db.pool.write { d in
            try d.execute(sql: "ALTER TABLE subscriber ADD COLUMN rpid VARCHAR(64)")
            try d.execute(sql: "ALTER TABLE subscriber ADD COLUMN level INTEGER")
            try d.execute(sql: "UPDATE subscriber SET rpid = 'sip:bob@pbx', level = 3")
        }
        let more = try #require(server.subscriber(table: "subscriber", username: "bob", domain: "example.com",
                                                  useDomain: true))
        #expect(more.extra["rpid"] == "sip:bob@pbx")
        #expect(more.extra["level"] == "3")
        #expect(try cli.remove(username: "bob", domain: "example.com"))
        #expect(server.subscriber(table: "subscriber", username: "bob", domain: "example.com", useDomain: true) == nil)
        #expect(server.subscriber(table: "no such table", username: "bob", domain: "", useDomain: false) == nil)
        #expect(server.subscriber(table: "missing", username: "bob", domain: "", useDomain: false) == nil)
    }

    @Test func concurrentSubscriberLookups() async throws {
        let t = TempDB()
        let subs = SQLiteSubscribers(try StarlingDatabase(path: t.path))
        for i in 0..<20 { try subs.add(username: "u\(i)", domain: "d", password: "p\(i)") }
        let found = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var n = 0
                    for i in 0..<200 where subs.subscriber(table: "subscriber", username: "u\(i % 20)", domain: "d",
                                                           useDomain: true)?.password == "p\(i % 20)" { n += 1 }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        #expect(found == 8 * 200)
    }

    @Test func locationRoundTrip() throws {
        let t = TempDB()
        let db = try StarlingDatabase(path: t.path)
        let loc = SQLiteLocations(db, useDomain: false)
        let a = contact("r1"), b = contact("r2", uri: "sip:alice@192.0.2.11", q: -1)
        try loc.saveContacts(table: "location", upserts: [a, b], deletes: [])
        var loaded = try loc.loadContacts(table: "location").sorted { $0.ruid < $1.ruid }
        #expect(loaded == [a, b])
        var a2 = a
        a2.cseq = 8
        a2.expires += 100
        try loc.saveContacts(table: "location", upserts: [a2], deletes: ["r2"])
        loaded = try loc.loadContacts(table: "location")
        #expect(loaded == [a2])
        // Expires is stored as Kamailio's db_sqlite stores a DATETIME: a Julian day.
        let jd = try db.pool.read { d in try Double.fetchOne(d, sql: "SELECT expires FROM location") }
        #expect(jd == StarlingDatabase.julianDay(a2.expires))
        #expect(StarlingDatabase.seconds(DatabaseValue(value: StarlingDatabase.julianDay(1_700_000_123))!) == 1_700_000_123)
        // Rows written as text (by hand, by older tools) read back too.
        #expect(StarlingDatabase.seconds("2023-11-14 22:15:23") == 1_700_000_123)
        #expect(StarlingDatabase.seconds("2461367.46965856").map { abs($0 - 1_795_389_378) < 2 } == true)
    }

    @Test func writeBackFlushAndRestart() throws {
        let t = TempDB()
        let params = ["usrloc": ["db_mode": ["2"], "timer_interval": ["5"]]]
        let clock = ModuleClock()
        do {
            let db = try StarlingDatabase(path: t.path)
            let rt = ModuleRuntime(config: ModuleConfiguration(params: params), locations: SQLiteLocations(db, useDomain: false),
                                   clock: clock)
            let table = rt.usrloc.table("location")
            let now = clock.unixSeconds
            rt.usrloc.change(table, "alice") { list -> (result: Void, changed: [String], deleted: [String]) in
                list.append(contact("w1", expires: now + 3600))
                list.append(contact("w2", uri: "sip:alice@192.0.2.12", expires: now + 3600))
                return ((), ["w1", "w2"], [])
            }
            // Not yet written: write-back waits for the timer.
            #expect(try SQLiteLocations(db, useDomain: false).loadContacts(table: "location").isEmpty)
            rt.advance(by: .seconds(5))
            #expect(try SQLiteLocations(db, useDomain: false).loadContacts(table: "location").count == 2)
            rt.usrloc.change(table, "alice") { list -> (result: Void, changed: [String], deleted: [String]) in
                list.removeAll { $0.ruid == "w2" }
                return ((), [], ["w2"])
            }
            rt.usrloc.flush()
            #expect(try SQLiteLocations(db, useDomain: false).loadContacts(table: "location").map(\.ruid) == ["w1"])
        }
        // A new runtime (a restart) over the same file has the contact in memory.
        let db = try StarlingDatabase(path: t.path)
        let rt = ModuleRuntime(config: ModuleConfiguration(params: params), locations: SQLiteLocations(db, useDomain: false))
        #expect(rt.usrloc.table("location").contacts("alice").map(\.ruid) == ["w1"])
    }
}
