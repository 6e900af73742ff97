import Checkpoints
import ContinuousLearning
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// rstpmd with a learning line, driven step by step: inspection, acceptance through the review
/// station's API, the schedule, the gate, the swap without restart, and rollback.
final class DaemonLearningTests: XCTestCase {
    func writeConfiguration(_ scratch: Scratch, trainer: [String], extra: String = "") throws {
        for folder in ["inbox", "work", "outbox", "archive", "quarantine", "accepted", "defects"] { try scratch.makeDirectory(folder) }
        let trainerList = trainer.map { "\"\($0)\"" }.joined(separator: ", ")
        try scratch.write("""
        instance: test
        lines:
          - name: line-1
            inbox: \(scratch.path("inbox"))
            work: \(scratch.path("work"))
            outbox: \(scratch.path("outbox"))
            archive: \(scratch.path("archive"))
            quarantine: \(scratch.path("quarantine"))
            model: \(scratch.path("models/line-1"))
            settle_interval_seconds: 0
            learning:
              accepted: \(scratch.path("accepted"))
              defects: \(scratch.path("defects"))
              store: \(scratch.path("training"))
              originals: \(scratch.path("originals"))
              trainer: [\(trainerList)]
              min_new_images: 5
              window: "22:00-05:00"
              capacity: 100
              held_out_share: 0.2
              keep_versions: 3
              retry_delay_seconds: 1
        \(extra)
        """, to: "rstpmd.yaml")
    }

    func verdictVersion(_ scratch: Scratch, service: DaemonService, name: String) throws -> String? {
        try scratch.write(image(9999, tag: name), to: "inbox/\(name).pgm")
        XCTAssertEqual(service.runOnce(), 0)
        let model = try scratch.json("outbox/\(name).pgm.json")["model"] as? [String: Any]
        return model?["version"] as? String
    }

    /// Inspects the images `indices` as rstpmd does, then answers each "normal" through the review
    /// station (`rstpm review`), as an inspector would: the station puts the archived input into accepted/.
    func acceptThroughReview(_ indices: Range<Int>, scratch: Scratch, service: DaemonService, station: RawHTTP, token: String) throws {
        for index in indices { try scratch.write(image(index), to: "inbox/part-\(index).pgm") }
        XCTAssertEqual(service.runOnce(), 0)
        for index in indices {
            let reply = try station.answer("part-\(index).pgm", "normal", token: token)
            XCTAssertEqual(reply.status, 200, reply.text)
        }
        XCTAssertEqual(scratch.list("accepted").count, indices.count, "the answers' copies wait in accepted/")
    }

    func testAcceptedImagesRetrainGateSwapAndRollBack() throws {
        guard let rstpm = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built: run swift build -c release") }
        let scratch = try Scratch()
        defer { scratch.remove() }
        _ = try scratch.makeModelStore()
        for index in 0..<20 { try scratch.write(image(index, tag: "original"), to: "originals/\(index).png") }
        for index in 0..<3 { try scratch.write(image(index, tag: "defect"), to: "defects/\(index).png") }
        try writeConfiguration(scratch, trainer: try scratch.makeTrainer())
        let clock = TestClock(hour: 14)
        let evaluator = ManifestEvaluator()
        let (logger, log) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: scratch.path("rstpmd.yaml"), modelLoader: { try ConstantInspector(bundle: $0.modelBundle) },
                                    logger: logger, candidateEvaluator: evaluator, learningClock: { clock.now }, learningTimeZone: utc)
        try service.load()
        let learning = try XCTUnwrap(service.learning["line-1"])
        XCTAssertEqual(try verdictVersion(scratch, service: service, name: "first"), "v0001")
        let station = try ReviewStation(binary: rstpm, configuration: scratch.path("rstpmd.yaml").string, stateDirectory: scratch.path("review").string)
        defer { station.kill(SIGTERM) }
        let http = RawHTTP(port: station.port)
        let token = try http.csrf()

        // Images answered normal outside the window: taken in, no training.
        try acceptThroughReview(0..<6, scratch: scratch, service: service, station: http, token: token)
        XCTAssertEqual(learning.tick().waiting, "outside the training window 22:00-05:00")
        XCTAssertEqual(learning.store.newImagesSinceTraining, 6)
        XCTAssertTrue(service.statusLine().contains("line-1: model v0001, 6 new accepted"), service.statusLine())

        // Inside the window: trains, passes the gate, and serves without a restart.
        clock.set(hour: 2)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
        let gate = try scratch.json("models/line-1/v0002/gate.json")
        XCTAssertEqual(gate["decision"] as? String, "accepted")
        XCTAssertEqual(gate["current_version"] as? String, "v0001")
        XCTAssertEqual(gate["defect_images"] as? Int, 3)
        XCTAssertGreaterThan(gate["held_out_images"] as? Int ?? 0, 0)
        XCTAssertEqual((gate["candidate"] as? [String: Any])?["false_reject_rate"] as? Double, 0)
        XCTAssertEqual((gate["candidate"] as? [String: Any])?["auroc"] as? Double, 1)
        let trained = try XCTUnwrap(scratch.read("models/line-1/v0002/manifest.json"))
        XCTAssertTrue(trained.contains("\"images\":\(gate["training_images"] as? Int ?? -1)"), "trained on the snapshot: \(trained)")
        XCTAssertEqual(service.checkModelSwaps(), ["line-1"])
        XCTAssertEqual(try verdictVersion(scratch, service: service, name: "second"), "v0002")
        XCTAssertTrue(log.messages.contains { $0.contains("v0002 replaces v0001") })

