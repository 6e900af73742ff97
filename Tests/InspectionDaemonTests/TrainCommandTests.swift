import Foundation
import TestSupport
import XCTest

/// `rstpm train` as an operator meets it: an existing output, Ctrl-C and the command that
/// resumes, log lines beside the progress bar on a terminal, a threshold from few images.
final class TrainCommandTests: XCTestCase {
    func scratchFolder() throws -> URL {
        guard FileManager.default.isExecutableFile(atPath: BinaryHarness.cliBinary.path) else {
            throw XCTSkip("\(BinaryHarness.cliBinary.path) missing: run swift build -c release first")
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-train-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A bundle or an unfinished run in --out is not overwritten without --force.
    func testExistingOutputNeedsForce() throws {
        let folder = try scratchFolder()
        let bundle = folder.appendingPathComponent("bundle"), unfinished = folder.appendingPathComponent("unfinished")
        try FileManager.default.createDirectory(at: unfinished.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: bundle, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: bundle.appendingPathComponent("manifest.json"))
        try Data("{}".utf8).write(to: unfinished.appendingPathComponent("checkpoints/progress.json"))
        for (out, expected) in [(bundle, "already holds a model bundle"), (unfinished, "holds an unfinished run")] {
            let result = try Tools.run(BinaryHarness.cliBinary, ["train", "--data", folder.appendingPathComponent("none").path, "--out", out.path])
            XCTAssertEqual(result.status, 1, result.output)
            XCTAssertTrue(result.output.contains(expected) && result.output.contains("--force"), result.output)
        }
        XCTAssertEqual(try String(contentsOf: bundle.appendingPathComponent("manifest.json"), encoding: .utf8), "{}", "the bundle is untouched")
        // --force gets past the check (to the missing data folder).
        let forced = try Tools.run(BinaryHarness.cliBinary, ["train", "--data", folder.appendingPathComponent("none").path, "--out", bundle.path, "--force",
                                                             "--weights-dir", TestPaths.weightsDirectory.path])
        XCTAssertFalse(forced.output.contains("already holds"), forced.output)
    }

    /// Ctrl-C stops at the end of a step with exit status 130 and prints the command that
    /// resumes; that command, run on a terminal, finishes the run with no log line glued to the
    /// progress bar, and warns that 2 validation images make a weak threshold.
    func testInterruptPrintsTheResumeCommand() throws {
        _ = try BinaryHarness.tinyModel()  // skips without weights, bottle or binaries
        let folder = try scratchFolder()
        let images = folder.appendingPathComponent("good")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for index in 0..<8 {
            let name = String(format: "%03d.png", index)
            try FileManager.default.copyItem(at: BinaryHarness.bottle.appendingPathComponent("train/good/\(name)"), to: images.appendingPathComponent(name))
        }
        let configuration = folder.appendingPathComponent("config.json")
        try Data(#"{"inputWidth": 64, "inputHeight": 64, "batchSize": 2, "validationFraction": 0.25}"#.utf8).write(to: configuration)
        let out = folder.appendingPathComponent("model")

        // Without a checkpoint --resume says so (checked in the first run, which resumes nothing).
        let process = Process()
        process.executableURL = BinaryHarness.cliBinary
        process.arguments = ["train", "--data", images.path, "--out", out.path, "--config", configuration.path, "--epochs", "3,1",
                             "--weights-dir", TestPaths.weightsDirectory.path, "--resume"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let progress = out.appendingPathComponent("checkpoints/progress.json")
        let saved = BinaryHarness.wait(seconds: 120) { FileManager.default.fileExists(atPath: progress.path) }
        kill(process.processIdentifier, SIGINT)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertTrue(saved, output)
        XCTAssertTrue(output.contains("no checkpoint to resume"), output)
        XCTAssertEqual(process.terminationReason, .exit, output)
        XCTAssertEqual(process.terminationStatus, 130, output)
        let lines = output.split(separator: "\n").map(String.init)
        let index = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("interrupted: the epochs finished so far are saved in") }, output)
        let command = lines[index + 1].trimmingCharacters(in: .whitespaces)
        XCTAssertTrue(command.hasPrefix(BinaryHarness.cliBinary.path + " train ") && command.hasSuffix(" --resume"), command)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.json").path))

        // The printed command, on a pseudo-terminal (script(1)), so that the progress bar is drawn.
        let resumed = try Tools.run(URL(fileURLWithPath: "/usr/bin/script"), ["-qefc", command, "/dev/null"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming"), resumed.output)
        XCTAssertTrue(resumed.output.contains("calibrated on only 2 validation image(s), fewer than 10"), resumed.output)
        XCTAssertTrue(resumed.output.contains("ETA"), "no progress bar drawn: \(resumed.output)")
        // Split on "\r\n" too: a pseudo-terminal ends lines so, and Swift sees it as one Character.
        for line in resumed.output.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map(String.init) {
            // What the terminal shows of the line: the text after the last erase.
            let shown = line.components(separatedBy: "\u{1B}[K").last ?? line
            XCTAssertFalse(shown.contains("ETA") && shown.contains("rstpm.train"), "a log line glued to the bar: \(line.debugDescription)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.json").path))
    }
}
