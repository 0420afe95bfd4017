// libFuzzer entry for the SIPCore parser, editor and serializer. Built by fuzz/run.sh together with
// SIPCore's sources into one module (so it needs no package build), with -sanitize=fuzzer,address.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    exercise(input, datagram: true)
    exercise(input, datagram: false)
    return 0
}

func exercise(_ input: UnsafeRawBufferPointer, datagram: Bool) {
    guard let m = try? SIPMessage.parse(input, datagram: datagram) else { return }
    _ = try? m.validate()
    _ = m.topVia
    _ = m.from
    _ = m.to
    _ = m.cseq
    _ = m.requestURI
    _ = m.maxForwards
    for kind in [SIPHeaderKind.via, .contact, .route, .recordRoute] {
        for v in m.values(kind) {
            _ = m.parseVia(v)
            if let na = m.parseNameAddr(v) {
                _ = m.unescaped(na.uri)
                m.forEachParam(in: na.params) { _, _ in }
            }
        }
    }
    m.forEachHeader(.authorization) { h in
        if let a = m.authValue(h) { _ = m.authParam(a, "nonce") }
    }
    _ = m.serialized()
    if m.isRequest {
        if let first = m.headerFields.first { m.removeHeader(first) }
        m.addHeaderLine(Array("X-Fuzz: 1\r\n".utf8), at: .last)
        m.setRequestURI(Array("sip:fuzz@127.0.0.1".utf8))
        if let applied = try? m.applyingEdits() { _ = try? applied.validate() }
        _ = SIPBuilder.reply(to: m, .init(status: 400, reason: "Bad", toTag: "t"))
        _ = SIPBuilder.cancel(for: m)
        if let r = m.requestURI, let u = SIPURI(bytes: m.bytes(r.whole)) { _ = u.isEquivalent(to: u) }
    }
}
