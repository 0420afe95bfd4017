import Testing
import SIPCore
import StarlingKEMI
import StarlingTesting

@Suite struct TextopsSearchTests {
    @Test func search() throws {
        #expect(try evalValue("KSR.textops.search(\"^user-agent: test\")") == "number:1")
        #expect(try evalValue("KSR.textops.search(\"X-Absent\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search(\"\")") == "number:1")
        #expect(try evalValue("KSR.textops.search_body(\"^v=0\")") == "number:1")
        #expect(try evalValue("KSR.textops.search_body(\"INVITE\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search_body(\"\")", Msg.options()) == "number:-1")
        // search_append starts after the first line
        #expect(try evalValue("KSR.textops.search_append(\"^INVITE\", \"x\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search_hf(\"X-Multi\", \"two\", \"a\")") == "number:1")
        #expect(try evalValue("KSR.textops.search_hf(\"X-Multi\", \"two\", \"f\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search_hf(\"X-Multi\", \"two\", \"l\")") == "number:1")
        #expect(try evalValue("KSR.textops.is_present_hf(\"x-multi\")") == "number:1")
        #expect(try evalValue("KSR.textops.is_present_hf(\"f\")") == "number:1")
        #expect(try evalValue("KSR.textops.is_present_hf(\"X-None\")") == "number:-1")
        #expect(try evalValue("KSR.textops.is_present_hf_re(\"^x-m\")") == "number:1")
        #expect(try evalValue("KSR.textops.is_present_hf_re(\"^x-z\")") == "number:-1")
    }

    @Test func searchStrCodes() throws {
        #expect(try evalValue("KSR.textops.search_str(\"abc\", \"B\")") == "number:1")
        #expect(try evalValue("KSR.textops.search_str(\"abc\", \"x\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search_str(\"abc\", \"\")") == "number:2")
        #expect(try evalValue("KSR.textops.search_str(\"\", \"a\")") == "number:-2")
        // wrong arity -> false, no error
        #expect(try evalValue("KSR.textops.search_str(\"abc\")") == "boolean:false")
    }

    /// POSIX leftmost-longest: the alternation picks the longest match at the leftmost position
    /// (Swift Regex / PCRE would take "ab", the first alternative).
    @Test func leftmostLongest() throws {
        let (_, h) = try eval("KSR.textops.regex_substring(\"abcd\", \"(ab|abcd)\", 1, 1, \"$var(m)\")")
        #expect(h.context.worker.vars["m"] == .string("abcd"))
        #expect(try evalValue("KSR.textops.regex_substring(\"abc\", \"z\", 0, 1, \"$var(m)\")") == "number:-1")
    }

    @Test func searchAppend() throws {
        let (r, wire) = try evalForward("KSR.textops.search_append(\"TestUA/1.0\", \" extra\")")
        #expect(r == "number:1")
        #expect(wire.contains("User-Agent: TestUA/1.0 extra\r\n"))
        let (r2, wire2) = try evalForward("KSR.textops.search_append_body(\"v=0\", \"X\")")
        #expect(r2 == "number:1")
        #expect(wire2.hasSuffix("\r\n\r\nv=0X\r"))
        #expect(wire2.contains("Content-Length: 5\r\n"))
    }

    @Test func editsAreInvisibleToSearches() throws {
        #expect(try evalValue("KSR.textops.search(\"X-New\")", before: "KSR.hdr.append(\"X-New: 1\\r\\n\")") == "number:-1")
        #expect(try evalValue("KSR.textops.is_present_hf(\"X-New\")", before: "KSR.hdr.append(\"X-New: 1\\r\\n\")") == "number:-1")
        #expect(try evalValue("KSR.hdr.is_present(\"X-New\")", before: "KSR.hdr.append(\"X-New: 1\\r\\n\")") == "number:-1")
    }
}

