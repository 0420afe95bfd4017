import KSRModules
import Testing

@Suite struct DigestHashTests {
    @Test func knownDigests() {
        #expect(DigestHash.md5.hex("") == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(DigestHash.sha256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(DigestHash.sha512_256.hex("abc") == "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23")
        // RFC 2617 §3.5: HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life")
        #expect(DigestHash.md5.hex("Mufasa:testrealm@host.com:Circle Of Life") == "939e7578ed9e3c518a452acee763bce9")
        #expect(DigestHash(algorithmName: "sha-256-sess") == .sha256)
        #expect(DigestHash(algorithmName: "SHA-1") == nil)
        #expect(DigestHash.randomBytes(16).count == 16)
    }
}
