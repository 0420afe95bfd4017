// libFuzzer entry for the Diameter codec (Sources/Diameter): framing, decoding, grouped AVPs,
// dictionary values, and the round trip. Built by fuzz/run-diameter.sh with the target's sources in
// one module, with -sanitize=fuzzer,address. A decoded message must re-encode to bytes that decode
// to the same message.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // Framing as the stream decoder does it: length first, then exactly that many bytes.
    if let length = try? DiameterMessage.frameLength(input), length <= size {
        _ = try? DiameterMessage.decode(UnsafeRawBufferPointer(rebasing: input[0..<length]))
    }
    guard let m = try? DiameterMessage.decode(input) else { return 0 }
    let dictionary = DiameterDictionary.standard
    func walk(_ avps: [DiameterAVP], depth: Int) {
        for a in avps {
            _ = dictionary.value(of: a)
            if depth < 4, let kids = try? a.children() { walk(kids, depth: depth + 1) }
        }
    }
    walk(m.avps, depth: 0)
    _ = m.resultCode
    _ = DiameterCapabilities(message: m)
    let bytes = m.encode()
    guard let again = try? DiameterMessage.decode(bytes) else { fatalError("re-encoded message does not decode") }
    // Flags of AVPs keep the V bit consistent with the vendor id, so compare field by field.
    guard again.commandCode == m.commandCode, again.hopByHop == m.hopByHop, again.avps.count == m.avps.count,
          zip(again.avps, m.avps).allSatisfy({ $0.code == $1.code && $0.data == $1.data && $0.vendorID == $1.vendorID })
    else { fatalError("round trip changed the message") }
    if m.isRequest {
        _ = m.answer(resultCode: 3002, originHost: "dra.example", originRealm: "example", reportingHost: "dra.example").encode()
    }
    return 0
}
