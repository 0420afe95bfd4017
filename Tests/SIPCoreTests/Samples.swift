/// Messages used across the SIPCore tests.
enum Samples {
    static let invite = """
        INVITE sip:bob@biloxi.example.com:5070;transport=udp SIP/2.0\r
        Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r
        Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKfirst, SIP/2.0/TCP [2001:db8::9]:5080;branch=z9hG4bKsecond;received=192.0.2.4\r
        Max-Forwards: 70\r
        To: Bob <sip:bob@biloxi.example.com>\r
        From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774\r
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r
        CSeq: 314159 INVITE\r
        Contact: <sip:alice@pc33.atlanta.example.com>, "Second" <sip:alice@192.0.2.5:5062;transport=tcp>;q=0.5;expires=60\r
        Route: <sip:proxy1.example.com;lr>, <sip:proxy2.example.com;lr>\r
        Proxy-Authorization: Digest username="alice", realm="atlanta.example.com", nonce="abc,def", uri="sip:bob@biloxi.example.com", response="0123456789abcdef", algorithm=MD5\r
        Supported: replaces, timer\r
        X-Custom: one\r
        x-custom: two\r
        Content-Type: application/sdp\r
        Content-Length: 10\r
        \r
        v=0\r
        o=x\r

        """
}