@Suite struct TextopsEditTests {
    @Test func replace() throws {
        let (r, wire) = try evalForward("KSR.textops.replace(\"one|two\", \"N\")")
        #expect(r == "number:1")
        #expect(wire.contains("X-Multi: N\r\nX-Multi: two\r\n"))
        let (r2, wire2) = try evalForward("KSR.textops.replace_all(\"one|two\", \"N\")")
        #expect(r2 == "number:1")
        #expect(wire2.contains("X-Multi: N\r\nX-Multi: N\r\n"))
        #expect(try evalForward("KSR.textops.replace(\"nomatch\", \"N\")").0 == "number:-1")
        let (r3, wire3) = try evalForward("KSR.textops.replace_body(\"0\", \"1\")")
        #expect(r3 == "number:1")
        #expect(wire3.hasSuffix("\r\n\r\nv=1\r"))
        let (_, wire4) = try evalForward("KSR.textops.replace_body_all(\"[v0]\", \"x\")")
        #expect(wire4.hasSuffix("\r\n\r\nx=x\r"))
        let (_, wire5) = try evalForward("KSR.textops.replace_body_atonce(\"[v0]\", \"y\")")
        #expect(wire5.hasSuffix("\r\n\r\ny=y\r"))
        let (r6, wire6) = try evalForward("KSR.textops.replace_hdrs(\"TestUA\", \"OtherUA\")")
        #expect(r6 == "number:1")
        #expect(wire6.contains("User-Agent: OtherUA/1.0\r\n"))
        #expect(try evalForward("KSR.textops.replace_hdrs(\"v=0\", \"x\")").0 == "number:-1")
    }

    @Test func replaceStrings() throws {
        let (r, wire) = try evalForward("KSR.textops.replace_str(\"X-Multi\", \"X-M\", \"a\")")
        #expect(r == "number:1")
        #expect(wire.contains("X-M: one\r\nX-M: two\r\n"))
        let (_, wire2) = try evalForward("KSR.textops.replace_str(\"X-Multi\", \"X-M\", \"f\")")
        #expect(wire2.contains("X-M: one\r\nX-Multi: two\r\n"))
        let (r3, wire3) = try evalForward("KSR.textops.replace_body_str(\"v=\", \"w=\", \"f\")")
        #expect(r3 == "number:1")
        #expect(wire3.hasSuffix("w=0\r"))
        let (r4, wire4) = try evalForward("KSR.textops.replace_hdrs_str(\"Alice\", \"Carol\", \"a\")")
        #expect(r4 == "number:1")
        #expect(wire4.contains("From: \"Carol\" <sip:alice@"))
    }

    @Test func subst() throws {
        let (r, wire) = try evalForward("KSR.textops.subst(\"/^(User-Agent): *(.*)$/\\\\1: X-\\\\2/\")")
        #expect(r == "number:1")
        #expect(wire.contains("User-Agent: X-TestUA/1.0\r\n"))
        // case-sensitive without the i flag
        #expect(try evalForward("KSR.textops.subst(\"/user-agent/x/\")").0 == "number:-1")
        #expect(try evalForward("KSR.textops.subst(\"/user-agent/x/i\")").0 == "number:1")
        let (_, wire2) = try evalForward("KSR.textops.subst(\"/X-Multi/X-M/g\")")
        #expect(wire2.contains("X-M: one\r\nX-M: two\r\n"))
        #expect(try evalValue("KSR.textops.subst(\"bad\")") == "number:-1")
    }

    @Test func substURIAndUser() throws {
        let (r, wire) = try evalForward("KSR.textops.subst_uri(\"/example.com/example.net/\")")
        #expect(r == "number:1")
        #expect(wire.hasPrefix("INVITE sip:bob@example.net SIP/2.0\r\n"))
        let (r2, wire2) = try evalForward("KSR.textops.subst_user(\"/^b(.*)$/B\\\\1x/\")")
        #expect(r2 == "number:1")
        #expect(wire2.hasPrefix("INVITE sip:Bobx@example.com SIP/2.0\r\n"))
        #expect(try evalValue("KSR.textops.subst_user(\"/zzz/y/\")") == "number:-1")
    }

