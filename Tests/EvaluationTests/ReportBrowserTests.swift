import Evaluation
import Foundation
import Imaging
import TestSupport
import XCTest

/// The report's tuner in a real browser: Debian's headless chromium loads index.html with
/// `#threshold=X` (the page moves its slider there and fires the slider's input event, as a
/// drag does) and prints the DOM after the script ran.
final class ReportBrowserTests: XCTestCase {
    private func chromium() throws -> URL {
        let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no headless browser: install Debian's chromium (scripts/install-deps.sh does) to test the report's tuner")
        }
        return URL(fileURLWithPath: path)
    }

    /// The DOM of `page` with `fragment`, as chromium leaves it after the page's script.
    private func dumpDOM(_ page: URL, fragment: String, browser: URL, profile: URL) throws -> String {
        let (status, output) = try Tools.run(URL(fileURLWithPath: "/usr/bin/timeout"), [
            "60", browser.path, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile.path)",
            "--dump-dom", page.absoluteString + fragment,
        ])
        XCTAssertEqual(status, 0, output)
        return output
    }

    /// `data-count`/`data-total` of the tuner's element with class `name`, and its text.
    private func figure(_ name: String, in dom: String) throws -> (count: Int, total: Int, text: String) {
        let start = try XCTUnwrap(dom.range(of: "<span class=\"\(name)\""), "no .\(name) in the DOM")
        let tag = dom[start.lowerBound...].prefix { $0 != ">" }
        func attribute(_ key: String) throws -> Int {
            let value = try XCTUnwrap(tag.range(of: "\(key)=\""), "\(key) missing in \(tag)")
            return try XCTUnwrap(Int(tag[value.upperBound...].prefix { $0 != "\"" }))
        }
        let text = dom[dom.index(start.lowerBound, offsetBy: tag.count + 1)...].prefix { $0 != "<" }
        return (try attribute("data-count"), try attribute("data-total"), String(text))
    }

    func testTunerFiguresFollowTheSlider() throws {
        let browser = try chromium()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-browser-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        try HTMLReport.write(handCheckedReport(), to: directory.appendingPathComponent("report"))
        let page = directory.appendingPathComponent("report/index.html")
        let profile = directory.appendingPathComponent("profile")

        // Untouched: the production threshold 0.5, as the static matrix (1 of 4 rejected, 2 of 5 escape).
        let production = try dumpDOM(page, fragment: "", browser: browser, profile: profile)
        XCTAssertEqual(try figure("rejects", in: production).count, 1)
        XCTAssertEqual(try figure("rejects", in: production).total, 4)
        XCTAssertEqual(try figure("escapes", in: production).count, 2)
        XCTAssertEqual(try figure("escapes", in: production).total, 5)
        XCTAssertTrue(production.contains("<pre class=\"config\">    threshold: 0.5</pre>"), production)
        XCTAssertEqual(try figure("rejects", in: production).text, "25% of good parts rejected (1 of 4)")

        // Slider to 0.35: the good 0.6 is still rejected, no defect escapes.
        let low = try dumpDOM(page, fragment: "#threshold=0.35", browser: browser, profile: profile)
        XCTAssertEqual(try figure("rejects", in: low).count, 1)
        XCTAssertEqual(try figure("escapes", in: low).count, 0)
        // Slider to 0.65: no good part rejected; crack 0.4, hole 0.45 and hole 0.5 escape.
        let high = try dumpDOM(page, fragment: "#threshold=0.65", browser: browser, profile: profile)
        XCTAssertEqual(try figure("rejects", in: high).count, 0)
        XCTAssertEqual(try figure("escapes", in: high).count, 3)
        XCTAssertEqual(try figure("escapes", in: high).text, "60% of defects escape (3 of 5)")
        // The line to paste holds the slider's value (on its grid, near 0.65), and the per-type table follows.
        let config = try XCTUnwrap(high.range(of: "<pre class=\"config\">    threshold: "))
        let value = try XCTUnwrap(Double(high[config.upperBound...].prefix { $0 != "<" }))
        XCTAssertEqual(value, 0.65, accuracy: 0.001)
        XCTAssertTrue(high.contains("<tr data-type=\"hole\" data-rejected=\"1\">"), high)
        XCTAssertTrue(low.contains("<tr data-type=\"hole\" data-rejected=\"3\">"), low)
        // The affected images are listed by name.
        XCTAssertTrue(high.contains("Defects that escape (3):"))
        XCTAssertTrue(high.contains("crack/005.png 0.4000"), high)
    }

    func testPerImageScaleSwapsTheHeatmapsAndTheirScale() throws {
        let browser = try chromium()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-browser-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let category = try JPEGEncoder.encode(RGBImage(width: 4, height: 4, pixels: [Float](repeating: 0.2, count: 48)))
        let own = try JPEGEncoder.encode(RGBImage(width: 4, height: 4, pixels: [Float](repeating: 0.9, count: 48)))
        let mask = try PNGEncoder.encode(gray: [UInt8](repeating: 0, count: 16), width: 4, height: 4)
        var report = handCheckedReport()
        report.categories[0].worstGood = [WorstCase(image: "/data/bottle/test/good/003.png", defectType: "good", label: 0, score: 0.6,
                                                    panels: ImagePanels(original: category, heatmap: category, ownScaleHeatmap: own,
                                                                        ownScaleMaximum: 0.61, groundTruth: mask, predictedMask: mask))]
        try HTMLReport.write(report, to: directory.appendingPathComponent("report"))
        let page = directory.appendingPathComponent("report/index.html")
        let profile = directory.appendingPathComponent("profile")
        let categoryURI = "data:image/jpeg;base64,\(category.base64EncodedString())", ownURI = "data:image/jpeg;base64,\(own.base64EncodedString())"

        let plain = try dumpDOM(page, fragment: "", browser: browser, profile: profile)
        XCTAssertTrue(plain.contains("src=\"\(categoryURI)\" alt=\"heatmap 003.png\" data-other=\"\(ownURI)\""), plain)
        XCTAssertTrue(plain.contains(">scale 0 to 1</span>"), "the category's scale: 0 to twice the threshold")
        let swapped = try dumpDOM(page, fragment: "#threshold=0.65&scale=own", browser: browser, profile: profile)
        XCTAssertTrue(swapped.contains("src=\"\(ownURI)\" alt=\"heatmap 003.png\" data-other=\"\(categoryURI)\""), swapped)
        XCTAssertTrue(swapped.contains(">scale 0 to 0.61</span>"))
        XCTAssertTrue(swapped.contains("<span>the image's maximum</span>"), "the colour bar's ticks follow")
        // The tuner links the rejected good image to its row.
        XCTAssertFalse(swapped.contains("href=\"#row-0-0\""), "at 0.65 the good 0.6 passes")
        XCTAssertTrue(plain.contains("<a href=\"#row-0-0\">good/003.png 0.6000</a>"), plain)
    }

    func testWideScoreRangesGetALogAxis() throws {
        let browser = try chromium()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-browser-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        // Good parts near 0, defects up to 2: a factor of 200.
        var report = handCheckedReport()
        report.categories[0].imageScores = [("good", 0.01), ("good", 0.02), ("good", 0.03), ("crack", 0.5), ("crack", 1), ("hole", 2)]
            .enumerated().map { ImageScore(image: "/d/\($1.0)/\($0).png", defectType: $1.0, label: $1.0 == "good" ? 0 : 1, score: $1.1) }
        report.categories[0].threshold = 0.04
        try HTMLReport.write(report, to: directory.appendingPathComponent("report"))
        let page = directory.appendingPathComponent("report/index.html")
        let profile = directory.appendingPathComponent("profile")
        let html = try String(contentsOf: page, encoding: .utf8)
        XCTAssertTrue(html.contains("data-axis=\"log\""))
        let production = try dumpDOM(page, fragment: "", browser: browser, profile: profile)
        XCTAssertTrue(production.contains("<pre class=\"config\">    threshold: 0.04</pre>"), "exactly the production threshold")
        XCTAssertEqual(try figure("escapes", in: production).count, 0)
        let moved = try dumpDOM(page, fragment: "#threshold=0.75", browser: browser, profile: profile)
        XCTAssertEqual(try figure("rejects", in: moved).count, 0)
        XCTAssertEqual(try figure("escapes", in: moved).count, 1, "the crack at 0.5")
        let config = try XCTUnwrap(moved.range(of: "<pre class=\"config\">    threshold: "))
        XCTAssertEqual(try XCTUnwrap(Double(moved[config.upperBound...].prefix { $0 != "<" })), 0.75, accuracy: 0.005)
        let low = try dumpDOM(page, fragment: "#threshold=0.015", browser: browser, profile: profile)
        XCTAssertEqual(try figure("rejects", in: low).count, 2)
    }
}
