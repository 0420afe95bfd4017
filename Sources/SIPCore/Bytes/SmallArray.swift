/// A list that keeps its first four elements inline and only the rest in an array: for the short lists
/// made per message (a transaction machine's actions, what a transaction sends), for which an `Array`
/// would allocate every time. Built with `append` or an array literal; read as a collection.
public struct SmallArray<Element>: RandomAccessCollection, ExpressibleByArrayLiteral {
    @usableFromInline static var inlineCapacity: Int { 4 }
    @usableFromInline var head: InlineArray<4, Element?>
    @usableFromInline var tail: [Element]
    @usableFromInline var length: Int

    @inlinable public init() {
        head = InlineArray(repeating: nil)
        tail = []
        length = 0
    }

    @inlinable public init(arrayLiteral elements: Element...) {
        self.init()
        for e in elements { append(e) }
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { length }

    @inlinable public subscript(i: Int) -> Element {
        precondition(i >= 0 && i < length, "SmallArray index out of range")
        return i < Self.inlineCapacity ? head[i]! : tail[i - Self.inlineCapacity]
    }

    @inlinable public mutating func append(_ e: Element) {
        if length < Self.inlineCapacity { head[length] = e } else { tail.append(e) }
        length += 1
    }

    @inlinable public mutating func append(contentsOf other: some Sequence<Element>) {
        for e in other { append(e) }
    }

    @inlinable public mutating func removeAll() { self = SmallArray() }
}

extension SmallArray: Equatable where Element: Equatable {
    @inlinable public static func == (a: SmallArray, b: SmallArray) -> Bool { a.elementsEqual(b) }
}

extension SmallArray: Sendable where Element: Sendable {}

extension SmallArray: CustomStringConvertible {
    public var description: String { Array(self).description }
}
