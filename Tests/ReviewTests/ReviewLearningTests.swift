import ContinuousLearning
import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// Answers through the page's API reach the training store, `rstpm retrain` trains on them, and the
/// summary follows (DaemonLearningTests drives the gate, the swap and rollback through the same API).
final class ReviewLearningTests: XCTestCase {
    func testImagesAnsweredNormalReachTheTrainingStoreAndARetrainUsesThem() throws {
        let fixture = try ReviewFixture()
        var verdicts: [Verdict] = []
        for index in 0..<8 { verdicts.append(try fixture.addVerdict("part-\(index).png", index: index, decision: index < 6 ? .ok : .defect, score: 0.1 + Float(index) / 20)) }
        for index in 0..<10 { try fixture.write(ReviewFixture.image(500 + index), to: "originals/\(index).png") }
        let learning = try learningLine(fixture)
        let station = try StationProcess(fixture)
        let http = RawHTTP(port: station.port)
        let token = try http.csrf()
        for index in 0..<6 { XCTAssertEqual(try http.answer("part-\(index).png", "normal", token: token).status, 200) }
        XCTAssertEqual(try http.answer("part-6.png", "defect", token: token, label: "crack").status, 200)

        // rstpmd's next check takes accepted/ into the store.
        let tick = learning.tick()
        XCTAssertEqual(tick.ingest.added, 6)
        XCTAssertEqual(tick.waiting, "6 of 50 new accepted images")
        let stored = Set(learning.store.entries.filter { $0.origin == .accepted }.map(\.sha256))
        XCTAssertEqual(stored, Set(verdicts[0..<6].map(\.sha256)))

        // `rstpm retrain` asks for a run; the trainer's snapshot holds the answered images of the training pool.
        guard let cli = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built") }
        let retrain = try Tools.run(cli, ["retrain", "line-1", "--config", fixture.path("rstpmd.yaml")])
        XCTAssertEqual(retrain.status, 0, retrain.output)
        var summary = try http.send("GET", "/api/lines/line-1/summary").json()
        XCTAssertEqual((summary["learning"] as? [String: Any])?["retrain_requested"] as? Bool, true)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 30))
        let trainedOn = Set(String(decoding: fixture.read("control/trained-on") ?? [], as: UTF8.self).split(separator: "\n").map(String.init))
        let trainPool = learning.store.entries.filter { $0.origin == .accepted && $0.pool == .train }
        XCTAssertFalse(trainPool.isEmpty)
        for entry in trainPool { XCTAssertTrue(trainedOn.contains(entry.file), "\(entry.file) not trained on: \(trainedOn)") }
        XCTAssertTrue(fixture.list("models").contains("v0002"), "the run produced a version the gate judged")

        // The page shows the new version and the request as done; the answers can no longer be undone.
        summary = try http.send("GET", "/api/lines/line-1/summary").json()
        XCTAssertEqual((summary["models"] as? [[String: Any]])?.map { $0["version"] as? String }, ["v0001", "v0002"])
        XCTAssertEqual((summary["learning"] as? [String: Any])?["retrain_requested"] as? Bool, false)
        XCTAssertEqual(try http.answer("part-0.png", "undo", token: token).status, 409)
        XCTAssertEqual(fixture.list("defects"), [verdicts[6].sha256 + ".png"], "the gate's known defects")
    }
}