        // A candidate made worse is rejected; v0002 keeps serving.
        try scratch.write("worse", to: "control/quality")
        try acceptThroughReview(6..<12, scratch: scratch, service: service, station: http, token: token)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        let rejected = try scratch.json("models/line-1/v0003/gate.json")
        XCTAssertEqual(rejected["decision"] as? String, "rejected")
        XCTAssertEqual((rejected["candidate"] as? [String: Any])?["false_reject_rate"] as? Double, 1)
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
        XCTAssertEqual(service.checkModelSwaps(), [])
        XCTAssertEqual(try verdictVersion(scratch, service: service, name: "third"), "v0002")
        XCTAssertTrue(log.messages.contains { $0.contains("v0003 rejected, v0002 keeps serving") })

        // Rollback (as `rstpm model rollback line-1` does): back to v0001, skipping the rejected.
        XCTAssertEqual(try learning.models.rollback().name, "v0001")
        XCTAssertEqual(service.checkModelSwaps(), ["line-1"])
        XCTAssertEqual(try verdictVersion(scratch, service: service, name: "fourth"), "v0001")
        XCTAssertEqual(evaluator.evaluatedBundles, [".candidate", "v0001", ".candidate", "v0002"])
        service.stop()
    }

    func testAutoAcceptanceCopiesOnlyClearlyNormalImages() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let acceptor = AutoAcceptor(accepted: scratch.path("accepted"), quantile: 0.1, windowSize: 100, minimumObservations: 20)
        try scratch.makeDirectory("accepted")
        var copied: [Int] = []
        for index in 0..<60 {
            // Scores 0.50, 0.49, ... fall over time: a new low is below the 10 % quantile.
            let bytes = image(index)
            if try acceptor.consider(fileName: "\(index).png", bytes: bytes, sha256: sha256Hex(of: bytes), score: 0.5 - Float(index) / 100) {
                copied.append(index)
            }
        }
        XCTAssertEqual(copied, Array(20..<60), "none before 20 observations, then each new lowest score")
        XCTAssertEqual(scratch.list("accepted").count, 40)
        XCTAssertTrue(scratch.list("accepted").allSatisfy { $0.hasSuffix(".png") && $0.count == 68 })
        // A higher score than most recent ones is not taken.
        XCTAssertFalse(try acceptor.consider(fileName: "x.png", bytes: image(1000), sha256: sha256Hex(of: image(1000)), score: 0.3))
    }

    func testLearningConfigurationIsCheckedWithClearMessages() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        try scratch.makeDirectory("models/line-1/v0001")   // a bundle, not a store
        try writeConfiguration(scratch, trainer: ["relative/rstpm", "train"])
        var text = try XCTUnwrap(scratch.read("rstpmd.yaml"))
        text = text.replacingOccurrences(of: "window: \"22:00-05:00\"", with: "window: \"late\"\n      capacity_typo: 3")
        do {
            _ = try DaemonConfiguration.parse(yaml: text, file: scratch.path("rstpmd.yaml"))
            XCTFail("accepted a broken learning block")
        } catch let error as ConfigurationError {
            let keys = error.problems.map(\.key)
            XCTAssertTrue(keys.contains("lines[0].learning.trainer"), "\(error)")
            XCTAssertTrue(keys.contains("lines[0].learning.window"), "\(error)")
            XCTAssertTrue(keys.contains("lines[0].learning.capacity_typo"), "\(error)")
        }
        try writeConfiguration(scratch, trainer: ["/usr/bin/rstpm", "train", "--data", "{data}", "--out", "{out}"])
        do {
            _ = try DaemonConfiguration.load(from: scratch.path("rstpmd.yaml"))
            XCTFail("accepted a bundle where a model store is needed")
        } catch let error as ConfigurationError {
            XCTAssertTrue(error.description.contains("must be a model store"), "\(error)")
        }
        _ = try scratch.makeModelStore("models/store")
        let good = try XCTUnwrap(scratch.read("rstpmd.yaml")).replacingOccurrences(of: "models/line-1", with: "models/store")
        let configuration = try DaemonConfiguration.parse(yaml: good, file: scratch.path("rstpmd.yaml"))
        let learning = try XCTUnwrap(configuration.lines[0].learning)
        XCTAssertEqual(learning.window, TimeWindow(parsing: "22:00-05:00"))
        XCTAssertEqual(learning.minimumNewImages, 5)
        XCTAssertEqual(learning.storeSettings.capacity, 100)
        XCTAssertEqual(learning.resumeArguments, ["--resume"])
        XCTAssertNil(learning.autoAcceptQuantile)
        // Without an evaluator (a build without RSTPM) a learning line refuses to start.
        try scratch.write(good, to: "rstpmd.yaml")
        let service = DaemonService(configurationPath: scratch.path("rstpmd.yaml"), modelLoader: { try ConstantInspector(bundle: $0.modelBundle) },
                                    logger: MemoryLogHandler.logger().0)
        XCTAssertThrowsError(try service.load()) { XCTAssertTrue("\($0)".contains("cannot evaluate candidate models"), "\($0)") }
    }
}
