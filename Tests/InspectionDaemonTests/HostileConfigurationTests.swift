import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// Operator mistakes in rstpmd.yaml that used to start a looping or verdict-losing daemon.
final class HostileConfigurationTests: XCTestCase {
    func problems(_ yaml: String) -> [ConfigurationError.Problem] {
        do {
            _ = try DaemonConfiguration.parse(yaml: yaml, file: "test.yaml")
            return []
        } catch let error as ConfigurationError {
            return error.problems
        } catch {
            XCTFail("\(type(of: error)): \(error)")
            return []
        }
    }

    /// `folders` with its `name` folder replaced by a symbolic link to `target`.
    func link(_ name: String, to target: String, in folders: LineFolders) throws {
        let url = folders.root.appendingPathComponent(name)
        try FileManager.default.removeItem(at: url)
        try FileManager.default.createSymbolicLink(at: url, withDestinationURL: folders.root.appendingPathComponent(target))
    }

    func testFolderThatIsTheInboxThroughASymbolicLinkIsRefused() throws {
        // archive -> inbox re-inspected one image 197 times in 12 s; outbox -> inbox inspected
        // its own heatmaps; outbox = quarantine mixed verdicts with error files.
        for (name, target) in [("archive", "inbox"), ("outbox", "inbox"), ("work", "inbox"), ("outbox", "quarantine")] {
            let folders = try LineFolders()
            defer { folders.remove() }
            try link(name, to: target, in: folders)
            let found = problems(lineYAML(folders))
            // Reported under whichever of the two keys comes later in the line.
            let keys = ["lines[0].\(name)", "lines[0].\(target)"]
            XCTAssertTrue(found.contains { keys.contains($0.key) && $0.message.contains("same directory") && keys.allSatisfy($0.description.contains) }, "\(name) -> \(target): \(found)")
        }
    }

    /// YAML's "\0" escape put a NUL into a path, and the C calls cut it there: "/x/in\0box"
    /// quietly named /x/in.
    func testNULInAStringIsRefused() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let yaml = lineYAML(folders).replacingOccurrences(of: "inbox: \(folders.path("inbox"))", with: "inbox: \"\(folders.path("inbox"))\\0box\"")
        XCTAssertNotEqual(yaml, lineYAML(folders))
        let found = problems(yaml)
        XCTAssertTrue(found.contains { $0.key == "lines[0].inbox" && $0.message.contains("NUL") }, "\(found)")
    }

    func testFolderInsideAnotherIsRefused() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        try FileManager.default.createDirectory(at: folders.root.appendingPathComponent("inbox/done"), withIntermediateDirectories: true)
        let yaml = lineYAML(folders).replacingOccurrences(of: "archive: \(folders.path("archive"))", with: "archive: \(folders.path("inbox/done"))")
        let found = problems(yaml)
        XCTAssertTrue(found.contains { $0.key == "lines[0].archive" && $0.message.contains("lies inside lines[0].inbox") }, "\(found)")
    }

    func testLinesSharingFoldersAreRefused() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        for name in ["inbox-b", "work-b", "archive-b", "quarantine-b"] {
            try FileManager.default.createDirectory(at: folders.root.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        // Line b's inbox is line a's outbox, and both write one quarantine.
        let second = """
          - name: line-b
            inbox: \(folders.path("outbox"))
            work: \(folders.path("work-b"))
            outbox: \(folders.path("inbox-b"))
            archive: \(folders.path("archive-b"))
            quarantine: \(folders.path("quarantine"))
            model: \(folders.path("model"))
        """
        let found = problems(lineYAML(folders, extra: second))
        XCTAssertTrue(found.contains { $0.key == "lines[1].inbox" && $0.message.contains("lines[0].outbox") }, "\(found)")
        XCTAssertTrue(found.contains { $0.key == "lines[1].quarantine" && $0.message.contains("lines[0].quarantine") }, "\(found)")
    }

    func testMetricsFileInsideAnInboxIsRefused() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let yaml = "metrics_file: \(folders.path("inbox/rstpmd.prom"))\n" + lineYAML(folders)
        let found = problems(yaml)
        XCTAssertTrue(found.contains { $0.key == "metrics_file" && $0.message.contains("lines[0].inbox") }, "\(found)")
        // Beside the folders it is fine.
        XCTAssertEqual(problems("metrics_file: \(folders.path("metrics/rstpmd.prom"))\n" + lineYAML(folders)).map(\.key), [])
    }

    func testThresholdsThatCannotSeparateNeedAnExplicitOverride() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        for threshold in ["-1", "0", "3e38", "65"] {
            let yaml = lineYAML(folders).replacingOccurrences(of: "threshold: 0.25", with: "threshold: \(threshold)")
            let found = problems(yaml)
            XCTAssertTrue(found.contains { $0.key == "lines[0].threshold" && $0.message.contains("threshold_override_unchecked") }, "\(threshold): \(found)")
        }
        let unchecked = lineYAML(folders).replacingOccurrences(of: "threshold: 0.25", with: "threshold: 0\n    threshold_override_unchecked: true")
        let configuration = try DaemonConfiguration.parse(yaml: unchecked, file: "test.yaml")
        XCTAssertEqual(configuration.lines[0].thresholdOverride, 0)
    }
}
