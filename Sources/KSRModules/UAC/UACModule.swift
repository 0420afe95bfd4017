import StarlingKEMI

/// `KSR.uac` (REFERENCE §2.8): authentication of relayed requests (UACAuth.swift), requests of the
/// proxy's own (`$uac_req` + `uac_req_send`, UACRequest.swift), From/To replacement with rr-param
/// restore (UACReplace.swift). What is missing is listed in docs/UAC.md.
enum UACModule {
    static func exports(_ config: ModuleConfiguration) -> [KemiExport] {
        let req = UACRequest.Settings(config)
        return UACAuth.exports(config) + UACReplace.exports(config) + [
            KemiExport("uac", "uac_req_send", returns: .int) { ctx, _ in .int(UACRequest.send(ctx, req)) },
        ]
    }
}