    @Test func substBodyAndHeader() throws {
        let (r, wire) = try evalForward("KSR.textops.subst_body(\"/v=0/v=1/\")")
        #expect(r == "number:1")
        #expect(wire.hasSuffix("\r\n\r\nv=1\r"))
        let (r2, wire2) = try evalForward("KSR.textops.subst_hf(\"X-Multi\", \"/o/0/g\", \"a\")")
        #expect(r2 == "number:1")
        #expect(wire2.contains("X-Multi: 0ne\r\nX-Multi: tw0\r\n"))
        let (_, wire3) = try evalForward("KSR.textops.subst_hf(\"X-Multi\", \"/o/0/\", \"f\")")
        #expect(wire3.contains("X-Multi: 0ne\r\nX-Multi: two\r\n"))
    }

    @Test func removeHeaders() throws {
        let (r, wire) = try evalForward("KSR.textops.remove_hf(\"X-Multi\")")
        #expect(r == "number:1")
        #expect(!wire.contains("X-Multi"))
        #expect(try evalValue("KSR.textops.remove_hf(\"X-None\")") == "number:1")
        let (r2, wire2) = try evalForward("KSR.textops.remove_hf_re(\"^x-\")")
        #expect(r2 == "number:2")
        #expect(!wire2.contains("X-Multi"))
        #expect(try evalValue("KSR.textops.remove_hf_re(\"^x-none\")") == "number:-1")
        let (r3, wire3) = try evalForward("KSR.textops.remove_hf_idx(\"X-Multi\", -1)")
        #expect(r3 == "number:1")
        #expect(wire3.contains("X-Multi: one\r\n") && !wire3.contains("X-Multi: two"))
        #expect(try evalValue("KSR.textops.remove_hf_idx(\"X-Multi\", 5)") == "number:-1")
        let (r4, wire4) = try evalForward("KSR.textops.remove_hf_exp(\"^(x-|user-)\", \"^user\")")
        #expect(r4 == "number:2")
        #expect(!wire4.contains("X-Multi") && wire4.contains("User-Agent"))
        let (r5, wire5) = try evalForward("KSR.textops.remove_hf_match(\"X-Multi\", \"eq\", \"TWO\")")
        #expect(r5 == "number:1")
        #expect(wire5.contains("X-Multi: one\r\n") && !wire5.contains("X-Multi: two"))
    }

    @Test func appendAndInsertHeaders() throws {
        let (_, wire) = try evalForward("KSR.textops.append_hf(\"X-A: 1\\r\\n\")")
        #expect(wire.contains("Content-Length: 4\r\nX-A: 1\r\n\r\n"))
        let (_, wire2) = try evalForward("KSR.textops.insert_hf(\"X-I: 1\\r\\n\")")
        #expect(wire2.contains("X-I: 1\r\nVia: SIP/2.0/UDP 192.0.2.10:5060"))
        let (_, wire3) = try evalForward("KSR.textops.append_hf_hdr(\"X-A: 1\\r\\n\", \"Call-ID\")")
        #expect(wire3.contains("Call-ID: a84b4c76e66710@pc33\r\nX-A: 1\r\n"))
        let (_, wire4) = try evalForward("KSR.textops.insert_hf_hdr(\"X-I: 1\\r\\n\", \"Call-ID\")")
        #expect(wire4.contains("X-I: 1\r\nCall-ID: a84b4c76e66710@pc33\r\n"))
    }

