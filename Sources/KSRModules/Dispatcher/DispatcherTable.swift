import Logging
import Synchronization

/// One row of the `dispatcher` table as the database gives it (nil: NULL; numbers as text).
public struct DispatcherTableRow: Sendable {
    public var id: Int
    public var setid: String?
    public var destination: String?
    public var flags: String?
    public var priority: String?
    public var attrs: String?
    public init(id: Int, setid: String?, destination: String?, flags: String?, priority: String?, attrs: String?) {
        self.id = id
        self.setid = setid
        self.destination = destination
        self.flags = flags
        self.priority = priority
        self.attrs = attrs
    }
}

/// The table and column names (`table_name`, `setid_col`, `destination_col`, `flags_col`,
/// `priority_col`, `attrs_col`).
public struct DispatcherTableColumns: Sendable, Equatable {
    public var table: String
    public var setid: String
    public var destination: String
    public var flags: String
    public var priority: String
    public var attrs: String
}

/// Reads the rows of the dispatcher table (StarlingStore implements it over the embedded SQLite
/// database; KSRModules never opens a database itself).
public protocol DispatcherTableSource: Sendable {
    /// The database, for messages (its path).
    var name: String { get }
    /// Every row, in the table's order (id); throws when the table or a column cannot be read.
    func rows(_ columns: DispatcherTableColumns) throws -> [DispatcherTableRow]
}

extension DSList {
    /// Entries from the table's rows (Kamailio's `ds_load_db`): the first row that does not parse is
    /// an error naming the table and the row id (Kamailio 5.6 skips it with a warning; Starling
    /// refuses the whole table, as the list file).
    static func entries(_ rows: [DispatcherTableRow], table: String, warn: (String) -> Void = { _ in }) throws(DSListError) -> [Entry] {
        var out: [Entry] = []
        for r in rows {
            let origin = "table \(table) row id \(r.id)"
            func fail(_ m: String) -> DSListError { DSListError(origin: origin, message: m) }
            func int(_ v: String?, _ what: String) throws(DSListError) -> Int {
                guard let v else { return 0 }
                let t = String(v.trimmingCharacters(" \t"))
                guard !t.isEmpty, t.allSatisfy(\.isASCIIDigit), let n = Int(t) else { throw fail("\(what) \"\(v)\" is not a non-negative integer") }
                return n
            }
            guard let s = r.setid else { throw fail("set id is NULL") }
            let setid = try int(s, "set id")
            let uri = String((r.destination ?? "").trimmingCharacters(" \t"))
            guard !uri.isEmpty else { throw fail("no destination") }
            let flags = try int(r.flags, "flags")
            let priority = try int(r.priority, "priority")
            let attrs = r.attrs.flatMap { a -> String? in
                let t = String(a.trimmingCharacters(" \t"))
                return t.isEmpty ? nil : t
            }
            let e = Entry(setid: setid, uri: uri, flags: flags, priority: priority, attrs: attrs, origin: origin)
            _ = try destination(e, warn: warn)
            out.append(e)
        }
        return out
    }
}

extension DispatcherStore {
    /// Reads and parses the dispatcher table (nothing changes on error).
    func readTable(_ source: any DispatcherTableSource, _ columns: DispatcherTableColumns) throws(DSListError) -> [Int: DSSet] {
        let rows: [DispatcherTableRow]
        do {
            rows = try source.rows(columns)
        } catch {
            throw DSListError(origin: "\(source.name) table \(columns.table)", message: "cannot read the table (\(error))")
        }
        if rows.isEmpty { logger.warning("dispatcher: no dispatching data in the db -- empty destination set") }
        let entries = try DSList.entries(rows, table: columns.table) { [logger] in logger.warning("\($0)") }
        return try resolveNames(DSList.build(entries))
    }
}

extension DispatcherModule {
    /// The table and column names of the configuration.
    static func tableColumns(_ c: ModuleConfiguration) -> DispatcherTableColumns {
        DispatcherTableColumns(table: c[tableName], setid: c[setidCol], destination: c[destinationCol], flags: c[flagsCol],
                               priority: c[priorityCol], attrs: c[attrsCol])
    }

    /// `db_url` when set (then the destinations come from the table; `list_file` is not read, as Kamailio).
    static func databaseURL(_ c: ModuleConfiguration) -> String? { c[dbURL].flatMap { $0.isEmpty ? nil : $0 } }

    /// Loads the destinations from the dispatcher table of `source` (the routing stack calls it after
    /// the start when `db_url` is set); `ds_reload` / `dispatcher.reload` read the table again.
    static func attachTable(_ runtime: ModuleRuntime, _ source: any DispatcherTableSource) throws(ModuleStartError) {
        let ds = store(runtime)
        let columns = tableColumns(runtime.config)
        do {
            let sets = try ds.readTable(source, columns)
            ds.tableSource.withLock { $0 = (source, columns) }
            let events = ds.install(sets)
            ds.logger.info("dispatcher: \(sets.count) set(s), \(sets.values.reduce(0) { $0 + $1.dests.count }) destination(s) from table \(columns.table) of \(source.name)")
            if ds.settings.eventOnLoad { ds.announce(runtime, events) }
        } catch {
            throw ModuleStartError(key: "modparam.dispatcher.db_url", error.description)
        }
    }
}

/// The routing stack's entry to the dispatcher table (StarlingServer opens the database).
public enum DispatcherTable {
    /// `[modparam.dispatcher] db_url`, nil when unset.
    public static func databaseURL(_ c: ModuleConfiguration) -> String? { DispatcherModule.databaseURL(c) }
    /// Loads the sets from the table (refusing the start naming `modparam.dispatcher.db_url`).
    public static func attach(_ runtime: ModuleRuntime, _ source: any DispatcherTableSource) throws(ModuleStartError) {
        try DispatcherModule.attachTable(runtime, source)
    }
}
