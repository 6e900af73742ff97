import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// CSRF, Host and reviewer checks, and the path-traversal corpus, against the real binary.
final class ReviewSecurityTests: XCTestCase {
    func testWritesWithoutTheCSRFTokenOrFromAnotherHostAreRefused() throws {
        let fixture = try ReviewFixture()
        try fixture.addVerdict("a.png", index: 1, decision: .defect, score: 0.6)
        let station = try StationProcess(fixture)
        let http = RawHTTP(port: station.port)
        let token = try http.csrf()
        let body = Array(#"{"answer":"normal","request_id":"csrf-test-0001"}"#.utf8)
        let path = "/api/lines/line-1/items/a.png/answer"
        // No token, a wrong token, a token in a cross-site form post (no JSON).
        XCTAssertEqual(try http.send("POST", path, headers: ["Content-Type": "application/json"], body: body).status, 403)
        XCTAssertEqual(try http.send("POST", path, headers: ["Content-Type": "application/json", "X-CSRF-Token": String(repeating: "0", count: 64)], body: body).status, 403)
        XCTAssertEqual(try http.send("POST", path, headers: ["Content-Type": "application/json", "X-CSRF-Token": String(token.dropLast())], body: body).status, 403)
        XCTAssertEqual(try http.send("POST", path, headers: ["Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": token],
                                     body: Array("answer=normal&request_id=csrf-test-0001".utf8)).status, 400)
        XCTAssertEqual(try http.send("POST", "/api/lines/line-1/items/a.png/undo", headers: ["Content-Type": "application/json"], body: body).status, 403)
        // A page of another site that rebinds its name to 127.0.0.1 reads nothing.
        XCTAssertEqual(try http.send("GET", "/api/session", headers: ["Host": "evil.example:\(station.port)"]).status, 403)
        XCTAssertEqual(try http.send("GET", "/api/lines/line-1/queue", headers: ["Host": "evil.example"]).status, 403)
        XCTAssertEqual(fixture.list("accepted"), [])
        XCTAssertEqual(reviewLog(fixture).count, 0)
        // The right token works, and pages are sent with headers that keep them in their origin.
        XCTAssertEqual(try http.send("POST", path, headers: ["Content-Type": "application/json", "X-CSRF-Token": token], body: body).status, 200)
        XCTAssertEqual(fixture.list("accepted").count, 1)
        let page = try http.send("GET", "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.headers["content-security-policy"]?.contains("frame-ancestors 'none'") ?? false)
        XCTAssertTrue(page.text.contains("/app.js") && !page.text.contains("http"), "no resource from elsewhere")
        XCTAssertEqual(try http.send("GET", "/app.js").status, 200)
    }

    func testReviewerListNeedsAPasswordAndNamesTheReviewer() throws {
        let fixture = try ReviewFixture()
        try fixture.addVerdict("a.png", index: 1, decision: .defect, score: 0.6)
        guard let binary = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built") }
        // --hash-password reads stdin.
        let hasher = Process()
        hasher.executableURL = binary
        hasher.arguments = ["review", "--hash-password"]
        let input = Pipe(), output = Pipe()
        hasher.standardInput = input
        hasher.standardOutput = output
        try hasher.run()
        input.fileHandleForWriting.write(Data("correct horse\n".utf8))
        try input.fileHandleForWriting.close()
        let hash = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        hasher.waitUntilExit()
        XCTAssertTrue(hash.hasPrefix("$2b$"), hash)
        try fixture.write(Array("# reviewers\nanna:\(hash)\n".utf8), to: "reviewers")
        let station = try StationProcess(fixture, arguments: ["--reviewers", fixture.path("reviewers")])
        let http = RawHTTP(port: station.port)
        let anonymous = try http.send("GET", "/api/session")
        XCTAssertEqual(anonymous.status, 401)
        XCTAssertTrue(anonymous.headers["www-authenticate"]?.hasPrefix("Basic") ?? false)
        let wrong = ["Authorization": "Basic " + Data("anna:wrong".utf8).base64EncodedString()]
        XCTAssertEqual(try http.send("GET", "/", headers: wrong).status, 401)
        XCTAssertEqual(try http.send("GET", "/api/lines/line-1/items/a.png/image", headers: wrong).status, 401)
        let anna = ["Authorization": "Basic " + Data("anna:correct horse".utf8).base64EncodedString()]
        let session = try http.send("GET", "/api/session", headers: anna).json()
        XCTAssertEqual(session["reviewer"] as? String, "anna")
        let token = try XCTUnwrap(session["csrf"] as? String)
        // The name the page sends does not override the checked one.
        XCTAssertEqual(try http.answer("a.png", "skip", token: token, extraHeaders: anna).status, 200)
        XCTAssertEqual(reviewLog(fixture).first?["who"] as? String, "anna")
        XCTAssertEqual(reviewLog(fixture).first?["authenticated"] as? Bool, true)
        // Listening beyond localhost without a reviewer list is refused.
        let open = try Tools.run(binary, ["review", "--config", fixture.path("rstpmd.yaml"), "--listen", "0.0.0.0:0", "--state-dir", fixture.path("state")])
        XCTAssertNotEqual(open.status, 0)
        XCTAssertTrue(open.output.contains("--reviewers"), open.output)
    }

    /// Whatever the URL says, only outbox and archive files of a configured line come back.
    func testPathTraversalCorpusReachesNothingOutsideTheLine() throws {
        let fixture = try ReviewFixture()
        try fixture.addVerdict("good.png", index: 1, decision: .defect, score: 0.6)
        let secret = fixture.path("secret.txt")
        // Links inside the served folders: a verdict, a heatmap and an archived input.
        try FileManager.default.createSymbolicLink(atPath: fixture.path("outbox/linked.png.json"), withDestinationPath: fixture.path("outbox/good.png.json"))
        try FileManager.default.createSymbolicLink(atPath: fixture.path("archive/linked.png"), withDestinationPath: secret)
        var evil = try fixture.addVerdict("evil.png", index: 2, decision: .defect, score: 0.7)
        for file in ["outbox/evil.png.heatmap.png", "archive/evil.png"] {
            try FileManager.default.removeItem(atPath: fixture.path(file))
            try FileManager.default.createSymbolicLink(atPath: fixture.path(file), withDestinationPath: secret)
        }
        // Verdicts whose heatmap field points elsewhere.
        for (name, heatmap) in [("dots.png", "../secret.txt"), ("absolute.png", secret), ("nested.png", "sub/../../secret.txt"), ("hidden.png", ".rstpmd.tmp")] {
            evil = try fixture.addVerdict(name, index: 3, decision: .defect, score: 0.7)
            evil.heatmap = heatmap
            try fixture.write(evil.encoded(), to: "outbox/\(name).json")
        }
        try fixture.write(Array(fixture.secret.utf8), to: "outbox/.hidden.png.json")
        let station = try StationProcess(fixture)
        let http = RawHTTP(port: station.port)
        let secretPathEncoded = secret.split(separator: "/").joined(separator: "%2F")
        let corpus = [
            "/api/lines/line-1/items/../../secret.txt/image",
            "/api/lines/line-1/items/..%2F..%2Fsecret.txt/image",
            "/api/lines/line-1/items/..%2f..%2fsecret.txt/image",
            "/api/lines/line-1/items/%2E%2E%2F%2E%2E%2Fsecret.txt/image",
            "/api/lines/line-1/items/..%252F..%252Fsecret.txt/image",
            "/api/lines/line-1/items/%2F\(secretPathEncoded)/image",
            "/api/lines/line-1/items/..%5C..%5Csecret.txt/image",
            "/api/lines/line-1/items/%C0%AE%C0%AE%2Fsecret.txt/image",
            "/api/lines/line-1/items/good.png%00/image",
            "/api/lines/line-1/items/good.png%2F..%2F..%2Fsecret.txt/image",
            "/api/lines/line-1/items/..%2Fsecret.txt%00.png/heatmap",
            "/api/lines/line-1/items/./image",
            "/api/lines/line-1/items/../image",
            "/api/lines/line-1/items/%2E/image",
            "/api/lines/line-1/items/%2E%2E/heatmap",
            "/api/lines/line-1/items/.hidden.png/image",
            "/api/lines/line-1/items/linked.png/image",
            "/api/lines/line-1/items/linked.png/heatmap",
            "/api/lines/line-1/items/evil.png/image",
            "/api/lines/line-1/items/evil.png/heatmap",
            "/api/lines/line-1/items/dots.png/heatmap",
            "/api/lines/line-1/items/absolute.png/heatmap",
            "/api/lines/line-1/items/nested.png/heatmap",
            "/api/lines/line-1/items/hidden.png/heatmap",
            "/api/lines/..%2F..%2F/items/good.png/image",
            "/api/lines/%2E%2E/summary",
            "/../secret.txt",
            "/%2E%2E/secret.txt",
            "/app.js/../../secret.txt",
            "//\(secret.dropFirst())",
            "/\(secretPathEncoded)",
        ]
        for target in corpus {
            let reply = try http.send("GET", target)
            XCTAssertTrue((400..<500).contains(reply.status), "\(target): \(reply.status)")
            XCTAssertFalse(reply.text.contains(fixture.secret), "\(target) leaked the secret")
        }
        // The queue lists no linked or hidden verdict, and the good item is still served.
        let items = try XCTUnwrap(try http.send("GET", "/api/lines/line-1/queue?answered=all").json()["items"] as? [[String: Any]])
        XCTAssertFalse(items.contains { ($0["item"] as? String) == "linked.png" || ($0["item"] as? String) == ".hidden.png" })
        XCTAssertEqual(items.first { ($0["item"] as? String) == "evil.png" }?["has_image"] as? Bool, false)
        XCTAssertEqual(try http.send("GET", "/api/lines/line-1/items/good.png/image").body, ReviewFixture.image(1))
        // An answer for a linked input is refused and copies nothing.
        XCTAssertEqual(try http.answer("evil.png", "normal", token: try http.csrf()).status, 409)
        XCTAssertEqual(fixture.list("accepted"), [])
    }
}
