import StarlingKEMI
import Logging

extension RouteContext {
    /// The process-wide module state this context was built with (nil when none was attached).
    var runtime: ModuleRuntime? { moduleState as? ModuleRuntime }
}

/// A worker's named htable iterators (`sht_iterator_start(iname, table)`), as Kamailio keeps them
/// per process. Each walks a snapshot of the keys taken at start; values are read live.
final class HtableIterators {
    struct Iterator {
        var table: Htable
        var keys: [String]
        var position: Int
        var current: String?
    }
    var named: [String: Iterator] = [:]
    /// Kamailio allows 4 iterators at a time.
    static let limit = 4
}

/// Comparisons of sht_rm_name/sht_rm_value/sht_match_name/sht_match_str_value: `eq`, `ne`, `re`
/// (POSIX ERE, case-insensitive), `sw` (starts with), `ew` (ends with), `in` (contains).
enum HtableMatch {
    static func matcher(_ ctx: RouteContext, op: String, value: String) -> ((String) -> Bool)? {
        switch op {
        case "eq": return { $0 == value }
        case "ne": return { $0 != value }
        case "sw": return { $0.hasPrefix(value) }
        case "ew": return { $0.hasSuffix(value) }
        case "in": return { $0.contains(value) }
        case "re":
            guard let re = ctx.regex(value) else { return nil }
            return { re.matches($0) }
        default:
            ctx.logger.error("htable: unsupported match operator '\(op)'")
            return nil
        }
    }
}

/// `KSR.htable` (REFERENCE §2.20): named tables shared by all workers, defined by the `htable`
/// modparam; items expire by `autoexpire`; a missing item of a table with an integer `initval`
/// reads as initval.
enum HtableModule {
    static let noIntValue = -255

