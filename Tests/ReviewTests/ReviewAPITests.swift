import ContinuousLearning
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// The real `rstpm review` binary through its HTTP API.
final class ReviewAPITests: XCTestCase {
    func testQueueFiltersAnswersUndoAndSummary() throws {
        let fixture = try ReviewFixture()
        let near = try fixture.addVerdict("near.png", index: 1, decision: .defect, score: 0.52, regions: [AnomalyRegion(x: 1, y: 2, width: 3, height: 4, area: 9, peakScore: 0.9)])
        try fixture.addVerdict("far ok.png", index: 2, decision: .ok, score: 0.05, decidedAt: "2026-11-30T08:00:00.000Z")
        try fixture.addVerdict("close ok.png", index: 3, decision: .ok, score: 0.45)
        try fixture.addVerdict("far defect.png", index: 4, decision: .defect, score: 2.0)
        try fixture.addVerdict("broken.png", index: 5, decision: .error, score: nil)
        let station = try StationProcess(fixture)
        let http = RawHTTP(port: station.port)

        // Most uncertain first; error verdicts only when asked for.
        var queue = try http.send("GET", "/api/lines/line-1/queue").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.map { $0["file"] as? String }, ["near.png", "close ok.png", "far ok.png", "far defect.png"])
        queue = try http.send("GET", "/api/lines/line-1/queue?verdict=defect,error").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.map { $0["file"] as? String }, ["near.png", "far defect.png", "broken.png"])
        queue = try http.send("GET", "/api/lines/line-1/queue?min=0.3&max=1").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.map { $0["file"] as? String }, ["near.png", "close ok.png"])
        queue = try http.send("GET", "/api/lines/line-1/queue?from=2026-11-30&to=2026-11-30").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.map { $0["file"] as? String }, ["far ok.png"])
        let first = try XCTUnwrap((try http.send("GET", "/api/lines/line-1/queue").json()["items"] as? [[String: Any]])?.first)
        XCTAssertEqual(first["score"] as? Double ?? 0, 0.52, accuracy: 1e-6)
        XCTAssertEqual(first["threshold"] as? Double ?? 0, 0.5, accuracy: 1e-6)
        XCTAssertEqual((first["model"] as? [String: Any])?["version"] as? String, "v0001")
        XCTAssertEqual((first["regions"] as? [[String: Any]])?.first?["width"] as? Int, 3)
        XCTAssertEqual(first["has_image"] as? Bool, true)

        // The original and the heatmap, byte for byte.
        let image = try http.send("GET", "/api/lines/line-1/items/near.png/image")
        XCTAssertEqual(image.status, 200)
        XCTAssertEqual(image.body, ReviewFixture.image(1))
        XCTAssertEqual(image.headers["content-type"], "image/png")
        XCTAssertEqual(try http.send("GET", "/api/lines/line-1/items/far%20ok.png/heatmap").body, ReviewFixture.image(10_002))

        // normal: hard link into accepted/ under learning's own name; the archive keeps its file.
        let token = try http.csrf()
        let normal = try http.answer("near.png", "normal", requestID: "request-normal-1", token: token)
        XCTAssertEqual(normal.status, 200, normal.text)
        let acceptedName = near.sha256 + ".png"
        XCTAssertEqual(fixture.list("accepted"), [acceptedName])
        XCTAssertEqual(fixture.read("accepted/\(acceptedName)"), ReviewFixture.image(1))
        XCTAssertEqual(try inode(fixture.path("accepted/\(acceptedName)")), try inode(fixture.path("archive/near.png")), "hard-linked")
        XCTAssertTrue(fixture.list("archive").contains("near.png"))
        // A retry of the same click changes nothing; another answer to the same item is refused.
        XCTAssertEqual(try http.answer("near.png", "normal", requestID: "request-normal-1", token: token).status, 200)
        XCTAssertEqual(try http.answer("near.png", "defect", token: token).status, 409)
        XCTAssertEqual(reviewLog(fixture).count, 1)

        // defect with a label; skip; an error verdict can only be skipped.
        let defect = try http.answer("close ok.png", "defect", token: token, label: "scratch")
        XCTAssertEqual(defect.status, 200, defect.text)
        XCTAssertEqual(fixture.list("defects"), [sha256Hex(ReviewFixture.image(3)) + ".png"])
        XCTAssertEqual(try http.answer("far defect.png", "skip", token: token).status, 200)
        XCTAssertEqual(try http.answer("broken.png", "normal", token: token).status, 409)
        XCTAssertEqual(fixture.list("accepted").count, 1)

        let log = reviewLog(fixture)
        XCTAssertEqual(log.map { $0["answer"] as? String }, ["normal", "defect", "skip"])
        XCTAssertEqual(log[1]["label"] as? String, "scratch")
        XCTAssertEqual(log[1]["who"] as? String, "tester")
        XCTAssertEqual(log[1]["authenticated"] as? Bool, false)
        XCTAssertEqual(log[1]["verdict"] as? String, "ok")
        XCTAssertEqual(log[0]["stored_as"] as? String, "accepted/\(acceptedName)")

        // Answered items leave the default queue and show under answered=yes.
        queue = try http.send("GET", "/api/lines/line-1/queue").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.map { $0["file"] as? String }, ["far ok.png"])
        queue = try http.send("GET", "/api/lines/line-1/queue?answered=yes").json()
        XCTAssertEqual((queue["items"] as? [[String: Any]])?.count, 3)

        // Summary: 2 of 2 answered normal/defect disagree with the model.
        var summary = try http.send("GET", "/api/lines/line-1/summary").json()
        let agreement = try XCTUnwrap(summary["agreement"] as? [String: Any])
        XCTAssertEqual(agreement["answered"] as? Int, 2)
        XCTAssertEqual(agreement["normal_but_defect"] as? Int, 1)
        XCTAssertEqual(agreement["defect_but_ok"] as? Int, 1)
        XCTAssertEqual(agreement["skipped"] as? Int, 1)
        XCTAssertEqual(agreement["disagreement_rate"] as? Double, 1)
        let days = try XCTUnwrap(summary["days"] as? [[String: Any]])
        XCTAssertEqual(days.count, 14)
        XCTAssertEqual((summary["models"] as? [[String: Any]])?.first?["current"] as? Bool, true)
        XCTAssertEqual((summary["learning"] as? [String: Any])?["waiting_in_accepted"] as? Int, 1)

        // Undo: the file leaves defects/, the item is back in the queue; an undo is logged.
        XCTAssertEqual(try http.answer("close ok.png", "undo", token: token).status, 200)
        XCTAssertEqual(fixture.list("defects"), [])
        XCTAssertEqual(reviewLog(fixture).last?["answer"] as? String, "undo")
        XCTAssertEqual(try http.answer("close ok.png", "undo", token: token).status, 409, "nothing left to undo")

        // Once learning has taken the accepted file, its answer can no longer be undone.
        let learning = try learningLine(fixture)
        XCTAssertEqual(learning.tick().ingest.added, 1)
        XCTAssertEqual(fixture.list("accepted"), [])
        let late = try http.answer("near.png", "undo", token: token)
        XCTAssertEqual(late.status, 409)
        XCTAssertTrue(late.text.contains("learning has already taken"), late.text)
        summary = try http.send("GET", "/api/lines/line-1/summary").json()
        XCTAssertEqual((summary["learning"] as? [String: Any])?["new_images_since_training"] as? Int, 1)
        XCTAssertTrue(fixture.list("archive").count == 5, "nothing ever leaves the archive")
        station.kill(SIGTERM)
        XCTAssertEqual(station.process.terminationStatus, 0, "SIGTERM stops the station cleanly")
    }

    func testAnAnswerSurvivesARestartAndATornLogLine() throws {
        let fixture = try ReviewFixture()
        try fixture.addVerdict("a.png", index: 1, decision: .defect, score: 0.6)
        try fixture.addVerdict("b.png", index: 2, decision: .ok, score: 0.4)
        var station = try StationProcess(fixture)
        var http = RawHTTP(port: station.port)
        XCTAssertEqual(try http.answer("a.png", "normal", token: try http.csrf()).status, 200)
        station.kill()
        // A record a crash cut short: no final newline.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: fixture.path("state/review-line-1.jsonl")))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"id":"torn","answer":"nor"#.utf8))
        try handle.close()
        station = try StationProcess(fixture)
        http = RawHTTP(port: station.port)
        let token = try http.csrf()
        XCTAssertEqual(try http.send("GET", "/api/lines/line-1/queue?answered=yes").json()["total"] as? Int, 1, "the answer before the kill is remembered")
        XCTAssertEqual(try http.answer("b.png", "skip", token: token).status, 200)
        XCTAssertEqual(reviewLog(fixture).map { $0["item"] as? String }, ["a.png", "b.png"], "the torn line stays alone on its line")
    }

    func inode(_ path: String) throws -> UInt64 {
        var status = stat()
        guard lstat(path, &status) == 0 else { throw StationError(message: "lstat \(path)") }
        return UInt64(status.st_ino)
    }
}

/// The fixture's learning line, as rstpmd runs it.
func learningLine(_ fixture: ReviewFixture) throws -> LearningLine {
    let configuration = try DaemonConfiguration.parse(yaml: String(decoding: fixture.read("rstpmd.yaml")!, as: UTF8.self),
                                                      file: FilePath(fixture.path("rstpmd.yaml")))
    let line = configuration.lines[0]
    let learning = LearningLine(lineName: line.name, configuration: line.learning!, modelStore: line.modelBundle, evaluator: FixedEvaluator(),
                                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    try learning.prepare()
    return learning
}
