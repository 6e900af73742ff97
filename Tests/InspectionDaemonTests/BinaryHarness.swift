import Foundation
import SystemPackage
import TestSupport
import XCTest

/// The real `rstpm` and `rstpmd` executables of `swift build -c release`, and one tiny model
/// (64x64 input, Lite0 + Lite2 teachers, one epoch per phase on eight bottle images) trained
/// with `rstpm train` once per test process and shared by the binary and crash tests.
enum BinaryHarness {
    static let buildDirectory = TestPaths.repositoryRoot.appendingPathComponent(".build/release")
    static let daemonBinary = buildDirectory.appendingPathComponent("rstpmd")
    static let cliBinary = buildDirectory.appendingPathComponent("rstpm")
    static let bottle = TestPaths.sharedDatasets.appendingPathComponent("mvtec_ad/bottle")
    static let fullResolutionBottle = TestPaths.sharedDatasets.appendingPathComponent("fullres/bottle")

    private static let lock = NSLock()
    private static var trained: Result<URL, Error>?

    /// The tiny model bundle, training it on first use; skips the test when the binaries, the
    /// teachers' weights or the bottle images are missing.
    static func tinyModel() throws -> URL {
        for binary in [daemonBinary, cliBinary] where !FileManager.default.isExecutableFile(atPath: binary.path) {
            throw XCTSkip("\(binary.path) missing: run swift build -c release first")
        }
        for file in ["efficientnet-lite0-57934424.pth", "efficientnet-lite2-9656183e.pth"]
        where !FileManager.default.fileExists(atPath: TestPaths.weightsDirectory.appendingPathComponent(file).path) {
            throw XCTSkip("teacher weights missing in \(TestPaths.weightsDirectory.path) (rstpm weights fetch)")
        }
        guard FileManager.default.fileExists(atPath: bottle.path) else { throw XCTSkip("\(bottle.path) missing") }
        lock.lock(); defer { lock.unlock() }
        if trained == nil { trained = Result { try train() } }
        return try trained!.get()
    }

    private static func train() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpmd-tiny-model-\(UUID().uuidString.prefix(8))")
        let images = root.appendingPathComponent("good")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for index in 0..<8 {
            let name = String(format: "%03d.png", index)
            try FileManager.default.copyItem(at: bottle.appendingPathComponent("train/good/\(name)"), to: images.appendingPathComponent(name))
        }
        let configuration = root.appendingPathComponent("config.json")
        try Data(#"{"inputWidth": 64, "inputHeight": 64, "batchSize": 4, "validationFraction": 0.25}"#.utf8).write(to: configuration)
        let model = root.appendingPathComponent("model")
        let (status, output) = try Tools.run(cliBinary, ["train", "--data", images.path, "--out", model.path, "--config", configuration.path,
                                                       "--epochs", "1,1", "--weights-dir", TestPaths.weightsDirectory.path])
        guard status == 0 else { throw HarnessError("rstpm train failed (\(status)): \(output)") }
        return model
    }

    /// A one-line configuration on `folders` with the given model.
    static func writeConfiguration(_ folders: LineFolders, model: URL, settleSeconds: Double = 0.3, batchSize: Int = 4, extra: String = "") throws -> FilePath {
        let yaml = """
        instance: test-host
        metrics_file: \(folders.path("metrics/rstpmd.prom"))
        drain_timeout_seconds: 20
        lines:
          - name: line-1
            inbox: \(folders.path("inbox"))
            work: \(folders.path("work"))
            outbox: \(folders.path("outbox"))
            archive: \(folders.path("archive"))
            quarantine: \(folders.path("quarantine"))
            model: \(model.path)
            poll_interval_seconds: 0.1
            settle_interval_seconds: \(settleSeconds)
            batch_size: \(batchSize)
        \(extra)
        """
        try folders.write(Array(yaml.utf8), to: "rstpmd.yaml")
        return folders.path("rstpmd.yaml")
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` pass.
    @discardableResult
    static func wait(seconds: Double, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    /// Drops `bytes` into the inbox as a finished upload does: written under a temporary name,
    /// then renamed.
    static func drop(_ bytes: Data, as name: String, into folders: LineFolders) throws {
        let temporary = folders.root.appendingPathComponent("inbox/.\(UUID().uuidString.prefix(8)).part")
        try bytes.write(to: temporary)
        guard rename(temporary.path, folders.root.appendingPathComponent("inbox/\(name)").path) == 0 else {
            throw HarnessError("rename into the inbox failed: errno \(errno)")
        }
    }

    /// The verdict `<name>.json` in the outbox, parsed; nil while absent.
    static func verdict(_ name: String, in folders: LineFolders) -> [String: Any]? {
        guard let data = try? Data(contentsOf: folders.root.appendingPathComponent("outbox/\(name).json")) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One running `rstpmd`, its errors going to a log file in the test's folders.
final class DaemonProcess {
    let process = Process()
    let log: URL

    /// `launcher`: a command that execs its last arguments (the daemon and its own), such as
    /// `unshare ... sh -c '...; exec "$0" "$@"'`.
    init(configuration: FilePath, folders: LineFolders, environment: [String: String] = [:], launcher: [String] = []) throws {
        log = folders.root.appendingPathComponent("rstpmd-\(UUID().uuidString.prefix(6)).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let arguments = ["--config", configuration.string, "--weights-dir", TestPaths.weightsDirectory.path]
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [BinaryHarness.daemonBinary.path] + arguments
        } else {
            process.executableURL = BinaryHarness.daemonBinary
            process.arguments = arguments
        }
        var variables = ["PATH": "/usr/bin:/bin", "RSTPMD_DEBUG": "1"]
        variables.merge(environment) { $1 }
        process.environment = variables
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGTERM (graceful drain), then waits; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL: no drain, no cleanup.
    func killHard() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { killHard() }
    }
}