    static func exports(_ runtime: ModuleRuntime) -> [KemiExport] {
        let store = runtime.htables
        @Sendable func table(_ ctx: RouteContext, _ name: String) -> Htable? {
            if let t = store.table(name) { return t }
            ctx.logger.error("htable: no such table '\(name)'")
            return nil
        }
        @Sendable func getter(_ name: String, null: KemiResult) -> KemiExport {
            KemiExport("htable", name, [.str, .str], returns: .xval) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return null }
                switch t.read(args.str(1)) {
                case .int(let i)?: return .int(i)
                case .string(let s)?: return .string(s)
                case .null?, nil: return null
                }
            }
        }
        @Sendable func iterator(_ ctx: RouteContext, _ name: String) -> HtableIterators.Iterator? {
            ctx.worker.local(HtableIterators.self) { HtableIterators() }.named[name]
        }
        @Sendable func updateCurrent(_ ctx: RouteContext, _ name: String, _ body: (Htable, String) -> Void) -> KemiResult {
            guard let it = iterator(ctx, name), let key = it.current else { return .int(-1) }
            body(it.table, key)
            return .int(1)
        }
        return [
            getter("sht_get", null: .null),
            getter("sht_gete", null: .string("")),
            getter("sht_getw", null: .string("<null>")),
            KemiExport("htable", "sht_sets", [.str, .str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let v = args.string(2) else { return .int(-1) }
                t.set(args.str(1), .string(v))
                return .int(1)
            },
            KemiExport("htable", "sht_seti", [.str, .str, .int], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.set(args.str(1), .int(args.int(2)))
                return .int(1)
            },
            KemiExport("htable", "sht_setxs", [.str, .str, .str, .int], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let v = args.string(2) else { return .int(-1) }
                t.set(args.str(1), .string(v), expire: args.int(3))
                return .int(1)
            },
            KemiExport("htable", "sht_setxi", [.str, .str, .int, .int], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.set(args.str(1), .int(args.int(2)), expire: args.int(3))
                return .int(1)
            },
            KemiExport("htable", "sht_setex", [.str, .str, .int], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.setExpire(args.str(1), args.int(2))
                return .int(1)
            },
            KemiExport("htable", "sht_inc", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let v = t.add(args.str(1), 1) else { return .int(noIntValue) }
                return .int(v)
            },
            KemiExport("htable", "sht_dec", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let v = t.add(args.str(1), -1) else { return .int(noIntValue) }
                return .int(v)
            },
            KemiExport("htable", "sht_rm", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.remove(args.str(1))
                return .int(1)
            },
            KemiExport("htable", "sht_rm_name_re", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let m = HtableMatch.matcher(ctx, op: "re", value: args.str(1)) else { return .int(-1) }
                t.removeAll { k, _ in m(k) }
                return .int(1)
            },
            KemiExport("htable", "sht_rm_value_re", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let m = HtableMatch.matcher(ctx, op: "re", value: args.str(1)) else { return .int(-1) }
                t.removeAll { _, it in if case .string(let s) = it.value { return m(s) } else { return false } }
                return .int(1)
            },
            KemiExport("htable", "sht_rm_name", [.str, .str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                if args.str(1) == "eq" { t.remove(args.str(2)); return .int(1) }
                guard let m = HtableMatch.matcher(ctx, op: args.str(1), value: args.str(2)) else { return .int(-1) }
                t.removeAll { k, _ in m(k) }
                return .int(1)
            },
            KemiExport("htable", "sht_rm_value", [.str, .str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let m = HtableMatch.matcher(ctx, op: args.str(1), value: args.str(2)) else { return .int(-1) }
                t.removeAll { _, it in if case .string(let s) = it.value { return m(s) } else { return false } }
                return .int(1)
            },
            KemiExport("htable", "sht_match_name", [.str, .str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                // "eq" on names is a lookup (the example script's ban check runs it on every request)
                if args.str(1) == "eq" { return .code(t.get(args.str(2)) != nil) }
                guard let m = HtableMatch.matcher(ctx, op: args.str(1), value: args.str(2)) else { return .int(-1) }
                return .code(t.contains { k, _ in m(k) })
            },
            KemiExport("htable", "sht_match_str_value", [.str, .str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)), let m = HtableMatch.matcher(ctx, op: args.str(1), value: args.str(2)) else { return .int(-1) }
                return .code(t.contains { _, it in if case .string(let s) = it.value { return m(s) } else { return false } })
            },
            KemiExport("htable", "sht_is_null", [.str, .str], returns: .int) { ctx, args in
                guard let t = store.table(args.str(0)) else { return .int(2) }
                if t.get(args.str(1)) != nil { return .int(-1) }
                return .int(t.definition.initval != nil ? -2 : 1)
            },
            KemiExport("htable", "sht_reset", [.str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.reset()
                return .int(1)
            },
            KemiExport("htable", "sht_lock", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.lock(args.str(1))
                return .int(1)
            },
            KemiExport("htable", "sht_unlock", [.str, .str], returns: .int) { ctx, args in
                guard let t = table(ctx, args.str(0)) else { return .int(-1) }
                t.unlock(args.str(1))
                return .int(1)
            },
            KemiExport("htable", "sht_iterator_start", [.str, .str], returns: .int) { ctx, args in
                let name = args.str(0)
                guard !name.isEmpty, let t = table(ctx, args.str(1)) else { return .int(-1) }
                let its = ctx.worker.local(HtableIterators.self) { HtableIterators() }
                if its.named[name] == nil && its.named.count >= HtableIterators.limit {
                    ctx.logger.error("htable: too many iterators (\(HtableIterators.limit))")
                    return .int(-1)
                }
                let keys = t.snapshot().flatMap { $0.items.map(\.key) }
                its.named[name] = HtableIterators.Iterator(table: t, keys: keys, position: 0, current: nil)
                return .int(1)
            },
            KemiExport("htable", "sht_iterator_next", [.str], returns: .int) { ctx, args in
                let its = ctx.worker.local(HtableIterators.self) { HtableIterators() }
                guard var it = its.named[args.str(0)] else { return .int(-1) }
                it.current = nil
                while it.position < it.keys.count {
                    let k = it.keys[it.position]
                    it.position += 1
                    // items removed or expired since the start are skipped
                    if it.table.get(k) != nil { it.current = k; break }
                }
                its.named[args.str(0)] = it
                return .code(it.current != nil)
            },
            KemiExport("htable", "sht_iterator_end", [.str], returns: .int) { ctx, args in
                let its = ctx.worker.local(HtableIterators.self) { HtableIterators() }
                its.named[args.str(0)] = nil
                return .int(1)
            },
            KemiExport("htable", "sht_iterator_rm", [.str], returns: .int) { ctx, args in
                updateCurrent(ctx, args.str(0)) { t, k in t.remove(k) }
            },
            KemiExport("htable", "sht_iterator_sets", [.str, .str], returns: .int) { ctx, args in
                guard let v = args.string(1) else { return .int(-1) }
                return updateCurrent(ctx, args.str(0)) { t, k in t.set(k, .string(v)) }
            },
            KemiExport("htable", "sht_iterator_seti", [.str, .int], returns: .int) { ctx, args in
                let v = args.int(1)
                return updateCurrent(ctx, args.str(0)) { t, k in t.set(k, .int(v)) }
            },
            KemiExport("htable", "sht_iterator_setex", [.str, .int], returns: .int) { ctx, args in
                let v = args.int(1)
                return updateCurrent(ctx, args.str(0)) { t, k in t.setExpire(k, v) }
            },
        ]
    }

    // MARK: Pseudo-variables

    /// `$sht(t=>k)`: the item (initval for a missing item of an integer-initval table).
    static func pvGet(_ ctx: RouteContext, _ table: String, _ key: String) -> KemiValue {
        guard let t = ctx.runtime?.htables.table(table) else { return .null }
        return t.read(key) ?? .null
    }

    /// Assigning `$sht(t=>k)`: null removes the item.
    static func pvSet(_ ctx: RouteContext, _ table: String, _ key: String, _ value: KemiValue) -> Bool {
        guard let t = ctx.runtime?.htables.table(table) else { return false }
        if value == .null { t.remove(key) } else { t.set(key, value) }
        return true
    }

    /// `$shtinc(t=>k)` / `$shtdec(t=>k)`: the new value, null when the item holds a string.
    static func pvAdd(_ ctx: RouteContext, _ table: String, _ key: String, _ delta: Int) -> KemiValue {
        guard let t = ctx.runtime?.htables.table(table), let v = t.add(key, delta) else { return .null }
        return .int(v)
    }

    /// `$shtcn(t=>exp)` / `$shtcv(t=>exp)`: how many names (string values) match `exp`: `~~re` or a
    /// bare `re` (POSIX ERE, case-insensitive), `==text` (equal), `**` (all).
    static func pvCount(_ ctx: RouteContext, _ table: String, _ exp: String, values: Bool) -> KemiValue {
        guard let t = ctx.runtime?.htables.table(table) else { return .null }
        let match: (String) -> Bool
        if exp == "**" {
            match = { _ in true }
        } else if exp.hasPrefix("==") {
            let v = String(exp.dropFirst(2))
            match = { $0 == v }
        } else {
            guard let re = ctx.regex(exp.hasPrefix("~~") ? String(exp.dropFirst(2)) : exp) else { return .null }
            match = { re.matches($0) }
        }
        var n = 0
        for slot in t.snapshot() {
            for (k, it) in slot.items {
                if values {
                    if case .string(let s) = it.value, match(s) { n += 1 }
                } else if match(k) {
                    n += 1
                }
            }
        }
        return .int(n)
    }

    /// `$shtex(t=>k)`: seconds until the item expires (0 when it does not).
    static func pvExpire(_ ctx: RouteContext, _ table: String, _ key: String) -> KemiValue {
        guard let t = ctx.runtime?.htables.table(table) else { return .null }
        return .int(t.expiresIn(key))
    }

    static func pvSetExpire(_ ctx: RouteContext, _ table: String, _ key: String, _ value: KemiValue) -> Bool {
        guard let t = ctx.runtime?.htables.table(table) else { return false }
        let seconds: Int
        switch value {
        case .int(let i): seconds = i
        case .string(let s): guard let i = Int(s) else { return false }; seconds = i
        case .null: seconds = 0
        }
        t.setExpire(key, seconds)
        return true
    }

    /// `$shtitkey(it)` / `$shtitval(it)`.
    static func pvIterator(_ ctx: RouteContext, _ name: String, value: Bool) -> KemiValue {
        guard let it = ctx.worker.local(HtableIterators.self, { HtableIterators() }).named[name], let k = it.current else { return .null }
        if !value { return .string(k) }
        return it.table.get(k) ?? .null
    }
}
