import Testing
import StarlingKEMI
import KSRModules

/// Every function of Kamailio 5.6.3 (the unmarked rows of REFERENCE §2) in the message-level groups,
/// transcribed from the reference. A name missing from Starling's export tables fails the test.
enum Kamailio56 {
    static let core: [String] = [
        "dbg", "info", "notice", "warn", "err", "crit", "log", "set_drop",
        "is_myself", "is_myself_ruri", "is_myself_duri", "is_myself_nhuri", "is_myself_furi", "is_myself_turi",
        "is_myself_suri", "is_myself_srcip",
        "setflag", "resetflag", "isflagset", "setbflag", "resetbflag", "isbflagset",
        "setbiflag", "resetbiflag", "isbiflagset", "setsflag", "resetsflag", "issflagset",
        "seturi", "setuser", "sethost", "setdsturi", "resetdsturi", "isdsturiset", "force_rport", "add_local_rport",
        "is_method", "is_method_in",
        "is_INVITE", "is_ACK", "is_BYE", "is_CANCEL", "is_REGISTER", "is_OPTIONS", "is_SUBSCRIBE", "is_PUBLISH",
        "is_NOTIFY", "is_REFER", "is_INFO", "is_UPDATE", "is_PRACK", "is_MESSAGE", "is_KDMQ", "is_GET", "is_POST",
        "is_PUT", "is_DELETE",
        "is_UDP", "is_TCP", "is_TLS", "is_WS", "is_WSS", "is_WSX", "is_SCTP", "is_proto", "is_IPv4", "is_IPv6",
        "to_UDP", "to_TCP", "to_TLS", "to_SCTP", "to_WS", "to_WSS", "to_WSX", "to_IPv4", "to_IPv6",
        "is_src_port", "is_dst_port", "forward", "forward_uri",
        "set_forward_close", "set_forward_no_connect", "set_reply_close", "set_reply_no_connect",
        "set_advertised_address", "set_advertised_port", "add_tcp_alias", "add_tcp_alias_via", "get_debug", "route",
    ]
    static let pv = ["get", "gete", "getw", "getvs", "getvn", "geti", "sets", "seti", "unset", "is_null"]
    static let hdr = [
        "append", "append_after", "insert", "insert_before", "remove", "rmappend", "rminsert", "is_present",
        "append_to_reply", "get", "gete", "getw", "get_idx", "gete_idx", "getw_idx", "match_content",
    ]
    static let xlog = ["xdbg", "xinfo", "xnotice", "xwarn", "xerr", "xalert", "xcrit", "xlog"]
    static let kx: [String] = {
        var l = ["get_ruri", "get_ouri", "get_furi", "get_turi", "get_nhuri", "get_srcuri"]
        for x in ["ruser", "rhost", "fuser", "fhost", "tuser", "thost", "duri", "cturi", "au"] {
            l += ["get_\(x)", "gete_\(x)", "getw_\(x)"]
        }
        l += ["get_srcip", "get_srcport", "get_srcaddr_sock", "get_rcvip", "get_rcvport", "get_rcv_sock_name",
              "get_rcvadvip", "get_rcvadvport", "get_rcvaddr_sock", "get_send_sock", "get_send_sock_name", "get_proto",
              "get_send_sock_port", "get_protoid", "get_conid"]
        l += ["get_method", "get_status", "gets_status", "get_ua", "gete_ua", "getw_ua", "get_callid",
              "get_body", "gete_body", "getw_body", "get_bodylen", "get_msglen", "get_msgtype", "get_timestamp",
              "get_msgbuf"]
        l += ["get_def", "get_defn", "ifdef", "ifndef", "get_env", "get_envn"]
        return l
    }()
    static let corex = [
        "has_ruri_user", "has_user_agent", "append_branch", "append_branch_uri", "append_branch_uri_q", "setxflag",
        "resetxflag", "isxflagset", "set_send_socket", "set_send_socket_name", "set_recv_socket",
        "set_recv_socket_name", "set_source_address", "via_add_srvid", "via_add_xavp_params", "via_use_xavp_fields",
        "send_data", "sendx", "is_faked_msg", "file_read", "file_write", "is_socket_name",
    ]
    static let siputils = [
        "has_totag", "is_request", "is_reply", "is_first_hop", "is_first_hop_mode", "is_uri", "is_user",
        "is_tel_number", "is_numeric", "is_alphanum", "is_alphanumex", "uri_param", "uri_param_value",
        "uri_param_any", "uri_param_rm", "add_uri_param", "options_reply", "encode_contact", "decode_contact",
        "decode_contact_header", "contact_param_encode", "contact_param_decode", "contact_param_decode_ruri",
        "contact_param_rm", "hdr_date_check", "cmp_uri", "cmp_aor", "cmp_hdr_name", "is_gruu",
    ]
    static let textops = [
        "search", "search_body", "search_hf", "search_str", "search_append", "search_append_body", "is_present_hf",
        "is_present_hf_re", "subst", "subst_uri", "subst_user", "subst_body", "subst_hf", "remove_hf",
        "remove_hf_re", "remove_hf_idx", "remove_hf_exp", "remove_hf_match", "replace", "replace_all",
        "replace_body", "replace_body_all", "replace_body_atonce", "replace_hdrs", "replace_str",
        "replace_body_str", "replace_hdrs_str", "set_body", "set_reply_body", "has_body", "has_body_type",
        "filter_body", "is_privacy", "is_audio_on_hold", "in_list", "in_list_prefix", "cmp_str", "cmp_istr",
        "starts_with", "ends_with", "str_find", "str_ifind", "set_body_multipart_mode",
        "set_body_multipart_boundary", "set_body_multipart_content", "set_body_multipart", "append_body_part",
        "append_body_part_cd", "append_body_part_hex", "append_body_part_hex_cd", "remove_body_part",
        "get_body_part", "get_body_part_raw", "regex_substring",
    ]
    static let sl = ["sl_send_reply", "send_reply", "send_reply_mode", "sl_reply_error", "sl_forward_reply"]
    static let maxfwd = ["process_maxfwd", "is_maxfwd_lt"]
    static let sanity = ["sanity_check", "sanity_check_defaults", "sanity_reply"]
    static let tm = [
        "t_relay", "t_relay_to_proxy", "t_relay_to_flags", "t_relay_to_proxy_flags", "t_relay_to_proto",
        "t_relay_to_proto_addr", "t_on_failure", "t_on_branch", "t_on_branch_failure", "t_on_reply", "t_is_set",
        "t_check_trans", "t_newtran", "t_reply", "t_send_reply", "t_lookup_request", "t_lookup_cancel",
        "t_lookup_cancel_flags", "t_retransmit_reply", "t_release", "t_clean", "t_is_canceled", "t_is_expired",
        "t_any_timeout", "t_any_replied", "t_is_retr_async_reply", "t_branch_timeout", "t_branch_replied",
        "t_check_status", "t_grep_status", "t_get_status_code", "t_get_branch_index", "t_set_fr", "t_set_fr_inv",
        "t_reset_fr", "t_set_max_lifetime", "t_reset_max_lifetime", "t_set_retr", "t_reset_retr",
        "t_set_auto_inv_100", "t_set_disable_6xx", "t_set_disable_failover", "t_set_no_e2e_cancel_reason",
        "t_set_disable_internal_reply", "t_replicate", "t_uac_send", "t_load_contacts", "ki_t_load_contacts_mode",
        "t_next_contacts", "t_next_contact_flow", "t_drop_replies_all", "t_drop_replies", "t_use_uac_headers",
        "t_save_lumps",
    ]
    static let tmx = [
        "t_precheck_trans", "t_is_request_route", "t_is_reply_route", "t_is_failure_route", "t_is_branch_route",
        "t_suspend", "t_continue", "t_flush_flags", "t_flush_xflags", "t_cancel_branches", "t_reuse_branch",
        "t_cancel_callid", "t_cancel_callid_reason", "t_reply_callid", "t_drop", "t_drop_rcode",
    ]