    @Test func bodies() throws {
        #expect(try evalValue("KSR.textops.has_body()") == "number:1")
        #expect(try evalValue("KSR.textops.has_body()", Msg.options()) == "number:-1")
        #expect(try evalValue("KSR.textops.has_body_type(\"application/sdp\")") == "number:1")
        #expect(try evalValue("KSR.textops.has_body_type(\"text/plain\")") == "number:-1")
        #expect(try evalValue("KSR.textops.has_body_type(\"text/plain\")", Msg2.multipart) == "number:1")
        let (r, wire) = try evalForward("KSR.textops.set_body(\"hello\", \"text/plain\")")
        #expect(r == "number:1")
        #expect(wire.contains("Content-Type: text/plain\r\n") && wire.hasSuffix("\r\n\r\nhello"))
        #expect(wire.contains("Content-Length: 5\r\n"))
        let (r2, wire2) = try evalForward("KSR.textops.filter_body(\"text/plain\")", Msg2.multipart)
        #expect(r2 == "number:1")
        #expect(wire2.hasSuffix("\r\n\r\nhello"))
        #expect(try evalValue("KSR.textops.filter_body(\"image/png\")", Msg2.multipart) == "number:-1")
        let (r3, h) = try eval("KSR.textops.get_body_part(\"application/sdp\", \"$var(p)\")", Msg2.multipart)
        #expect(r3 == "number:1")
        #expect(h.context.worker.vars["p"] == .string("v=0"))
        #expect(try evalValue("KSR.textops.get_body_part_raw(\"text/plain\", \"$var(p)\")", Msg2.multipart) == "number:1")
        #expect(try evalValue("KSR.textops.is_audio_on_hold()") == "number:-1")
    }

    @Test func multipartBuilding() throws {
        let (r, wire) = try evalForward("KSR.textops.append_body_part(\"hello\", \"text/plain\")",
                                        before: "KSR.textops.set_body_multipart_mode()")
        #expect(r == "number:1")
        #expect(wire.contains("Content-Type: multipart/mixed;boundary=\"unique-boundary-1\"\r\n"))
        #expect(!wire.contains("Content-Type: application/sdp\r\nContent-Length"))
        #expect(wire.hasSuffix("\r\n\r\n--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\r\n"
                               + "--unique-boundary-1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--unique-boundary-1--\r\n"))
        let (_, wire2) = try evalForward("KSR.textops.append_body_part_cd(\"x\", \"text/plain\", \"render\")",
                                         before: "KSR.textops.set_body_multipart_boundary(\"BB\")")
        #expect(wire2.contains("--BB\r\nContent-Type: text/plain\r\nContent-Disposition: render\r\n\r\nx\r\n--BB--\r\n"))
        let (_, wire3) = try evalForward("KSR.textops.append_body_part_hex(\"4869\", \"text/plain\")",
                                         before: "KSR.textops.set_body_multipart_content(\"a\", \"text/x\")")
        #expect(wire3.hasSuffix("--unique-boundary-1\r\nContent-Type: text/x\r\n\r\na\r\n--unique-boundary-1\r\nContent-Type: text/plain\r\n\r\nHi\r\n--unique-boundary-1--\r\n"))
        let (_, wire4) = try evalForward("KSR.textops.append_body_part_hex_cd(\"41\", \"text/y\", \"session\")",
                                         before: "KSR.textops.set_body_multipart(\"a\", \"text/x\", \"ZZ\")")
        #expect(wire4.hasSuffix("--ZZ\r\nContent-Type: text/y\r\nContent-Disposition: session\r\n\r\nA\r\n--ZZ--\r\n"))
        #expect(try evalValue("KSR.textops.append_body_part(\"x\", \"text/plain\")") == "number:-1")
        let (r5, wire5) = try evalForward("KSR.textops.remove_body_part(\"text/plain\")", Msg2.multipart)
        #expect(r5 == "number:1")
        #expect(!wire5.contains("hello") && wire5.contains("v=0") && wire5.hasSuffix("--XYZ--\r\n"))
        #expect(try evalValue("KSR.textops.remove_body_part(\"image/png\")", Msg2.multipart) == "number:-1")
    }

    @Test func setReplyBody() throws {
        let (r, h) = try eval("KSR.sl.sl_send_reply(200, \"OK\")", Msg.options(),
                              before: "KSR.textops.set_reply_body(\"hi\", \"text/plain\")")
        #expect(r == "number:1")
        let text = try #require(h.sender.sent.first?.text)
        #expect(text.contains("Content-Type: text/plain\r\n") && text.hasSuffix("\r\n\r\nhi"))
        let (r2, h2) = try eval("KSR.sl.sl_send_reply(200, \"OK\")", Msg.options(),
                                before: "KSR.textops.append_to_reply(\"X-R: 1\\r\\n\")")
        #expect(r2 == "number:1")
        #expect(h2.sender.sent.first?.text.contains("X-R: 1\r\n") == true)
    }

    @Test func privacy() throws {
        let m = Msg.options(extra: "Privacy: id; header\r\n")
        #expect(try evalValue("KSR.textops.is_privacy(\"id\")", m) == "number:1")
        #expect(try evalValue("KSR.textops.is_privacy(\"header\")", m) == "number:1")
        #expect(try evalValue("KSR.textops.is_privacy(\"user\")", m) == "number:-1")
    }
}

