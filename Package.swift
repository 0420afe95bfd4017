// swift-tools-version:6.1
import PackageDescription

/// Upcoming features every Swift target uses (see ../shared/STYLE.md).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// Targets on the per-message path drop dynamic exclusivity checks in release builds: the route context
/// and parse state are owned by one worker thread, and the checks cost about a tenth of a KSR call.
let hotPathSettings: [SwiftSetting] = swiftSettings + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

/// SIPTransport imports both Glibc and c-ares, whose headers both pull in <netinet/in.h>; which module
/// then "defines" `in_addr` differs between debug and release builds, and MemberImportVisibility turns
/// that into an error. The other two features stay on. The UDP batches are on the per-message path
/// (each worker owns its own): no dynamic exclusivity checks in release builds, as `hotPathSettings`.
let transportSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "Starling",
    products: [
        .executable(name: "starling", targets: ["starling"]),
        .library(name: "SIPCore", targets: ["SIPCore"]),
        .library(name: "SIPTransaction", targets: ["SIPTransaction"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries and shims
        .systemLibrary(
            name: "CLua", path: "Sources/CLua", pkgConfig: "lua5.4",
            providers: [.apt(["liblua5.4-dev", "pkg-config"])]),
        .target(name: "CLuaShim", dependencies: ["CLua"]),
        .target(name: "CStarlingSystem", path: "Sources/CSystem"),
        .systemLibrary(
            name: "CAres", path: "Sources/CAres", pkgConfig: "libcares",
            providers: [.apt(["libc-ares-dev", "pkg-config"])]),
        .systemLibrary(
            name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev", "pkg-config"])]),
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev", "pkg-config"])]),
        .systemLibrary(
            name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev", "pkg-config"])]),

        // SIP messages: parse, edit, serialise. No I/O.
        .target(name: "SIPCore", swiftSettings: swiftSettings),
        // RFC 3261 §17 transactions: the four state machines, timers, matching keys, the sharded table. No I/O.
        .target(name: "SIPTransaction", dependencies: ["SIPCore"], swiftSettings: swiftSettings),
        // Sockets (UDP workers' recvmmsg/sendmmsg), addresses, resolver.
        .target(
            name: "SIPTransport", dependencies: ["SIPCore", "CStarlingSystem", "CAres"], swiftSettings: transportSettings),
        // Stream transports (TCP, TLS, WebSocket) on SwiftNIO: listeners, framing, the connection table.
        // Received messages are handed to the worker threads; NIO's event loops never run a script.
        .target(
            name: "SIPStreams",
            dependencies: [
                "SIPCore", "SIPTransport", "CStarlingSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            // A worker's StreamOutbox is read on every pass of its loop.
            swiftSettings: hotPathSettings),
        // Diameter (RFC 6733): message and AVP codec, dictionary, the peer state machine. No I/O.
        .target(name: "Diameter", swiftSettings: hotPathSettings),
        // The Diameter node on SwiftNIO: listeners, peer connections, the relay and its pending table.
        .target(
            name: "DiameterNode",
            dependencies: [
                "Diameter", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings),
        // Engine-agnostic export tables and the per-message route context.
        .target(
            name: "StarlingKEMI",
            dependencies: ["SIPCore", "SIPTransport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: hotPathSettings),
        // The Lua host: states, the generic KSR marshaller, script loading.
        .target(
            name: "StarlingLua", dependencies: ["CLua", "CLuaShim", "StarlingKEMI", "SIPCore"],
            swiftSettings: hotPathSettings),
        // A blocking Redis client over hiredis: one connection per thread, argv commands, reply model,
        // reconnect, reply size limit, pub/sub reader (issue 19: ndb_redis, usrloc and htable on Redis).
        .target(name: "StarlingRedis", dependencies: ["CHiredis"], swiftSettings: swiftSettings),
        // Kamailio modules: KSR.*, pv, hdr, sl, maxfwd, sanity, ...
        .target(
            name: "KSRModules",
            dependencies: [
                "StarlingKEMI", "SIPCore", "SIPTransport", "SIPTransaction", "CStarlingSystem", "CCrypto", "CCurl",
                "StarlingRedis", "Diameter", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPathSettings),
        // The embedded SQLite database (GRDB): usrloc persistence and the subscriber table, behind
        // protocols KSRModules declares (KSRModules itself never imports GRDB).
        .target(
            name: "StarlingStore",
            dependencies: [
                "KSRModules", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings),
        // Configuration, workers, reload, lifecycle.
        .target(
            name: "StarlingServer",
            dependencies: [
                "SIPCore", "SIPTransport", "SIPStreams", "StarlingKEMI", "StarlingLua", "KSRModules", "StarlingStore", "CStarlingSystem",
                "Diameter", "DiameterNode", "SIPTransaction",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: hotPathSettings),
        // The HTTP control listener: JSON-RPC (Kamailio method names) and Prometheus /metrics.
        .target(
            name: "StarlingControl",
            dependencies: [
                "StarlingServer", "Diameter", "StarlingLua", "StarlingKEMI", "KSRModules", "SIPTransport", "SIPStreams",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        // Offline harness: the real engine and KSR functions with a recording network.
        .target(
            name: "StarlingTesting",
            dependencies: ["SIPCore", "SIPTransport", "StarlingKEMI", "StarlingLua", "KSRModules", "StarlingServer",
                           "CLua", "CLuaShim", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "starling",
            dependencies: [
                "SIPCore", "StarlingServer", "StarlingControl", "KSRModules", "StarlingTesting", "StarlingStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings,
            // Linked by lld with packed relative relocations (DT_RELR, glibc >= 2.36): the 110,000
            // relocations of a static-stdlib PIE take 22 KB instead of 2.6 MB, which every process kept
            // resident after start-up (docs/Performance.md).
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                                          .when(platforms: [.linux]))]),
        .executableTarget(name: "starling-bench", dependencies: ["SIPCore", "StarlingTesting", "KSRModules"], swiftSettings: swiftSettings),

        // Helpers shared by the test targets that start processes: the port allocator (one per test
        // process), readiness checks, the helper-process spawner.
        .target(name: "StarlingTestSupport", path: "Tests/StarlingTestSupport", swiftSettings: swiftSettings),

        .testTarget(
            name: "SIPCoreTests", dependencies: ["SIPCore"],
            resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(name: "DiameterTests", dependencies: ["Diameter"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPTransactionTests", dependencies: ["SIPTransaction", "SIPCore"], swiftSettings: swiftSettings),
        .testTarget(name: "SIPTransportTests", dependencies: ["SIPTransport", "StarlingTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SIPStreamsTests",
            dependencies: ["SIPStreams", "SIPCore", "SIPTransport", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOEmbedded", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "StarlingLuaTests", dependencies: ["StarlingLua", "StarlingKEMI", "SIPCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "KSRModulesTests",
            dependencies: ["KSRModules", "StarlingLua", "StarlingKEMI", "SIPCore", "SIPTransport", "StarlingTesting",
                           "SIPTransaction", "StarlingTestSupport", "StarlingStore", "StarlingRedis", "StarlingServer"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "StarlingStoreTests",
            dependencies: ["StarlingStore", "KSRModules", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "StarlingServerTests",
            dependencies: ["StarlingServer", "StarlingControl", "StarlingTesting", "SIPCore", "SIPTransport", "KSRModules", "SIPStreams",
                           "StarlingTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "StarlingTestingTests", dependencies: ["StarlingTesting", "KSRModules", "StarlingKEMI"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "StarlingIntegrationTests", dependencies: ["SIPCore", "StarlingTestSupport"],
            // Scenarios (SIPp XML) and Tools (Python) are found through #filePath, not bundled.
            exclude: ["Scenarios", "Tools", "README.md"],
            resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
    ]
)
