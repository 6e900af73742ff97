import Checkpoints
import Foundation
import Imaging
import SystemPackage
import TestSupport
import XCTest

/// The real `rstpmd` on temporary folders with a real (tiny) RSTPM model.
final class BinaryDaemonTests: XCTestCase {
    func testRealImagesBecomeVerdictsAndHeatmapsOfTheConfiguredSize() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model), folders: folders)
        let inputs: [(source: URL, name: String)] = [
            (BinaryHarness.fullResolutionBottle.appendingPathComponent("good_000.png"), "full_good_000.png"),
            (BinaryHarness.fullResolutionBottle.appendingPathComponent("broken_large_000.png"), "full_broken_large_000.png"),
            (BinaryHarness.bottle.appendingPathComponent("test/good/000.png"), "good_000.png"),
            (BinaryHarness.bottle.appendingPathComponent("test/contamination/000.png"), "contamination_000.png"),
        ]
        for input in inputs { try BinaryHarness.drop(try Data(contentsOf: input.source), as: input.name, into: folders) }
        // A camera JPEG: the network gets libjpeg's DCT-scaled decode, the heatmap the image.
        let camera = try ImageDecoder.decode(contentsOf: BinaryHarness.fullResolutionBottle.appendingPathComponent("contamination_000.png"))
        try BinaryHarness.drop(try JPEGEncoder.encode(camera, quality: 92), as: "camera.jpg", into: folders)
        let names = inputs.map(\.name) + ["camera.jpg"]
        let done = BinaryHarness.wait(seconds: 60) { names.allSatisfy { BinaryHarness.verdict($0, in: folders) != nil } }
        XCTAssertTrue(done, daemon.output)
        XCTAssertEqual(daemon.stop(), 0, daemon.output)

        for input in inputs {
            let verdict = try XCTUnwrap(BinaryHarness.verdict(input.name, in: folders), input.name)
            let original = try ImageDecoder.decode(contentsOf: input.source)
            XCTAssertTrue(["ok", "defect"].contains(verdict["verdict"] as? String), "\(verdict)")
            XCTAssertEqual(verdict["file"] as? String, input.name)
            let score = try XCTUnwrap((verdict["score"] as? NSNumber)?.floatValue)
            XCTAssertTrue(score.isFinite && score >= 0, "\(score)")
            let threshold = try XCTUnwrap(verdict["threshold"] as? [String: Any])
            XCTAssertEqual(threshold["source"] as? String, "model")
            let model = try XCTUnwrap(verdict["model"] as? [String: Any])
            XCTAssertEqual((model["id"] as? String)?.count, 36)
            let size = try XCTUnwrap(verdict["size"] as? [String: Any])
            XCTAssertEqual(size["width"] as? Int, original.width)
            XCTAssertEqual(size["height"] as? Int, original.height)
            XCTAssertEqual((verdict["sha256"] as? String)?.count, 64)
            // The heatmap is drawn over the original image, the longer side at most 512 pixels by default.
            let heatmap = try ImageDecoder.decode(contentsOf: folders.root.appendingPathComponent("outbox/\(input.name).heatmap.png"))
            XCTAssertEqual([heatmap.width, heatmap.height], original.width > 512 ? [512, 512] : [original.width, original.height], input.name)
            XCTAssertNotEqual(heatmap.pixels, original.pixels)
            XCTAssertTrue(folders.exists("archive/\(input.name)"), input.name)
        }
        let jpeg = try XCTUnwrap(BinaryHarness.verdict("camera.jpg", in: folders))
        XCTAssertTrue(["ok", "defect"].contains(jpeg["verdict"] as? String), "\(jpeg)")
        let jpegHeatmap = try ImageDecoder.decode(contentsOf: folders.root.appendingPathComponent("outbox/camera.jpg.heatmap.png"))
        XCTAssertEqual([jpegHeatmap.width, jpegHeatmap.height], [512, 512])
        XCTAssertEqual(folders.list("quarantine"), [])
        XCTAssertEqual(folders.list("inbox"), [])
        // 900x900 camera images are tested at full size, not at the 256x256 of the data set.
        XCTAssertEqual((BinaryHarness.verdict("full_good_000.png", in: folders)?["size"] as? [String: Any])?["width"] as? Int, 900)
    }

    func testHeatmapAtOriginalSizeWhenConfigured() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, extra: "    heatmap_max_side: original")
        let daemon = try DaemonProcess(configuration: configuration, folders: folders)
        let source = BinaryHarness.fullResolutionBottle.appendingPathComponent("good_000.png")
        try BinaryHarness.drop(try Data(contentsOf: source), as: "full.png", into: folders)
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { BinaryHarness.verdict("full.png", in: folders) != nil }, daemon.output)
        XCTAssertEqual(daemon.stop(), 0, daemon.output)
        let heatmap = try ImageDecoder.decode(contentsOf: folders.root.appendingPathComponent("outbox/full.png.heatmap.png"))
        XCTAssertEqual([heatmap.width, heatmap.height], [900, 900])
    }

    func testHalfWrittenFileIsTakenOnlyWhenComplete() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model, settleSeconds: 0.8), folders: folders)
        let bytes = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/001.png"))
        // A slow writer under the final name: a chunk every 0.3 s, faster than the settle interval.
        let path = folders.root.appendingPathComponent("inbox/slow upload.png").path
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        let chunks = 8
        let chunkSize = (bytes.count + chunks - 1) / chunks
        for index in 0..<chunks {
            let chunk = bytes[(index * chunkSize)..<min(bytes.count, (index + 1) * chunkSize)]
            _ = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            usleep(300_000)
            XCTAssertTrue(folders.exists("inbox/slow upload.png"), "taken after chunk \(index + 1) of \(chunks)")
            XCTAssertEqual(folders.list("quarantine"), [], "taken after chunk \(index + 1) of \(chunks)")
        }
        close(descriptor)
        XCTAssertTrue(BinaryHarness.wait(seconds: 30) { BinaryHarness.verdict("slow upload.png", in: folders) != nil }, daemon.output)
        XCTAssertEqual(daemon.stop(), 0)
        let verdict = try XCTUnwrap(BinaryHarness.verdict("slow upload.png", in: folders))
        XCTAssertNotEqual(verdict["verdict"] as? String, "error", "\(verdict)")
        let archived = try Data(contentsOf: folders.root.appendingPathComponent("archive/slow upload.png"))
        XCTAssertEqual(archived, bytes)
    }

    /// Issue #13.11: a writer that pauses longer than the settle interval (3 chunks 1.5 s apart,
    /// settle 1 s) and keeps its descriptor open. The file is claimed after the first pause and
    /// cannot be decoded; it was quarantined as truncated, and the writer then finished it inside
    /// the quarantine. Now it is looked at again once it has stayed unchanged for longer.
    func testWriterPausingLongerThanTheSettleIntervalGetsAVerdict() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model, settleSeconds: 1), folders: folders)
        let bytes = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/007.png"))
        let descriptor = open(folders.root.appendingPathComponent("inbox/paused upload.png").path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        let chunkSize = (bytes.count + 2) / 3
        for index in 0..<3 {
            if index > 0 { usleep(1_500_000) }
            let chunk = bytes[(index * chunkSize)..<min(bytes.count, (index + 1) * chunkSize)]
            XCTAssertEqual(chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }, chunk.count)
        }
        close(descriptor)
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { BinaryHarness.verdict("paused upload.png", in: folders) != nil }, daemon.output)
        XCTAssertEqual(daemon.stop(), 0)
        let verdict = try XCTUnwrap(BinaryHarness.verdict("paused upload.png", in: folders))
        XCTAssertNotEqual(verdict["verdict"] as? String, "error", "\(verdict)")
        XCTAssertEqual(verdict["sha256"] as? String, sha256Hex(of: Array(bytes)))
        XCTAssertEqual(try Data(contentsOf: folders.root.appendingPathComponent("archive/paused upload.png")), bytes)
        XCTAssertEqual(folders.list("quarantine"), [])
    }

    func testBadFilesGoToQuarantineWithAReasonAndTheDaemonGoesOn() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model), folders: folders)
        var corrupt = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/002.png"))
        for offset in stride(from: 200, to: corrupt.count - 200, by: 97) { corrupt[offset] ^= 0x5A }
        let truncated = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/003.png")).prefix(5000)
        let bomb = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("images/huge_declared.png"))
        let bad: [(String, Data, String)] = [
            ("corrupt.png", corrupt, "decode_failure"),
            ("truncated.png", Data(truncated), "decode_failure"),
            ("empty.png", Data(), "decode_failure"),
            ("bomb.png", bomb, "too_large"),
            ("notes.txt", Data("not an image\n".utf8), "unsupported_format"),
        ]
        for (name, bytes, _) in bad { try BinaryHarness.drop(bytes, as: name, into: folders) }
        try BinaryHarness.drop(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/004.png")), as: "after.png", into: folders)
        let names = bad.map(\.0) + ["after.png"]
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { names.allSatisfy { BinaryHarness.verdict($0, in: folders) != nil } }, daemon.output)
        XCTAssertTrue(daemon.process.isRunning, daemon.output)
        XCTAssertEqual(daemon.stop(), 0)

        for (name, bytes, kind) in bad {
            let verdict = try XCTUnwrap(BinaryHarness.verdict(name, in: folders))
            XCTAssertEqual(verdict["verdict"] as? String, "error", name)
            let data = try Data(contentsOf: folders.root.appendingPathComponent("quarantine/\(name).error.json"))
            let record = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
            XCTAssertEqual(record["kind"] as? String, kind, "\(name): \(record)")
            XCTAssertFalse((record["message"] as? String ?? "").isEmpty, name)
            // Nothing is deleted on error: the input is kept byte for byte.
            XCTAssertEqual(try Data(contentsOf: folders.root.appendingPathComponent("quarantine/\(name)")), bytes, name)
        }
        let bombRecord = try String(contentsOf: folders.root.appendingPathComponent("quarantine/bomb.png.error.json"), encoding: .utf8)
        XCTAssertTrue(bombRecord.contains("image is 20000x20000 pixels, more than the limit"), bombRecord)
        XCTAssertNotEqual(BinaryHarness.verdict("after.png", in: folders)?["verdict"] as? String, "error")
        XCTAssertTrue(folders.exists("archive/after.png"))
    }

    func testOddNamesWork() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model), folders: folders)
        let bytes = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/005.png"))
        let names = ["with spaces in it.png", "Flasche-über-Größe №5 瓶.png", "-leading-dash.png", "--help.png", "quote'and\"semicolon;.png", "UPPER.PNG"]
        for name in names { try BinaryHarness.drop(bytes, as: name, into: folders) }
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { names.allSatisfy { BinaryHarness.verdict($0, in: folders) != nil } }, daemon.output)
        XCTAssertEqual(daemon.stop(), 0)
        for name in names {
            let verdict = try XCTUnwrap(BinaryHarness.verdict(name, in: folders))
            XCTAssertEqual(verdict["file"] as? String, name)
            XCTAssertNotEqual(verdict["verdict"] as? String, "error", name)
            XCTAssertEqual(verdict["heatmap"] as? String, name + ".heatmap.png")
            XCTAssertTrue(folders.exists("outbox/\(name).heatmap.png"), name)
            XCTAssertTrue(folders.exists("archive/\(name)"), name)
        }
        // The same bytes give the same score whatever the name.
        let scores = Set(names.compactMap { (BinaryHarness.verdict($0, in: folders)?["score"] as? NSNumber)?.floatValue })
        XCTAssertEqual(scores.count, 1, "\(scores)")
    }

    func testNotificationsArriveInOrderWithWatchdogPings() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let socket = try NotifySocket()
        let daemon = try DaemonProcess(configuration: try BinaryHarness.writeConfiguration(folders, model: model), folders: folders,
                                       environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "600000"])
        var messages: [String] = []
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { messages += socket.receiveAll(); return messages.contains { $0.contains("READY=1") } }, daemon.output)
        try BinaryHarness.drop(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/006.png")), as: "one.png", into: folders)
        XCTAssertTrue(BinaryHarness.wait(seconds: 30) { BinaryHarness.verdict("one.png", in: folders) != nil }, daemon.output)
        // Watchdog interval / 2 = 0.3 s: a few pings while the daemon idles.
        usleep(1_500_000)
        XCTAssertEqual(daemon.stop(), 0, daemon.output)
        messages += socket.receiveAll()

        let ready = try XCTUnwrap(messages.firstIndex { $0.split(separator: "\n").contains("READY=1") }, "\(messages)")
        let stopping = try XCTUnwrap(messages.firstIndex { $0.split(separator: "\n").contains("STOPPING=1") }, "\(messages)")
        let pings = messages.indices.filter { messages[$0].split(separator: "\n").contains("WATCHDOG=1") }
        XCTAssertGreaterThanOrEqual(pings.count, 3, "\(messages)")
        XCTAssertTrue(pings.allSatisfy { ready < $0 && $0 < stopping }, "\(messages)")
        XCTAssertEqual(ready, 0, "READY=1 comes first: \(messages)")
        XCTAssertTrue(messages[ready...].contains { $0.contains("STATUS=") && $0.contains("1 decided") }, "\(messages)")
        XCTAssertEqual(messages.last.map { $0.contains("STOPPING=1") }, true, "\(messages)")
    }
}
