import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// SIGKILL while answers are under way loses nothing and duplicates nothing.
final class ReviewDurabilityTests: XCTestCase {
    func testSIGKILLDuringAnswersLosesNothingAndDuplicatesNothing() throws {
        let fixture = try ReviewFixture()
        let count = 30
        let planned = (0..<count).map { ["normal", "defect", "skip"][$0 % 3] }
        for index in 0..<count { try fixture.addVerdict("item-\(index).png", index: index, decision: index % 2 == 0 ? .ok : .defect, score: 0.3 + Float(index) / 100) }
        var next = 0
        var acknowledged = Set<Int>()
        var kills = 0
        var interrupted = 0
        var seed = SplitMix64(state: 16)
        // Each round: a fresh station that a timer kills after a few milliseconds; the client
        // goes on answering and, after the kill, retries the same click (same request id).
        while next < count {
            let station = try StationProcess(fixture)
            let http = RawHTTP(port: station.port)
            guard let token = try? http.csrf() else { continue }
            let killer = DispatchWorkItem { station.kill() }
            let armed = kills < 8
            if armed {
                kills += 1
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(2 + seed.below(40)), execute: killer)
            }
            while next < count {
                guard let reply = try? http.answer("item-\(next).png", planned[next], requestID: "kill-test-\(next)-0000", token: token) else {
                    interrupted += 1
                    break
                }
                XCTAssertEqual(reply.status, 200, reply.text)
                acknowledged.insert(next)
                next += 1
            }
            if armed { killer.wait() }
            if station.process.isRunning { station.kill() }
        }
        XCTAssertEqual(acknowledged.count, count)
        XCTAssertGreaterThan(interrupted, 0, "no kill cut a round of answers short")
        // A last start finishes whatever the last kill cut short.
        let station = try StationProcess(fixture)
        _ = try RawHTTP(port: station.port).csrf()

        let log = reviewLog(fixture)
        XCTAssertEqual(log.count, count, "one record per answer: \(log.map { $0["item"] ?? "?" })")
        XCTAssertEqual(Set(log.compactMap { $0["id"] as? String }).count, count)
        for (index, answer) in planned.enumerated() {
            XCTAssertEqual(log.filter { $0["item"] as? String == "item-\(index).png" }.map { $0["answer"] as? String }, [answer], "item-\(index)")
        }
        let expected = { (kind: String) in Set(planned.indices.filter { planned[$0] == kind }.map { sha256Hex(ReviewFixture.image($0)) + ".png" }) }
        XCTAssertEqual(Set(fixture.list("accepted")), expected("normal"))
        XCTAssertEqual(Set(fixture.list("defects")), expected("defect"))
        XCTAssertEqual(fixture.list("archive").count, count, "the archive keeps every input")
    }

    /// The two states a kill can leave between the log and the folders.
    func testHalfDoneAnswersAreFinishedOrRepeatedOnce() throws {
        let fixture = try ReviewFixture()
        let a = try fixture.addVerdict("a.png", index: 1, decision: .defect, score: 0.6)
        let b = try fixture.addVerdict("b.png", index: 2, decision: .ok, score: 0.4)
        var station = try StationProcess(fixture)
        var http = RawHTTP(port: station.port)
        XCTAssertEqual(try http.answer("a.png", "normal", requestID: "half-done-a", token: try http.csrf()).status, 200)
        station.kill()
        // Killed after the log record, before the link (and its .done note): the next start makes the link.
        try FileManager.default.removeItem(atPath: fixture.path("accepted/\(a.sha256).png"))
        try FileManager.default.removeItem(atPath: fixture.path("state/review-line-1.done"))
        // Killed after the link, before the log record: the retried click records it once.
        try FileManager.default.linkItem(atPath: fixture.path("archive/b.png"), toPath: fixture.path("defects/\(b.sha256).png"))
        station = try StationProcess(fixture)
        http = RawHTTP(port: station.port)
        XCTAssertEqual(fixture.list("accepted"), ["\(a.sha256).png"])
        let token = try http.csrf()
        XCTAssertEqual(try http.answer("b.png", "defect", requestID: "half-done-b", token: token).status, 200)
        XCTAssertEqual(try http.answer("b.png", "defect", requestID: "half-done-b", token: token).status, 200)
        XCTAssertEqual(fixture.list("defects"), ["\(b.sha256).png"])
        XCTAssertEqual(reviewLog(fixture).map { $0["id"] as? String }, ["half-done-a", "half-done-b"])

        // A finished answer is not done again: an accepted image that learning took (and its
        // reservoir did not keep) is not put back by a restart.
        XCTAssertEqual(try http.answer("a.png", "undo", requestID: "half-done-undo", token: token).status, 200)
        XCTAssertEqual(try http.answer("a.png", "normal", requestID: "half-done-a2", token: token).status, 200)
        station.kill()
        try FileManager.default.removeItem(atPath: fixture.path("accepted/\(a.sha256).png"))
        station = try StationProcess(fixture)
        XCTAssertEqual(fixture.list("accepted"), [])
    }
}
