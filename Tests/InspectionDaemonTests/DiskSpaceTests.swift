import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `min_free_space` on a real, small file system: a tmpfs mounted in a private mount namespace
/// (`unshare`), with the real rstpmd running inside it.
final class DiskFloorTests: XCTestCase {
    /// The unshare invocation that can mount a tmpfs here: as any user through a user
    /// namespace, else as root; nil when neither can.
    static func namespaceLauncher(probeIn directory: URL) -> [String]? {
        let target = directory.appendingPathComponent("probe")
        try? FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        for prefix in [["/usr/bin/unshare", "--user", "--map-root-user", "--mount"], ["/usr/bin/unshare", "--mount"]] {
            let probe = prefix + ["/bin/sh", "-c", "mount -t tmpfs -o size=1m rstpmd-probe \"$0\"", target.path]
            if let result = try? Tools.run(URL(fileURLWithPath: prefix[0]), Array(probe.dropFirst())), result.status == 0 { return prefix }
        }
        return nil
    }

    func testClaimsStopBelowTheFloorAndResumeWhenSpaceReturnsWithNothingLost() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        guard let prefix = Self.namespaceLauncher(probeIn: folders.root) else {
            throw XCTSkip("cannot mount a tmpfs in a private mount namespace here (unshare --user --map-root-user --mount and unshare --mount both failed); the disk-floor test needs one")
        }
        // Every folder of the line on an 8 MiB tmpfs, seen only inside the daemon's namespace;
        // the test reaches it through /proc/<pid>/root.
        let mount = folders.root.appendingPathComponent("fs").path
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let yaml = """
        instance: test-host
        metrics_file: \(folders.path("metrics/rstpmd.prom"))
        lines:
          - name: line-1
            inbox: \(mount)/inbox
            work: \(mount)/work
            outbox: \(mount)/outbox
            archive: \(mount)/archive
            quarantine: \(mount)/quarantine
            model: \(model.path)
            poll_interval_seconds: 0.1
            settle_interval_seconds: 0.2
            min_free_space: 3M
        """
        try folders.write(Array(yaml.utf8), to: "rstpmd.yaml")
        let script = "mount -t tmpfs -o size=8m rstpmd-test \(mount) && mkdir \(mount)/inbox \(mount)/work \(mount)/outbox \(mount)/archive \(mount)/quarantine && exec \"$0\" \"$@\""
        let socket = try NotifySocket()
        let daemon = try DaemonProcess(configuration: folders.path("rstpmd.yaml"), folders: folders, environment: ["NOTIFY_SOCKET": socket.path],
                                       launcher: prefix + ["/bin/sh", "-c", script])
        defer { daemon.stop() }
        let inside = URL(fileURLWithPath: "/proc/\(daemon.pid)/root\(mount)")
        var messages: [String] = []
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { messages += socket.receiveAll(); return messages.contains { $0.contains("READY=1") } }, daemon.output)
        let image = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png"))
        func drop(_ name: String) throws {
            let temporary = inside.appendingPathComponent("inbox/.\(name).part")
            try image.write(to: temporary)
            XCTAssertEqual(rename(temporary.path, inside.appendingPathComponent("inbox/\(name)").path), 0)
        }
        func hasVerdict(_ name: String) -> Bool { FileManager.default.fileExists(atPath: inside.appendingPathComponent("outbox/\(name).json").path) }
        func metric(_ series: String) -> String? {
            let text = (try? String(contentsOfFile: folders.path("metrics/rstpmd.prom").string, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.map { String($0.dropFirst(series.count + 1)) }
        }

        try drop("before.png")
        XCTAssertTrue(BinaryHarness.wait(seconds: 30) { hasVerdict("before.png") }, daemon.output)

        // Fill the file system to 1 MiB free: below the 3 MiB floor.
        let ballast = inside.appendingPathComponent("ballast")
        let free = try XCTUnwrap(try FileManager.default.attributesOfFileSystem(forPath: inside.path)[.systemFreeSize] as? NSNumber).int64Value
        try Data(count: Int(free - (1 << 20))).write(to: ballast)
        XCTAssertTrue(BinaryHarness.wait(seconds: 15) { metric(#"rstpmd_intake_paused{line="line-1"}"#) == "1.0" }, daemon.output)
        try drop("during-1.png")
        try drop("during-2.png")
        usleep(2_000_000)
        XCTAssertFalse(hasVerdict("during-1.png") || hasVerdict("during-2.png"), "claimed below the floor: \(daemon.output)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: inside.appendingPathComponent("inbox/during-1.png").path), "waits in the inbox")
        XCTAssertEqual(metric(#"rstpmd_intake_pauses_total{line="line-1"}"#), "1.0")
        XCTAssertTrue(BinaryHarness.wait(seconds: 10) { messages += socket.receiveAll(); return messages.contains { $0.contains("STATUS=") && $0.contains("intake paused") } }, "\(messages)")
        XCTAssertTrue(daemon.output.contains("claiming no more inputs"), daemon.output)
        XCTAssertTrue(daemon.output.contains("MESSAGE_ID=\(JournalEvent.intakePaused.rawValue)"), "the journal event carries its MESSAGE_ID: \(daemon.output)")

        // Space returns: the line resumes by itself and nothing was lost.
        try FileManager.default.removeItem(at: ballast)
        XCTAssertTrue(BinaryHarness.wait(seconds: 30) { hasVerdict("during-1.png") && hasVerdict("during-2.png") }, daemon.output)
        XCTAssertTrue(BinaryHarness.wait(seconds: 10) { metric(#"rstpmd_intake_paused{line="line-1"}"#) == "0.0" }, daemon.output)
        XCTAssertTrue(daemon.output.contains("claiming inputs again"), daemon.output)
        XCTAssertTrue(BinaryHarness.wait(seconds: 10) {
            messages += socket.receiveAll()
            return messages.last { $0.contains("STATUS=") }.map { !$0.contains("intake paused") } ?? false
        }, "\(messages)")
        let archived = (try? FileManager.default.contentsOfDirectory(atPath: inside.appendingPathComponent("archive").path)) ?? []
        XCTAssertEqual(Set(archived), ["before.png", "during-1.png", "during-2.png"])
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: inside.appendingPathComponent("quarantine").path)) ?? ["?"], [])
        XCTAssertEqual(daemon.stop(), 0, daemon.output)
    }
}


/// `retention:` against the real rstpmd (`--once` ends with a retention round); ages come
/// from modification times the test sets.
final class RetentionTests: XCTestCase {
    func testOldestGoFirstTogetherAndAnInputStaysWhileItsVerdictIsInTheOutbox() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, extra: """
                retention:
                  outbox: {max_age_days: 2}
                  archive: {max_age_days: 3}
                  quarantine: {max_bytes: 2300}
            """)
        let day = 86400.0
        func put(_ relative: String, bytes: Int = 100, ageDays: Double) throws {
            try folders.write([UInt8](repeating: 7, count: bytes), to: relative)
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-ageDays * day)], ofItemAtPath: folders.path(relative).string)
        }
        // Outbox: an old verdict with its heatmap, a recent one, heatmaps without verdict (one
        // old, one maybe still being written), and files rstpmd did not write.
        try put("outbox/old.png.json", ageDays: 5)
        try put("outbox/old.png.heatmap.png", ageDays: 5)
        try put("outbox/recent.png.json", ageDays: 1)
        try put("outbox/recent.png.heatmap.png", ageDays: 1)
        try put("outbox/lost.png.heatmap.png", ageDays: 5)
        try put("outbox/young.png.heatmap.png", ageDays: 0)
        try put("outbox/notes.txt", ageDays: 30)
        // Archive: old inputs, one whose verdict is gone with this round, one whose verdict is
        // still there (kept), and a new one.
        try put("archive/old.png", ageDays: 5)
        try put("archive/recent.png", ageDays: 5)
        try put("archive/new.png", ageDays: 0)
        // Quarantine over 2300 bytes: the oldest input goes with its record.
        for (name, age) in [("q1.png", 3.0), ("q2.png", 2.0), ("q3.png", 0.0)] {
            try put("quarantine/\(name)", bytes: 1000, ageDays: age)
            try put("quarantine/\(name).error.json", bytes: 10, ageDays: age)
        }
        // Another instance's work directory and the inbox are never pruned (the inbox input gets
        // a verdict, is archived with its old mtime, and stays: its verdict is new).
        try FileManager.default.createDirectory(atPath: folders.path("work/other-host").string, withIntermediateDirectories: true)
        try put("work/other-host/pending.png", ageDays: 30)
        try folders.write(Array(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/001.png"))), to: "inbox/camera.png")
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-30 * day)], ofItemAtPath: folders.path("inbox/camera.png").string)

        let (status, output) = try Tools.run(BinaryHarness.daemonBinary, ["--once", "--config", configuration.string, "--weights-dir", TestPaths.weightsDirectory.path],
                                             environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(folders.list("outbox"), ["camera.png.heatmap.png", "camera.png.json", "notes.txt", "recent.png.heatmap.png", "recent.png.json", "young.png.heatmap.png"])
        XCTAssertEqual(folders.list("archive"), ["camera.png", "new.png", "recent.png"])
        XCTAssertEqual(folders.list("quarantine"), ["q2.png", "q2.png.error.json", "q3.png", "q3.png.error.json"])
        XCTAssertTrue(folders.exists("work/other-host/pending.png"))
        let metrics = try String(contentsOfFile: folders.path("metrics/rstpmd.prom").string, encoding: .utf8)
        XCTAssertTrue(metrics.contains(#"rstpmd_retention_removed_total{folder="outbox",line="line-1",reason="age"} 2.0"#), metrics)
        XCTAssertTrue(metrics.contains(#"rstpmd_retention_removed_total{folder="archive",line="line-1",reason="age"} 1.0"#), metrics)
        XCTAssertTrue(metrics.contains(#"rstpmd_retention_removed_total{folder="quarantine",line="line-1",reason="size"} 1.0"#), metrics)
        XCTAssertTrue(metrics.contains(#"rstpmd_retained_bytes{folder="quarantine",line="line-1"} 2020.0"#), metrics)
    }

    func testCheckConfigRefusesRetentionThatCannotWork() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        func problems(_ extra: String, policy: String = "archive") -> [ConfigurationError.Problem] {
            let yaml = """
            lines:
              - name: a
                inbox: \(folders.path("inbox"))
                work: \(folders.path("work"))
                outbox: \(folders.path("outbox"))
                archive: \(folders.path("archive"))
                quarantine: \(folders.path("quarantine"))
                model: \(folders.path("model"))
                processed_inputs: \(policy)
            \(extra)
            """
            do {
                _ = try DaemonConfiguration.parse(yaml: yaml, file: "/test.yaml", checkFileSystem: false)
                return []
            } catch let error as ConfigurationError {
                return error.problems
            } catch {
                XCTFail("\(error)")
                return []
            }
        }
        XCTAssertEqual(problems("    retention: {outbox: {max_age_days: 7, max_bytes: 20G}, archive: {max_age_days: 30}}\n    min_free_space: 5%"), [])
        let parsed = try DaemonConfiguration.parse(yaml: """
            lines:
              - {name: a, inbox: /i, work: /w, outbox: /o, archive: /a, quarantine: /q, model: /m, min_free_space: 2G, retention: {quarantine: {max_bytes: "1.5M"}}}
            """, file: "/t.yaml", checkFileSystem: false)
        XCTAssertEqual(parsed.lines[0].minimumFreeSpace, .bytes(2 << 30))
        XCTAssertEqual(parsed.lines[0].retention.quarantine, RetentionLimit(maximumBytes: 1_572_864))
        XCTAssertEqual(try DaemonConfiguration.parse(yaml: "lines: [{name: a, inbox: /i, work: /w, outbox: /o, archive: /a, quarantine: /q, model: /m, min_free_space: 0}]",
                                                     file: "/t.yaml", checkFileSystem: false).lines[0].minimumFreeSpace, nil)
        let cases: [(String, String, String)] = [
            ("    retention: {outbox: {max_age_days: 1}}", "leave", "lines[0].retention.outbox"),
            ("    retention: {archive: {max_age_days: 1}}", "delete", "lines[0].retention.archive"),
            ("    retention: {outbox: {max_age_days: 7}, archive: {max_age_days: 1}}", "archive", "lines[0].retention.archive.max_age_days"),
            ("    retention: {outbox: {}}", "archive", "lines[0].retention.outbox"),
            ("    retention: {outbox: {max_age: 3}}", "archive", "lines[0].retention.outbox.max_age"),
            ("    retention: {archive: {max_bytes: lots}}", "archive", "lines[0].retention.archive.max_bytes"),
            ("    min_free_space: 80%", "archive", "lines[0].min_free_space"),
            ("    min_free_space: -3", "archive", "lines[0].min_free_space"),
        ]
        for (extra, policy, key) in cases {
            XCTAssertEqual(problems(extra, policy: policy).map(\.key), [key], extra)
        }
    }
}

/// What a crash between two unlinks leaves, and names cut to 255 bytes, without a daemon.
final class RetentionPrunerTests: XCTestCase {
    func testLeftoversOfACrashAndLongNamesArePrunedAsTheirGroups() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        var configuration = folders.configuration()
        configuration.retention = RetentionSettings(outbox: RetentionLimit(maximumAgeSeconds: 86400), quarantine: RetentionLimit(maximumAgeSeconds: 86400))
        func put(_ relative: String, _ text: String = "x", date: Date = Date().addingTimeInterval(-3 * 86400)) throws {
            try folders.write(Array(text.utf8), to: relative)
            try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: folders.path(relative).string)
        }
        // A verdict whose name was cut to 255 bytes names its heatmap inside.
        let long = String(repeating: "l", count: 250) + ".png"
        let verdictName = fittingFileName(long, suffix: ".json")
        let heatmapName = fittingFileName(long, suffix: ".heatmap.png")
        XCTAssertNotEqual(verdictName, long + ".json")
        try put("outbox/\(verdictName)", #"{"heatmap": "\#(heatmapName)"}"#)
        try put("outbox/\(heatmapName)", date: Date())  // recent, yet it goes with its verdict
        // A quarantine record whose input went before a crash; an input whose record is fresh
        // but whose own time is old goes with the record.
        try put("quarantine/gone.png.error.json")
        try put("quarantine/bad.png")
        try put("quarantine/bad.png.error.json", date: Date())
        try put("quarantine/fresh.png", date: Date())
        try put("quarantine/fresh.png.error.json", date: Date())
        let reports = RetentionPruner(configuration: configuration, syscalls: SystemCalls()).prune(now: wallClockNanoseconds())
        XCTAssertEqual(folders.list("outbox"), [])
        XCTAssertEqual(folders.list("quarantine"), ["fresh.png", "fresh.png.error.json"])
        XCTAssertEqual(reports["outbox"]?.removedForAge, 1)
        XCTAssertEqual(reports["quarantine"]?.removedForAge, 2)
        XCTAssertEqual(reports["quarantine"]?.errors, [])
    }
}
