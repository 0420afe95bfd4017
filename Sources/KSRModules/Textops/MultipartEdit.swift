import SIPCore
import StarlingKEMI
import Logging

/// textops multipart body functions. They work on the pending body (the one a previous set_body or
/// multipart call left, else the received one) and replace it as a whole, so calls compose
/// (`set_body_multipart()` then `append_body_part(...)`), while reads still see the received message.
enum MultipartEdit {
    static let defaultBoundary = "unique-boundary-1"

    /// The body and Content-Type as they will be sent.
    static func pending(_ m: SIPMessage) -> (body: [UInt8], contentType: String) {
        let body = m.edits.body ?? m.bytes(m.bodyRange)
        let ct = m.edits.bodyContentType.map { String(decoding: $0, as: UTF8.self) } ?? m.headerValue(.contentType) ?? ""
        return (body, ct)
    }

    static func part(_ body: [UInt8], _ ctype: String, disposition: String? = nil, boundary: String) -> [UInt8] {
        var out = Array("--\(boundary)\r\nContent-Type: \(ctype)\r\n".utf8)
        if let disposition, !disposition.isEmpty { out += Array("Content-Disposition: \(disposition)\r\n".utf8) }
        out += [0x0D, 0x0A]
        out += body
        out += [0x0D, 0x0A]
        return out
    }

    static func closing(_ boundary: String) -> [UInt8] { Array("--\(boundary)--\r\n".utf8) }

    static func contentType(_ boundary: String) -> String { "multipart/mixed;boundary=\"\(boundary)\"" }

    /// Makes the pending body the first part of a multipart body.
    static func convert(_ ctx: RouteContext, boundary: String) -> Int {
        guard let m = ctx.message else { return -1 }
        let (body, ct) = pending(m)
        if Multipart.boundary(ct) != nil { return 1 }
        var new: [UInt8] = []
        if !body.isEmpty { new += part(body, ct.isEmpty ? "text/plain" : ct, boundary: boundary) }
        new += closing(boundary)
        m.setBody(new, contentType: contentType(boundary))
        return 1
    }

    static func setMultipart(_ ctx: RouteContext, _ body: [UInt8], _ ctype: String, boundary: String) -> Int {
        guard let m = ctx.message else { return -1 }
        var new: [UInt8] = []
        if !body.isEmpty { new += part(body, ctype.isEmpty ? "text/plain" : ctype, boundary: boundary) }
        new += closing(boundary)
        m.setBody(new, contentType: contentType(boundary))
        return 1
    }

    static func append(_ ctx: RouteContext, _ body: [UInt8]?, _ ctype: String, disposition: String?) -> Int {
        guard let m = ctx.message, let body, !body.isEmpty, !ctype.isEmpty else { return -1 }
        let (current, ct) = pending(m)
        guard let boundary = Multipart.boundary(ct) else {
            ctx.logger.error("append_body_part: the body is not multipart (call set_body_multipart first)")
            return -1
        }
        let close = closing(boundary)
        let end = TextopsModule.find(current, Array(close.dropLast(2))) ?? current.count
        var new = Array(current[..<end])
        new += part(body, ctype, disposition: disposition, boundary: boundary)
        new += close
        m.setBody(new, contentType: ct)
        return 1
    }

    static func hex(_ s: String) -> [UInt8]? {
        let b = Array(s.utf8).filter { $0 != 0x20 }
        guard b.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            guard let h = ASCIIHex.value(b[i]), let l = ASCIIHex.value(b[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    static func exports() -> [KemiExport] {
        var out: [KemiExport] = []
        func add(_ name: String, _ params: [KemiParamType], compat: String? = nil, _ fn: @escaping KemiFunction) {
            out.append(KemiExport("textops", name, params, returns: .int, compat: compat, fn))
        }
        add("set_body_multipart_mode", []) { ctx, _ in .int(convert(ctx, boundary: defaultBoundary)) }
        add("set_body_multipart_boundary", [.str]) { ctx, a in
            let b = a.str(0)
            return .int(convert(ctx, boundary: b.isEmpty ? defaultBoundary : b))
        }
        add("set_body_multipart_content", [.str, .str]) { ctx, a in
            .int(setMultipart(ctx, a.byteArray(0), a.str(1), boundary: defaultBoundary))
        }
        add("set_body_multipart", [.str, .str, .str]) { ctx, a in
            let b = a.str(2)
            return .int(setMultipart(ctx, a.byteArray(0), a.str(1), boundary: b.isEmpty ? defaultBoundary : b))
        }
        add("append_body_part", [.str, .str]) { ctx, a in .int(append(ctx, a.byteArray(0), a.str(1), disposition: nil)) }
        add("append_body_part_cd", [.str, .str, .str]) { ctx, a in
            .int(append(ctx, a.byteArray(0), a.str(1), disposition: a.str(2)))
        }
        add("append_body_part_hex", [.str, .str]) { ctx, a in .int(append(ctx, hex(a.str(0)), a.str(1), disposition: nil)) }
        add("append_body_part_hex_cd", [.str, .str, .str]) { ctx, a in
            .int(append(ctx, hex(a.str(0)), a.str(1), disposition: a.str(2)))
        }
        add("remove_body_part", [.str]) { ctx, a in
            guard let m = ctx.message else { return .int(-1) }
            let (body, ct) = pending(m)
            guard let boundary = Multipart.boundary(ct), let parts = Multipart.parts(body, contentType: ct) else { return .int(-1) }
            let want = a.str(0).lowercased()
            let kept = parts.filter { Multipart.mainType($0.contentType) != want }
            guard kept.count != parts.count else { return .int(-1) }
            var new: [UInt8] = []
            for p in kept {
                new += Array("--\(boundary)\r\n".utf8)
                new += p.raw
                new += [0x0D, 0x0A]
            }
            new += closing(boundary)
            m.setBody(new, contentType: ct)
            return .int(1)
        }
        return out
    }
}

enum ASCIIHex {
    static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
