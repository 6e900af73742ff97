import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `rstpm setup-line`, the real binary, in a temporary folder: folders with their modes, a stanza
/// the daemon's parser accepts, and no overwriting without --force.
final class SetupLineTests: XCTestCase {
    private var scratch: URL!
    private var rstpm: URL!

    override func setUpWithError() throws {
        guard let binary = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm is not built: swift build -c release") }
        rstpm = binary
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-setup-line-\(UUID().uuidString.prefix(8))")
        // A model bundle as far as setup-line and the configuration checker look: a folder with a manifest.
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("models/bottle"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: scratch.appendingPathComponent("models/bottle/manifest.json"))
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("models/other"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: scratch.appendingPathComponent("models/other/manifest.json"))
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
    }

    private func path(_ relative: String) -> String { scratch.appendingPathComponent(relative).path }

    /// The group of this process, which it may give its folders without root.
    private var ownGroup: String { String(cString: getgrgid(getegid())!.pointee.gr_name) }
    private var ownUser: String { String(cString: getpwuid(geteuid())!.pointee.pw_name) }

    private func setupLine(_ name: String, model: String = "models/bottle", _ extra: [String] = []) throws -> (status: Int32, output: String) {
        try Tools.run(rstpm, ["setup-line", name, "--model", path(model), "--config", path("rstpmd.yaml"), "--root", path("lines"),
                              "--user", ownUser, "--group", ownGroup] + extra)
    }