@Suite struct TextopsStringTests {
    @Test func compare() throws {
        #expect(try evalValue("KSR.textops.cmp_str(\"abc\", \"abc\")") == "number:1")
        #expect(try evalValue("KSR.textops.cmp_str(\"abd\", \"abc\")") == "number:-1")
        #expect(try evalValue("KSR.textops.cmp_str(\"abb\", \"abc\")") == "number:-2")
        #expect(try evalValue("KSR.textops.cmp_str(\"ABC\", \"abc\")") == "number:-2")
        #expect(try evalValue("KSR.textops.cmp_istr(\"ABC\", \"abc\")") == "number:1")
        #expect(try evalValue("KSR.textops.starts_with(\"abcdef\", \"abc\")") == "number:1")
        #expect(try evalValue("KSR.textops.starts_with(\"abcdef\", \"abd\")") == "number:-2")
        #expect(try evalValue("KSR.textops.ends_with(\"abcdef\", \"def\")") == "number:1")
        #expect(try evalValue("KSR.textops.ends_with(\"ab\", \"abc\")") == "number:-1")
    }

    @Test func find() throws {
        #expect(try evalValue("KSR.textops.str_find(\"hello\", \"llo\")") == "number:3")
        #expect(try evalValue("KSR.textops.str_find(\"hello\", \"h\")") == "number:1")
        #expect(try evalValue("KSR.textops.str_find(\"hello\", \"L\")") == "number:-1")
        #expect(try evalValue("KSR.textops.str_ifind(\"hello\", \"L\")") == "number:3")
    }

    @Test func lists() throws {
        #expect(try evalValue("KSR.textops.in_list(\"b\", \"a, b ,c\", \",\")") == "number:1")
        #expect(try evalValue("KSR.textops.in_list(\"d\", \"a,b,c\", \",\")") == "number:-1")
        #expect(try evalValue("KSR.textops.in_list_prefix(\"+4930\", \"+49;+33\", \";\")") == "number:1")
        #expect(try evalValue("KSR.textops.in_list_prefix(\"+4130\", \"+49;+33\", \";\")") == "number:-1")
    }
}

