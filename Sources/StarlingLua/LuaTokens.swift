/// Lua source as tokens for the static checks of `starling check` (KSR names, global writes): names,
/// keywords and punctuation with their lines; string and number literals as placeholders ("" and 0);
/// comments, long brackets and whitespace dropped. A tokenizer, not a parser.
enum LuaTokens {
    struct Token {
        let text: String
        let line: Int
        let isName: Bool
    }

    static let keywords: Set<String> = [
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
        "not", "or", "repeat", "return", "then", "true", "until", "while",
    ]

    /// Names, keywords and punctuation with their lines; strings, numbers and comments dropped.
    static func tokenize(_ src: [UInt8]) -> [Token] {
        var out: [Token] = []
        var i = 0, line = 1
        let n = src.count
        func isIdentStart(_ c: UInt8) -> Bool { c == 0x5F || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) }
        func isIdent(_ c: UInt8) -> Bool { isIdentStart(c) || (c >= 0x30 && c <= 0x39) }
        func longBracket(_ at: Int) -> Int? {
            guard at < n, src[at] == UInt8(ascii: "[") else { return nil }
            var j = at + 1, level = 0
            while j < n && src[j] == UInt8(ascii: "=") { level += 1; j += 1 }
            return j < n && src[j] == UInt8(ascii: "[") ? level : nil
        }
        func skipLong(_ at: Int, _ level: Int) -> Int {
            var j = at
            while j < n {
                if src[j] == 0x0A { line += 1 }
                if src[j] == UInt8(ascii: "]") {
                    var k = j + 1, l = 0
                    while k < n && src[k] == UInt8(ascii: "=") { l += 1; k += 1 }
                    if l == level && k < n && src[k] == UInt8(ascii: "]") { return k + 1 }
                }
                j += 1
            }
            return n
        }
        while i < n {
            let c = src[i]
            if c == 0x0A { line += 1; i += 1; continue }
            if c == 0x20 || c == 0x09 || c == 0x0D { i += 1; continue }
            if c == UInt8(ascii: "-") && i + 1 < n && src[i + 1] == UInt8(ascii: "-") {
                if let level = longBracket(i + 2) { i = skipLong(i + 4 + level, level) } else {
                    while i < n && src[i] != 0x0A { i += 1 }
                }
                continue
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                i += 1
                while i < n && src[i] != c && src[i] != 0x0A {
                    if src[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                i += 1
                out.append(Token(text: "\"\"", line: line, isName: false))
                continue
            }
            if c == UInt8(ascii: "["), let level = longBracket(i) {
                i = skipLong(i + 2 + level, level)
                out.append(Token(text: "\"\"", line: line, isName: false))
                continue
            }
            if isIdentStart(c) {
                let start = i
                while i < n && isIdent(src[i]) { i += 1 }
                let word = String(decoding: src[start..<i], as: UTF8.self)
                out.append(Token(text: word, line: line, isName: !keywords.contains(word)))
                continue
            }
            if c >= 0x30 && c <= 0x39 {
                while i < n && (isIdent(src[i]) || src[i] == UInt8(ascii: ".")) { i += 1 }
                out.append(Token(text: "0", line: line, isName: false))
                continue
            }
            // two-character operators that contain '=' or ':'
            if i + 1 < n {
                let two = String(decoding: src[i...(i + 1)], as: UTF8.self)
                if ["==", "~=", "<=", ">=", "::", "..", "//", "<<", ">>"].contains(two) {
                    out.append(Token(text: two, line: line, isName: false))
                    i += 2
                    continue
                }
            }
            out.append(Token(text: String(UnicodeScalar(c)), line: line, isName: false))
            i += 1
        }
        return out
    }
}