    static let httpClient = ["query", "query_post", "query_post_hdrs", "get_hdrs", "curl_connect", "curl_connect_post"]
    static let enumGroup = [
        "enum_query", "enum_query_suffix", "enum_query_suffix_service", "enum_pv_query", "enum_pv_query_suffix",
        "enum_pv_query_suffix_service", "is_from_user_enum", "is_from_user_enum_suffix",
        "is_from_user_enum_suffix_service", "i_enum_query", "enum_i_query_suffix", "i_enum_query_suffix_service",
    ]

    static let uac = [
        "uac_replace_from", "uac_replace_to", "uac_replace_from_uri", "uac_replace_to_uri", "uac_restore_from",
        "uac_restore_to", "uac_auth", "uac_auth_mode", "uac_req_send", "uac_reg_lookup", "uac_reg_lookup_uri",
        "uac_reg_status", "uac_reg_request_to", "uac_reg_enable", "uac_reg_disable", "uac_reg_refresh",
    ]
    static let htable = [
        "sht_get", "sht_gete", "sht_getw", "sht_sets", "sht_seti", "sht_setxs", "sht_setxi", "sht_setex", "sht_inc",
        "sht_dec", "sht_rm", "sht_rm_name_re", "sht_rm_value_re", "sht_rm_name", "sht_rm_value", "sht_match_name",
        "sht_match_str_value", "sht_is_null", "sht_reset", "sht_lock", "sht_unlock", "sht_iterator_start",
        "sht_iterator_next", "sht_iterator_end", "sht_iterator_rm", "sht_iterator_sets", "sht_iterator_seti",
        "sht_iterator_setex",
    ]
    static let pike = ["pike_check_req", "pike_check_ip"]
    static let permissions = [
        "allow_source_address", "allow_address", "allow_source_address_group", "allow_address_group", "allow_trusted",
    ]
    static let nathelper = [
        "nat_uac_test", "fix_nated_contact", "fix_nated_register", "set_contact_alias", "set_contact_alias_trim",
        "add_contact_alias", "add_contact_alias_addr", "handle_ruri_alias", "handle_ruri_alias_mode", "is_rfc1918",
        "add_rcv_param", "fix_nated_sdp", "fix_nated_sdp_ip", "set_alias_to_pv",
    ]