    private func mode(_ relative: String) throws -> String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path(relative))
        var status = stat()
        XCTAssertEqual(stat(path(relative), &status), 0)
        XCTAssertEqual(attributes[.groupOwnerAccountID] as? Int, Int(getegid()), relative)
        return String(status.st_mode & 0o7777, radix: 8)
    }

    func testCreatesTheFoldersWithTheirModesAndAStanzaTheDaemonAccepts() throws {
        // Added to the shipped example configuration, whose comments and line must survive.
        let example = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("etc/rstpmd/rstpmd.yaml"), encoding: .utf8)
        try example.write(toFile: path("rstpmd.yaml"), atomically: true, encoding: .utf8)
        let (status, output) = try setupLine("line-a")
        XCTAssertEqual(status, 0, output)
        for (folder, expected) in [("lines/line-a", "750"), ("lines/line-a/inbox", "2770"), ("lines/line-a/work", "750"),
                                   ("lines/line-a/outbox", "2750"), ("lines/line-a/archive", "750"), ("lines/line-a/quarantine", "750")] {
            XCTAssertEqual(try mode(folder), expected, folder)
        }
        let written = try String(contentsOfFile: path("rstpmd.yaml"), encoding: .utf8)
        XCTAssertTrue(written.hasPrefix(example), "the example's text must stay as it was, the line added after it")
        let parsed = try DaemonConfiguration.parse(yaml: written, file: FilePath(path("rstpmd.yaml")), checkFileSystem: false)
        XCTAssertEqual(parsed.lines.map(\.name), ["bottle-line-1", "line-a"])
        let line = parsed.lines[1]
        XCTAssertEqual(line.inbox, FilePath(path("lines/line-a/inbox")))
        XCTAssertEqual(line.work, FilePath(path("lines/line-a/work")))
        XCTAssertEqual(line.archive, FilePath(path("lines/line-a/archive")))
        XCTAssertEqual(line.modelBundle, FilePath(path("models/bottle")))
        XCTAssertTrue(output.contains("usermod -aG \(ownGroup)"), output)
        XCTAssertTrue(output.contains("setgid"), output)

        // A second line goes after the first.
        XCTAssertEqual(try setupLine("line-b", model: "models/other").status, 0)
        let both = try DaemonConfiguration.parse(yaml: String(contentsOfFile: path("rstpmd.yaml"), encoding: .utf8), file: FilePath(path("rstpmd.yaml")), checkFileSystem: false)
        XCTAssertEqual(both.lines.map(\.name), ["bottle-line-1", "line-a", "line-b"])
    }

    func testForceReplacesTheExampleLineAndKeepsTheComments() throws {
        let example = try String(contentsOf: TestPaths.repositoryRoot.appendingPathComponent("etc/rstpmd/rstpmd.yaml"), encoding: .utf8)
        try example.write(toFile: path("rstpmd.yaml"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try setupLine("bottle-line-1").status, 1, "the example has this line")
        let (status, output) = try setupLine("bottle-line-1", ["--force"])
        XCTAssertEqual(status, 0, output)
        let written = try String(contentsOfFile: path("rstpmd.yaml"), encoding: .utf8)
        let parsed = try DaemonConfiguration.parse(yaml: written, file: FilePath(path("rstpmd.yaml")), checkFileSystem: false)
        XCTAssertEqual(parsed.lines.map(\.name), ["bottle-line-1"])
        XCTAssertEqual(parsed.lines[0].inbox, FilePath(path("lines/bottle-line-1/inbox")))
        XCTAssertEqual(parsed.metricsFile, "/var/lib/rstpmd/metrics/rstpmd.prom")
        for comment in ["# rstpmd configuration. Check it with", "# How long SIGTERM waits", "    # learning:", "    #   keep_versions: 5"] {
            XCTAssertTrue(written.contains(comment), "lost: \(comment)\n\(written)")
        }
        XCTAssertFalse(written.contains("/srv/rstpmd/bottle-line-1/inbox"), written)
    }

    func testANewConfigurationIsCheckedWithTheDaemonsDiskChecks() throws {
        let (status, output) = try setupLine("line-a")
        XCTAssertEqual(status, 0, output)
        let text = try String(contentsOfFile: path("rstpmd.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "metrics_file: /var/lib/rstpmd/metrics/rstpmd.prom\n", with: "")
        let configuration = try DaemonConfiguration.parse(yaml: text, file: FilePath(path("rstpmd.yaml")))
        XCTAssertEqual(configuration.lines.map(\.name), ["line-a"])
    }

    func testRefusesToOverwriteALineOrItsFoldersWithoutForce() throws {
        XCTAssertEqual(try setupLine("line-a").status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: path("rstpmd.yaml")))

        // The same name again: refused, the configuration untouched.
        let again = try setupLine("line-a", model: "models/other")
        XCTAssertEqual(again.status, 1, again.output)
        XCTAssertTrue(again.output.contains("already has a line \"line-a\"") && again.output.contains("--force"), again.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("rstpmd.yaml"))), before)

        // Another name whose folder exists: refused, nothing written, the folder's content kept.
        try FileManager.default.createDirectory(atPath: path("lines/line-b/inbox"), withIntermediateDirectories: true)
        try Data("image".utf8).write(to: URL(fileURLWithPath: path("lines/line-b/inbox/kept.png")))
        let existing = try setupLine("line-b")
        XCTAssertEqual(existing.status, 1, existing.output)
        XCTAssertTrue(existing.output.contains("exists already"), existing.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("rstpmd.yaml"))), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("lines/line-b/outbox")))

        // --force replaces line-a's stanza (one line-a, the new model) and resets a changed mode.
        XCTAssertEqual(chmod(path("lines/line-a/inbox"), 0o700), 0)
        let forced = try setupLine("line-a", model: "models/other", ["--force"])
        XCTAssertEqual(forced.status, 0, forced.output)
        let parsed = try DaemonConfiguration.parse(yaml: String(contentsOfFile: path("rstpmd.yaml"), encoding: .utf8), file: FilePath(path("rstpmd.yaml")), checkFileSystem: false)
        XCTAssertEqual(parsed.lines.map(\.name), ["line-a"])
        XCTAssertEqual(parsed.lines[0].modelBundle, FilePath(path("models/other")))
        XCTAssertEqual(try mode("lines/line-a/inbox"), "2770")
        let forcedExisting = try setupLine("line-b", ["--force"])
        XCTAssertEqual(forcedExisting.status, 0, forcedExisting.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("lines/line-b/inbox/kept.png")))
    }

    func testWithoutRootItMakesTheFoldersAsItsUserAndSaysHowToFinish() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { throw XCTSkip("needs root and setpriv to run as nobody") }
        let shared = scratch.appendingPathComponent("shared")
        try FileManager.default.createDirectory(at: shared, withIntermediateDirectories: true)
        XCTAssertEqual(chmod(scratch.path, 0o755), 0)
        XCTAssertEqual(chmod(shared.path, 0o777), 0)
        let (status, output) = try Tools.run(URL(fileURLWithPath: "/usr/bin/setpriv"), [
            "--reuid=65534", "--regid=65534", "--clear-groups", rstpm.path, "setup-line", "line-n", "--model", path("models/bottle"),
            "--config", path("shared/rstpmd.yaml"), "--root", path("shared/lines"), "--group", ownGroup,
        ])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("not running as root, so the folders belong to you, not to rstpmd:\(ownGroup)"), output)
        XCTAssertTrue(output.contains("chown -R rstpmd:\(ownGroup) \(path("shared/lines/line-n"))"), output)
        var information = stat()
        XCTAssertEqual(stat(path("shared/lines/line-n/inbox"), &information), 0)
        XCTAssertEqual(information.st_uid, 65534)
        XCTAssertEqual(String(information.st_mode & 0o7777, radix: 8), "2770")
        XCTAssertEqual(try DaemonConfiguration.parse(yaml: String(contentsOfFile: path("shared/rstpmd.yaml"), encoding: .utf8),
                                                     file: FilePath(path("shared/rstpmd.yaml")), checkFileSystem: false).lines.map(\.name), ["line-n"])
    }

    func testAMissingGroupOrModelIsExplainedNotACrash() throws {
        let noGroup = try Tools.run(rstpm, ["setup-line", "line-a", "--model", path("models/bottle"), "--config", path("rstpmd.yaml"),
                                            "--root", path("lines"), "--group", "rstpm-no-such-group", "--print"])
        XCTAssertEqual(noGroup.status, 0, noGroup.output)
        XCTAssertTrue(noGroup.output.contains("the group rstpm-no-such-group does not exist"), noGroup.output)
        XCTAssertTrue(noGroup.output.contains("chown -R rstpmd:rstpm-no-such-group \(path("lines/line-a"))"), noGroup.output)
        XCTAssertTrue(noGroup.output.contains("chmod 2770 \(path("lines/line-a/inbox"))"), noGroup.output)
        // --print writes no configuration; the stanza it prints parses.
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("rstpmd.yaml")))
        let stanza = noGroup.output.split(separator: "\n").prefix { $0.hasPrefix("  ") }.joined(separator: "\n")
        let parsed = try DaemonConfiguration.parse(yaml: "lines:\n" + stanza + "\n", file: "/printed.yaml", checkFileSystem: false)
        XCTAssertEqual(parsed.lines.first?.name, "line-a")

        // A --root it makes is the daemon's too (it must pass through it).
        XCTAssertEqual(try mode("lines"), "750")

        let noModel = try setupLine("line-c", model: "models/missing")
        XCTAssertEqual(noModel.status, 1, noModel.output)
        XCTAssertTrue(noModel.output.contains("not a model bundle"), noModel.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("lines/line-c")))
    }
}
