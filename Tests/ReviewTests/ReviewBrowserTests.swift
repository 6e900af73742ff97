import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// Debian's headless chromium, driven through chromedriver's W3C WebDriver HTTP protocol.
final class ReviewBrowserTests: XCTestCase {
    func testKeyboardAnswersInARealBrowserLandInAcceptedAndDefects() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"), FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else {
            throw XCTSkip("chromium and chromium-driver are not installed (scripts/install-deps.sh installs them)")
        }
        let fixture = try ReviewFixture()
        // Queue order (most uncertain first): b, a, c, d.
        let a = try fixture.addVerdict("a.png", index: 1, decision: .ok, score: 0.44)
        let b = try fixture.addVerdict("b.png", index: 2, decision: .defect, score: 0.52, regions: [AnomalyRegion(x: 2, y: 2, width: 3, height: 3, area: 9, peakScore: 0.8)])
        let c = try fixture.addVerdict("c.png", index: 3, decision: .defect, score: 0.8)
        try fixture.addVerdict("d.png", index: 4, decision: .ok, score: 0.05)
        let station = try StationProcess(fixture)
        let browser = try WebDriver()
        defer { browser.quit() }
        try browser.open("http://127.0.0.1:\(station.port)/#queue")
        XCTAssertTrue(try browser.waitFor("return document.querySelectorAll('#queue-list li').length === 4 && document.getElementById('current').dataset.item === 'b.png'"),
                      ((try? browser.evaluate("return document.body.innerText")) ?? nil) as? String ?? "")
        // The picture loads: the browser fetched the archived original.
        XCTAssertTrue(try browser.waitFor("const i = document.getElementById('img-original'); return i.complete && i.naturalWidth === 8"))
        XCTAssertEqual(try browser.evaluate("return document.querySelectorAll('#regions rect').length") as? Int, 1)

        // b: defect (with a label typed first), a: normal, c: normal.
        try browser.evaluate("document.getElementById('defect-label').value = 'scratch'; document.activeElement.blur(); return 0")
        for (key, answered) in [("d", 1), ("n", 2), ("n", 3)] {
            try browser.press(key)
            XCTAssertTrue(try browser.waitFor("return document.querySelectorAll('#queue-list li.done').length === \(answered)"),
                          "after \(key): " + (((try? browser.evaluate("return document.getElementById('status').textContent")) ?? nil) as? String ?? ""))
        }
        XCTAssertEqual(Set(fixture.list("accepted")), [a.sha256 + ".png", c.sha256 + ".png"])
        XCTAssertEqual(fixture.list("defects"), [b.sha256 + ".png"])
        let log = reviewLog(fixture)
        XCTAssertEqual(log.map { $0["item"] as? String }, ["b.png", "a.png", "c.png"])
        XCTAssertEqual(log.first?["label"] as? String, "scratch")

        // After c the selection moved on to d; K goes back to c and U takes its answer back.
        try browser.press("k")
        try browser.press("u")
        XCTAssertTrue(try browser.waitFor("return document.querySelectorAll('#queue-list li.done').length === 2"))
        XCTAssertEqual(fixture.list("accepted"), [a.sha256 + ".png"])

        // The summary view draws the chart and the model table.
        try browser.open("http://127.0.0.1:\(station.port)/#summary")
        XCTAssertTrue(try browser.waitFor("return document.querySelectorAll('#reject-chart text').length > 2 && document.querySelectorAll('#models tbody tr').length === 1"))
        if let folder = ProcessInfo.processInfo.environment["RSTPM_REVIEW_SCREENSHOTS"] {
            try browser.screenshot(to: URL(fileURLWithPath: folder).appendingPathComponent("summary-test.png"))
        }
    }
}

/// A chromedriver process and one headless chromium session.
final class WebDriver {
    let driver = Process()
    let port: Int
    var session = ""

    init(width: Int = 1280, height: Int = 900) throws {
        port = try Self.freePort()
        driver.executableURL = URL(fileURLWithPath: "/usr/bin/chromedriver")
        driver.arguments = ["--port=\(port)"]
        driver.standardOutput = FileHandle.nullDevice
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        let deadline = Date().addingTimeInterval(20)
        while (try? RawHTTP(port: port).send("GET", "/status").status) != 200 {
            guard Date() < deadline else { throw StationError(message: "chromedriver did not start") }
            usleep(50_000)
        }
        let reply = try call("POST", "/session", [
            "capabilities": ["alwaysMatch": ["browserName": "chrome", "goog:chromeOptions": [
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=\(width),\(height)"],
            ]]],
        ])
        session = try XCTUnwrap((reply["value"] as? [String: Any])?["sessionId"] as? String, "\(reply)")
    }

    static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @discardableResult
    func call(_ method: String, _ path: String, _ body: [String: Any]? = nil) throws -> [String: Any] {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }.map(Array.init) ?? []
        let reply = try RawHTTP(port: port).send(method, path, headers: ["Content-Type": "application/json"], body: data)
        let json = (try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any]) ?? [:]
        guard reply.status == 200 else { throw StationError(message: "WebDriver \(method) \(path): \(reply.status) \(reply.text.prefix(500))") }
        return json
    }

    func open(_ url: String) throws { try call("POST", "/session/\(session)/url", ["url": url]) }

    @discardableResult
    func evaluate(_ script: String) throws -> Any? {
        try call("POST", "/session/\(session)/execute/sync", ["script": script, "args": []])["value"]
    }

    /// Polls `script` (returning a boolean) for up to `seconds`.
    func waitFor(_ script: String, seconds: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try evaluate(script) as? Bool == true { return true }
            usleep(50_000)
        }
        return false
    }

    /// A key press as a person makes it (keyDown, keyUp) on the focused page.
    func press(_ key: String) throws {
        try call("POST", "/session/\(session)/actions", ["actions": [["type": "key", "id": "keyboard", "actions": [
            ["type": "keyDown", "value": key], ["type": "keyUp", "value": key],
        ]]]])
    }

    func screenshot(to url: URL) throws {
        let encoded = try XCTUnwrap(try call("GET", "/session/\(session)/screenshot")["value"] as? String)
        try XCTUnwrap(Data(base64Encoded: encoded)).write(to: url)
    }

    func quit() {
        _ = try? call("DELETE", "/session/\(session)")
        driver.terminate()
        driver.waitUntilExit()
    }
}
