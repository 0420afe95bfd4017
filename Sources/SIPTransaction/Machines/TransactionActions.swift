/// The actions a machine returns for one event, in order: at most `capacity`, kept inline.
///
/// The machines run on every message of a transaction; an array per event was a heap allocation
/// and a free each time (about ten per stateful call). This is a fixed, non-generic struct on
/// purpose: a generic inline array (`InlineArray<N, Element>`) is copied and destroyed through
/// run-time metadata in Swift 6.3, which cost far more than the allocation it saved.
///
/// No event needs more than six actions: the worst is a negative final in Calling on UDP in a
/// proxy (stop A, B and C, send the ACK, pass it up, start D). Appending a seventh is a
/// programming error.
public struct TransactionActions: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral, CustomStringConvertible {
    /// The most actions one event can return.
    public static let capacity = 6

    /// How many actions there are.
    @inlinable public var count: Int { stored }

    @usableFromInline var stored = 0
    // Slots past `count` hold `.terminate` and are never read.
    @usableFromInline var a0 = TransactionAction.terminate, a1 = TransactionAction.terminate
    @usableFromInline var a2 = TransactionAction.terminate, a3 = TransactionAction.terminate
    @usableFromInline var a4 = TransactionAction.terminate, a5 = TransactionAction.terminate

    /// No action.
    @inlinable public init() {}

    @inlinable public init(_ x0: TransactionAction) {
        append(x0)
    }

    @inlinable public init(_ x0: TransactionAction, _ x1: TransactionAction) {
        append(x0)
        append(x1)
    }

    @inlinable public init(_ x0: TransactionAction, _ x1: TransactionAction, _ x2: TransactionAction) {
        append(x0)
        append(x1)
        append(x2)
    }

    @inlinable public init(_ x0: TransactionAction, _ x1: TransactionAction, _ x2: TransactionAction,
                           _ x3: TransactionAction) {
        append(x0)
        append(x1)
        append(x2)
        append(x3)
    }

    /// For tests and traces: `[.sendResponse(200), .terminate]`.
    @inlinable public init(arrayLiteral elements: TransactionAction...) {
        for e in elements { append(e) }
    }

    /// True if there is no action.
    @inlinable public var isEmpty: Bool { count == 0 }

    /// The action at `i` (0 ..< count).
    @inlinable public subscript(i: Int) -> TransactionAction {
        precondition(i >= 0 && i < count, "TransactionActions index out of range")
        switch i {
        case 0: return a0
        case 1: return a1
        case 2: return a2
        case 3: return a3
        case 4: return a4
        default: return a5
        }
    }

    /// Adds an action at the end.
    @inlinable public mutating func append(_ a: TransactionAction) {
        switch count {
        case 0: a0 = a
        case 1: a1 = a
        case 2: a2 = a
        case 3: a3 = a
        case 4: a4 = a
        case 5: a5 = a
        default: preconditionFailure("more than six transaction actions for one event")
        }
        stored += 1
    }

    /// Adds the actions of `other` at the end.
    @inlinable public mutating func append(contentsOf other: TransactionActions) {
        for a in other { append(a) }
    }

    /// The actions for which `isIncluded` is true, in order.
    @inlinable public func filter(_ isIncluded: (TransactionAction) throws -> Bool) rethrows -> TransactionActions {
        var r = TransactionActions()
        for a in self where try isIncluded(a) { r.append(a) }
        return r
    }

    /// `a` followed by `b`.
    @inlinable public static func + (a: TransactionActions, b: TransactionActions) -> TransactionActions {
        var r = a
        r.append(contentsOf: b)
        return r
    }

    /// Iterates the actions in order.
    public struct Iterator: IteratorProtocol {
        @usableFromInline let actions: TransactionActions
        @usableFromInline var position = 0

        @inlinable init(_ actions: TransactionActions) { self.actions = actions }

        @inlinable public mutating func next() -> TransactionAction? {
            guard position < actions.count else { return nil }
            defer { position += 1 }
            return actions[position]
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(self) }

    @inlinable public var underestimatedCount: Int { count }

    /// Equal when they hold the same actions in the same order.
    public static func == (a: TransactionActions, b: TransactionActions) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for a in self { hasher.combine(a) }
    }

    /// `[startTimer(A, 0.5 seconds), startTimer(B, 32.0 seconds)]`.
    public var description: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}
