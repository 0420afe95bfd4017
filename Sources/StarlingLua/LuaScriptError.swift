/// An error from loading or running a script. `message` starts with `file:line:` whenever Lua knows
/// the position (`/etc/starling/route.lua:12: attempt to index a nil value`).
public struct LuaScriptError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, broadly.
    public enum Kind: Sendable, Equatable {
        /// The file could not be read.
        case io
        /// The chunk did not compile (syntax error).
        case syntax
        /// A runtime error, at the top level or in a callback.
        case runtime
        /// The script loaded but defines no `ksr_request_route` function.
        case missingRequestRoute
        /// The memory cap was reached while loading.
        case memory
        /// The instruction budget ran out while loading.
        case budget
        /// The Lua state could not be set up.
        case setup
    }

    public let kind: Kind
    /// The error message (first line), e.g. `route.lua:3: attempt to call a nil value`.
    public let message: String
    /// The Lua traceback (`stack traceback:` and its lines), or "" when there is none.
    public let traceback: String

    public init(kind: Kind, message: String, traceback: String = "") {
        self.kind = kind
        self.message = message
        self.traceback = traceback
    }

    /// Splits a message-handler result ("msg\nstack traceback:\n...") into message and traceback.
    init(kind: Kind, handlerOutput text: String) {
        let bytes = Array(text.utf8)
        let marker = Array("\nstack traceback:".utf8)
        var cut: Int?
        if bytes.count >= marker.count {
            for i in 0...(bytes.count - marker.count) where bytes[i] == marker[0] {
                if bytes[i..<(i + marker.count)].elementsEqual(marker) { cut = i; break }
            }
        }
        if let cut {
            self.init(kind: kind, message: String(decoding: bytes[..<cut], as: UTF8.self),
                      traceback: String(decoding: bytes[(cut + 1)...], as: UTF8.self))
        } else {
            self.init(kind: kind, message: text)
        }
    }

    public var description: String { traceback.isEmpty ? message : message + "\n" + traceback }
}
