// swift-tools-version:6.0
import PackageDescription

// Dependencies point one way:
//   TensorEngine <- Backbones <- RSTPM <- InspectionDaemon / CLIs
//   Checkpoints (file formats) and Imaging (pixels) stand alone below them, on OperatorErrors.
let optimized: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
// The shipped binaries carry the Swift runtime and Foundation, so that the .deb runs where no
// Swift toolchain is installed (scripts/package.sh). Only the link is static (the modules are
// compiled as usual), so Foundation's own static dependencies, which the dynamic libFoundation
// would bring, are named here, grouped because they refer to one another.
let staticSwiftRuntime: [LinkerSetting] = [
    .unsafeFlags([
        "-static-stdlib", "-Xlinker", "--start-group",
        "-lFoundation", "-lFoundationInternationalization", "-lFoundationEssentials", "-lCoreFoundation",
        "-l_FoundationICU", "-l_FoundationCShims", "-l_FoundationCollections", "-lswiftSynchronization",
        "-Xlinker", "--end-group",
    ], .when(platforms: [.linux])),
]

let package = Package(
    name: "rstpm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rstpm", targets: ["RSTPMCLI"]),
        .executable(name: "rstpmd", targets: ["RSTPMDaemon"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
    ],
    targets: [
        // C libraries of the system.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CSystemd", path: "Sources/CSystemd"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(
            name: "CImageCodecs",
            path: "Sources/CImageCodecs",
            linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg"), .linkedLibrary("deflate"), .linkedLibrary("tiff")]
        ),

        // The release number and git commit (--version, verdicts, model manifests).
        .target(name: "BuildInfo", plugins: ["GitCommitPlugin"]),
        .plugin(name: "GitCommitPlugin", capability: .buildTool()),

        // The one operator-facing error: a typed kind, and {path, problem, hint} for the operator.
        .target(name: "OperatorErrors"),
        // The one seeded generator (SplitMix64), below everything that draws random numbers.
        .target(name: "SeededRandom"),

        // Numeric core: AVX-512 kernels (chosen at run time) beside OpenBLAS.
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "TensorEngine", dependencies: ["CBLAS", "CKernels", "OperatorErrors", "SeededRandom"], swiftSettings: optimized),
        // Timing helpers for `rstpm bench engine` (a 3x3 convolution, the engine's sgemm against OpenBLAS).
        .target(name: "EngineBench", dependencies: ["CBLAS", "TensorEngine"], swiftSettings: optimized),
        .target(name: "Checkpoints", dependencies: ["CZlib", "OperatorErrors", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: optimized),
        .target(name: "Backbones", dependencies: ["TensorEngine", "Checkpoints", "OperatorErrors"], swiftSettings: optimized),

        // Pixels in and out.
        .target(name: "Imaging", dependencies: ["CImageCodecs", "OperatorErrors"], swiftSettings: optimized),
        // Developer harness: imaging benchmark, corrupted-file fuzzing, sample heatmaps.
        .executableTarget(name: "ImagingBench", dependencies: ["Imaging", "OperatorErrors", "SeededRandom"], swiftSettings: optimized),

        // The method, its evaluation, and the programs around it.
        .target(
            name: "RSTPM",
            dependencies: ["TensorEngine", "Checkpoints", "Backbones", "Imaging", "Evaluation", "OperatorErrors", "BuildInfo", "SeededRandom", .product(name: "Logging", package: "swift-log")],
            swiftSettings: optimized
        ),
        // Procedural fabric photos for `rstpm demo` and `demo-data` (not part of the method).
        .target(name: "DemoProducts", dependencies: ["Imaging", "OperatorErrors", "SeededRandom"], swiftSettings: optimized),
        .target(name: "Evaluation", dependencies: ["Imaging", "OperatorErrors"], swiftSettings: optimized),
        .target(name: "Systemd", dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")]),
        // Below the daemon and learning: the file-system layer (Syscalls, FileOperations) and the journal events.
        .target(
            name: "DaemonSupport",
            dependencies: [.product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")]
        ),
        // Retraining on accepted images: training store, schedule, trainer child, gate, model store.
        .target(
            name: "ContinuousLearning",
            dependencies: [
                "Checkpoints", "Evaluation", "OperatorErrors", "DaemonSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "InspectionDaemon",
            dependencies: [
                "RSTPM", "TensorEngine", "Checkpoints", "Imaging", "Systemd", "ContinuousLearning", "DaemonSupport", "OperatorErrors", "BuildInfo",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The review station: a local web app over the lines' verdicts, feeding accepted/ and defects/.
        .target(
            name: "Review",
            dependencies: [
                "InspectionDaemon", "ContinuousLearning", "DaemonSupport", "OperatorErrors", "Checkpoints",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "RSTPMCLI",
            dependencies: [
                "TensorEngine", "EngineBench", "Checkpoints", "Backbones", "Imaging", "RSTPM", "DemoProducts", "Evaluation",
                "ContinuousLearning", "InspectionDaemon", "DaemonSupport", "OperatorErrors", "BuildInfo", "Review",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            linkerSettings: staticSwiftRuntime
        ),
        .executableTarget(
            name: "RSTPMDaemon",
            dependencies: [
                "InspectionDaemon", "Systemd", "Backbones", "BuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            linkerSettings: staticSwiftRuntime
        ),

        // Test-only helpers: fixture files, paths to ../shared, tolerances, the adversarial corpus.
        .target(name: "TestSupport", dependencies: ["SeededRandom", .product(name: "Logging", package: "swift-log")], path: "Sources/TestSupport"),
        // Writes the adversarial corpus to a folder for manual runs (scripts/adversarial-corpus.sh).
        .executableTarget(name: "AdversarialCorpusWriter", dependencies: ["TestSupport"]),
        // forEachKernelSet: numeric tests run under every kernel set (AVX-512, AVX2, generic).
        .target(name: "KernelSetTesting", dependencies: ["TensorEngine"], path: "Sources/KernelSetTesting"),
        .testTarget(name: "TensorEngineTests", dependencies: ["TensorEngine", "CKernels", "EngineBench", "KernelSetTesting", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "OperatorErrors", "TestSupport"]),
        .testTarget(name: "BackbonesTests", dependencies: ["Backbones", "TensorEngine", "KernelSetTesting", "Checkpoints", "Imaging", "OperatorErrors", "RSTPM", "TestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "CImageCodecs", "OperatorErrors", "TestSupport"]),
        .testTarget(name: "RSTPMTests", dependencies: ["RSTPM", "Backbones", "KernelSetTesting", "DemoProducts", "SeededRandom", "TensorEngine", "Imaging", "Evaluation", "OperatorErrors", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Imaging", "OperatorErrors", "TestSupport"]),
        .testTarget(name: "InspectionDaemonTests", dependencies: [
            "InspectionDaemon", "RSTPM", "TensorEngine", "DaemonSupport", "Checkpoints", "Evaluation", "Imaging", "Systemd", "BuildInfo", "TestSupport",
            .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system"),
        ]),
        .testTarget(name: "ContinuousLearningTests", dependencies: [
            "ContinuousLearning", "Checkpoints", "InspectionDaemon", "TestSupport",
            .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system"),
        ]),
        .testTarget(name: "ReviewTests", dependencies: [
            "InspectionDaemon", "ContinuousLearning", "TestSupport",
            .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
