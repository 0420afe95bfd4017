/// A write to a global variable inside a function (`starling check` with async_io).
public struct GlobalWrite: Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let name: String
    /// The function it is in (its name as written, "?" for an anonymous one).
    public let function: String
    public var description: String { "\(line): \(name) in \(function)" }
}

/// A static look for globals written inside functions. With `[core] async_io` two messages' routes
/// may interleave (one waits on the network, the other runs), so a global used as per-message scratch
/// space (`callee = KSR.pv.get("$rU")` without `local`) can be overwritten by another message's route
/// while the first one waits. Writes at the top level of a file (configuration) are not reported.
///
/// A tokenizer with scopes, not a full parser: `local` declarations, function parameters and `for`
/// variables are tracked per block; `name = ...` and `a, b = ...` at statement level outside table
/// constructors, where a name is not a local in scope, count as global writes.
public enum GlobalWrites {
    public static func scan(_ src: [UInt8]) -> [GlobalWrite] {
        let tokens = LuaTokens.tokenize(src)
        var out: [GlobalWrite] = []
        // Each scope: its locals; `isFunction` marks function bodies.
        struct Scope { var locals: Set<String>; var function: String? }
        var scopes: [Scope] = [Scope(locals: [], function: nil)]
        var pendingLocals: [String] = []   // for-loop variables, function parameters: go into the next scope
        var pendingFunction: String? = nil
        var braces = 0, parens = 0
        func isLocal(_ n: String) -> Bool { scopes.contains { $0.locals.contains(n) } }
        func functionName() -> String? { scopes.last(where: { $0.function != nil })?.function }
        func open(function: String? = nil) {
            var s = Scope(locals: Set(pendingLocals), function: function)
            if function == nil, let f = pendingFunction { s.function = f }
            pendingLocals = []
            pendingFunction = nil
            scopes.append(s)
        }
        func close() { if scopes.count > 1 { scopes.removeLast() } }
        var i = 0
        while i < tokens.count {
            let t = tokens[i]
            switch t.text {
            case "{": braces += 1
            case "}": braces = max(0, braces - 1)
            case "(": parens += 1
            case ")": parens = max(0, parens - 1)
            case "local":
                if i + 1 < tokens.count, tokens[i + 1].text == "function", i + 2 < tokens.count {
                    scopes[scopes.count - 1].locals.insert(tokens[i + 2].text)
                    i += 1
                    continue
                }
                var j = i + 1
                while j < tokens.count, tokens[j].isName {
                    scopes[scopes.count - 1].locals.insert(tokens[j].text)
                    j += 1
                    if j < tokens.count, tokens[j].text == "<" { j += 3 }  // <const>, <close>
                    if j < tokens.count, tokens[j].text == "," { j += 1 } else { break }
                }
                i = j
                continue
            case "function":
                // function a.b:c(params) / function(params) / local function f(params)
                var j = i + 1
                var name = ""
                while j < tokens.count, tokens[j].text != "(" {
                    name += tokens[j].text
                    j += 1
                }
                var params: [String] = name.contains(":") ? ["self"] : []
                j += 1
                while j < tokens.count, tokens[j].text != ")" {
                    if tokens[j].isName { params.append(tokens[j].text) }
                    j += 1
                }
                pendingLocals = params
                open(function: name.isEmpty ? "?" : name)
                i = j + 1
                continue
            case "for":
                var j = i + 1
                var names: [String] = []
                while j < tokens.count, tokens[j].text != "=" && tokens[j].text != "in" {
                    if tokens[j].isName { names.append(tokens[j].text) }
                    j += 1
                }
                pendingLocals = names
                i = j
                continue
            case "do", "then", "repeat":
                open()
            case "end", "until":
                close()
            case "elseif":
                close()
            case "else":
                close()
                open()
            default:
                if t.isName, braces == 0, parens == 0, functionName() != nil,
                   i == 0 || ![".", ":", "::", "goto"].contains(tokens[i - 1].text) {
                    // name [, name]* = (not ==)
                    var names: [LuaTokens.Token] = [t]
                    var j = i + 1
                    while j + 1 < tokens.count, tokens[j].text == ",", tokens[j + 1].isName {
                        names.append(tokens[j + 1])
                        j += 2
                    }
                    if j < tokens.count, tokens[j].text == "=" {
                        for n in names where !isLocal(n.text) {
                            out.append(GlobalWrite(line: n.line, name: n.text, function: functionName() ?? "?"))
                        }
                        i = j + 1
                        continue
                    }
                }
            }
            i += 1
        }
        return out
    }
}