@Suite struct TextopsxTests {
    @Test func msgApplyChangesMakesEditsVisible() throws {
        #expect(try evalValue("KSR.hdr.is_present(\"X-New\")",
                              before: "KSR.hdr.append(\"X-New: 1\\r\\n\"); KSR.textopsx.msg_apply_changes()") == "number:1")
        #expect(try evalValue("KSR.pv.get(\"$hdr(X-New)\")",
                              before: "KSR.hdr.append(\"X-New: 1\\r\\n\"); KSR.textopsx.msg_apply_changes()") == "string:1")
        #expect(try evalValue("KSR.textopsx.msg_apply_changes()") == "number:1")
        // applied once: forwarding does not add the header twice
        let (_, wire) = try evalForward("KSR.textopsx.msg_apply_changes()", before: "KSR.hdr.append(\"X-New: 1\\r\\n\")")
        #expect(wire.components("X-New: 1") == 1)
    }

    @Test func changeReplyStatus() throws {
        let (r, h) = try eval("KSR.textopsx.change_reply_status(183, \"Progress\")", Msg.ringing)
        #expect(r == "number:1")
        #expect(h.sender.sent.first?.text.hasPrefix("SIP/2.0 183 Progress\r\n") == true)
        #expect(try evalValue("KSR.textopsx.change_reply_status(200, \"OK\")", Msg.ringing) == "number:-1")
        #expect(try evalValue("KSR.textopsx.change_reply_status(200, \"OK\")") == "number:-1")
    }

    @Test func removeBodyAndKeepHeaders() throws {
        let (r, wire) = try evalForward("KSR.textopsx.remove_body()")
        #expect(r == "number:1")
        #expect(wire.hasSuffix("Content-Length: 0\r\n\r\n"))
        let (r2, wire2) = try evalForward("KSR.textopsx.keep_hf(\"^user-agent$\")")
        #expect(r2 == "number:1")
        #expect(!wire2.contains("X-Multi") && wire2.contains("User-Agent") && wire2.contains("Call-ID"))
    }

    @Test func fnmatch() throws {
        #expect(try evalValue("KSR.textopsx.fnmatch(\"alice.txt\", \"*.txt\")") == "number:1")
        #expect(try evalValue("KSR.textopsx.fnmatch(\"alice.doc\", \"*.txt\")") == "number:-1")
        #expect(try evalValue("KSR.textopsx.fnmatch_ex(\"A.TXT\", \"*.txt\", \"i\")") == "number:1")
    }
}

extension String {
    func components(_ needle: String) -> Int {
        var n = 0
        var rest = self[...]
        while let r = rest.firstRange(of: needle) { n += 1; rest = rest[r.upperBound...] }
        return n
    }
}

/// REFERENCE §6 surprises, through the message-level API.
@Suite struct SurpriseTests {
    @Test func minusOneIsTruthy() throws {
        #expect(try evalValue("(KSR.textops.search(\"nomatch\") and \"truthy\" or \"falsy\")") == "string:truthy")
        #expect(try evalValue("(KSR.siputils.has_totag() > 0) and \"yes\" or \"no\"") == "string:no")
    }

    @Test func wrongArityGivesFalse() throws {
        #expect(try evalValue("KSR.textops.cmp_str(\"a\")") == "boolean:false")
        #expect(try evalValue("KSR.kx.ifdef()") == "boolean:false")
        #expect(try evalValue("KSR.siputils.cmp_uri()") == "boolean:false")
    }

    @Test func removeReturnsOneWithoutMatch() throws {
        #expect(try evalValue("KSR.hdr.remove(\"X-Nothing\")") == "number:1")
        #expect(try evalValue("KSR.textops.remove_hf(\"X-Nothing\")") == "number:1")
    }

    @Test func regexAnchorsPerLine() throws {
        // REG_NEWLINE: ^ and $ match at every line of the message; $ is before the LF, so the CR of
        // the CRLF is still in front of it (as in Kamailio)
        #expect(try evalValue("KSR.textops.search(\"^CSeq: 314159 INVITE$\")") == "number:-1")
        #expect(try evalValue("KSR.textops.search(\"^CSeq: 314159 INVITE.$\")") == "number:1")
        // . does not cross lines
        #expect(try evalValue("KSR.textops.search(\"Max-Forwards.*Bob\")") == "number:-1")
    }
}