    static let dispatcher = [
        "ds_select_dst", "ds_select_domain", "ds_select", "ds_select_limit", "ds_select_dst_limit",
        "ds_select_domain_limit", "ds_select_routes", "ds_select_routes_limit", "ds_next_dst", "ds_next_domain",
        "ds_set_dst", "ds_set_domain", "ds_mark_dst", "ds_mark_dst_state", "ds_is_from_lists", "ds_is_from_list",
        "ds_is_from_list_mode", "ds_is_from_list_uri", "ds_list_exists", "ds_is_active", "ds_is_active_uri",
        "ds_load_update", "ds_load_unset", "ds_reload",
    ]

    /// (module, functions, count given by the reference's "(HEAD / 5.6)" heading).
    static let registrar = [
        "save", "save_uri", "lookup", "lookup_uri", "lookup_to_dset", "lookup_branches", "registered",
        "registered_uri", "registered_flags", "registered_action", "unregister", "unregister_ruid", "set_q_override",
        "add_sock_hdr", "reg_send_reply", "reg_fetch_contacts", "reg_free_contacts",
    ]
    /// rtpengine: REFERENCE §2.21, the 5.6 row (30 functions).
    static let rtpengine: [String] = {
        var l: [String] = []
        for f in ["rtpengine_manage", "rtpengine_offer", "rtpengine_answer", "rtpengine_delete", "rtpengine_query",
                  "block_media", "unblock_media", "silence_media", "unsilence_media", "block_dtmf", "unblock_dtmf", "stop_media"] {
            l += [f + "0", f]
        }
        return l + ["rtpengine_query_v", "start_recording", "stop_recording", "play_media", "set_rtpengine_set", "set_rtpengine_set2"]
    }()
    /// async and http_async_client: Kamailio 5.6.6's sr_kemi_t tables (issue 18; not in REFERENCE §2).
    static let async = ["route", "ms_route", "task_route", "task_group_route", "task_data", "task_group_data",
                        "get_gname", "get_data"]
    static let httpAsyncClient = ["query"]
    static let groups: [(String, [String], Int)] = [
        ("", core, 90), ("pv", pv, 10), ("hdr", hdr, 16), ("xlog", xlog, 8), ("kx", kx, 69), ("corex", corex, 22),
        ("siputils", siputils, 29), ("textops", textops, 54), ("sl", sl, 5), ("maxfwd", maxfwd, 2), ("sanity", sanity, 3),
        ("tm", tm, 54), ("tmx", tmx, 16), ("htable", htable, 28), ("pike", pike, 2), ("permissions", permissions, 5),
        ("nathelper", nathelper, 14), ("registrar", registrar, 17), ("http_client", httpClient, 6), ("enum", enumGroup, 12),
        ("uac", uac, 16), ("dispatcher", dispatcher, 24), ("rtpengine", rtpengine, 30),
        ("async", async, 8), ("http_async_client", httpAsyncClient, 1),
    ]
}

@Suite struct CompletenessTests {
    @Test func transcriptionMatchesTheReferenceCounts() {
        for (module, names, count) in Kamailio56.groups {
            #expect(names.count == count, "group '\(module)': \(names.count) names transcribed, reference says \(count)")
            #expect(Set(names).count == names.count, "group '\(module)' has duplicates")
        }
    }

    @Test func every56FunctionIsExported() {
        let exported = Set(KSRModules.exports().map { "\($0.module).\($0.name)" })
        var missing: [String] = []
        for (module, names, _) in Kamailio56.groups {
            for n in names where !exported.contains("\(module).\(n)") {
                missing.append(module.isEmpty ? "KSR.\(n)" : "KSR.\(module).\(n)")
            }
        }
        #expect(missing.isEmpty, "missing from the export tables: \(missing.joined(separator: ", "))")
    }

    @Test func everyModuleIsAvailable() {
        for (module, _, _) in Kamailio56.groups where !module.isEmpty && !KemiRegistry.alwaysLoaded.contains(module) {
            #expect(KSRModules.tableNames(KSRModules.available).contains(module), "KSR.\(module) belongs to no registered module")
        }
    }

    @Test func noDuplicateExports() {
        var seen: Set<String> = []
        for e in KSRModules.exports() {
            #expect(!seen.contains(e.qualifiedName), "\(e.qualifiedName) exported twice")
            seen.insert(e.qualifiedName)
        }
    }
}
