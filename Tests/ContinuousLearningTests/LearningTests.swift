import ContinuousLearning
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

final class TrainerProcessTests: XCTestCase {
    /// The child runs at idle priority (SCHED_IDLE, nice 19, idle I/O class) with one thread,
    /// its lines come back, and its exit status is reported.
    func testChildRunsAtIdlePriorityWithOneThread() throws {
        let lines = ManagedLines()
        let exited = ManagedLines()
        let trainer = try TrainerProcess(
            arguments: ["/bin/sh", "-c", "echo started; exec sleep 30"], environment: ["RSTPM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"],
            onLine: { lines.append($0) }, onExit: { exited.append("\($0)") })
        let pid = trainer.processID
        let deadline = Date().addingTimeInterval(20)
        while lines.values.isEmpty && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(lines.values, ["started"])
        // The shell prints before it execs sleep; while an exec is under way /proc/PID/environ
        // reads empty, so wait until sleep runs.
        while (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) != "sleep\n" && Date() < deadline { usleep(1_000) }
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        XCTAssertEqual(fields[16], "19", "nice")
        XCTAssertEqual(fields[38], "5", "scheduling policy SCHED_IDLE")
        let environment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertTrue(environment.contains("OPENBLAS_NUM_THREADS=1"))
        XCTAssertTrue(environment.contains("RSTPM_THREADS=1"))
        XCTAssertEqual(ioPriority(of: pid), 3 << 13, "IOPRIO_CLASS_IDLE")
        XCTAssertEqual(getpgid(pid), pid, "its own process group")
        trainer.send(SIGKILL)
        XCTAssertEqual(trainer.wait(timeout: .now() + 20), .signalled(signal: SIGKILL))
        XCTAssertEqual(exited.values, ["killed by signal 9"])
        XCTAssertFalse(TrainerProcess.isRunning(processID: pid, startTicks: 0))

        let failing = try TrainerProcess(arguments: ["/bin/sh", "-c", "exit 3"], environment: [:], onLine: { _ in }, onExit: { _ in })
        XCTAssertEqual(failing.wait(timeout: .now() + 20), .exited(code: 3))
        XCTAssertThrowsError(try TrainerProcess(arguments: ["/nonexistent/trainer"], environment: [:], onLine: { _ in }, onExit: { _ in }))
    }

    func ioPriority(of pid: pid_t) -> Int {
        typealias Syscall = @convention(c) (Int, Int, Int) -> Int
        let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syscall")!
        return unsafeBitCast(symbol, to: Syscall.self)(252, 1, Int(pid))   // ioprio_get(IOPRIO_WHO_PROCESS, pid)
    }
}

final class LearningLineTests: XCTestCase {
    func makeLearning(_ scratch: Scratch, clock: TestClock, evaluator: ManifestEvaluator = ManifestEvaluator(),
                      minimumNewImages: Int = 5, window: String? = "22:00-05:00", logger: Logger? = nil) throws -> LearningLine {
        let configuration = LearningConfiguration(
            accepted: scratch.path("accepted"), defects: scratch.path("defects"), trainingStore: scratch.path("training"),
            originals: scratch.path("originals"), trainer: try scratch.makeTrainer(), minimumNewImages: minimumNewImages,
            window: window.flatMap(TimeWindow.init(parsing:)), storeSettings: TrainingStoreSettings(capacity: 100, originalShare: 0.5, heldOutShare: 0.2),
            keepVersions: 3, retryDelaySeconds: 0)
        let learning = LearningLine(lineName: "line-1", configuration: configuration, modelStore: scratch.path("models/line-1"), evaluator: evaluator,
                                    logger: logger ?? MemoryLogHandler.logger().0, clock: { clock.now }, timeZone: utc, randomBelow: SeededRandom(seed: 1).below)
        try learning.prepare()
        return learning
    }

    func makeScratch(_ name: String = #function) throws -> Scratch {
        let scratch = try Scratch(name)
        _ = try scratch.makeModelStore()
        for index in 0..<20 { try scratch.write(image(index, tag: "original"), to: "originals/\(index).png") }
        for index in 0..<3 { try scratch.write(image(index, tag: "defect"), to: "defects/\(index).png") }
        return scratch
    }

    func accept(_ scratch: Scratch, _ range: Range<Int>) throws {
        for index in range { try scratch.write(image(index), to: "accepted/\(index).png") }
    }

    /// The store and the serving model as they must stay whatever happens to a run.
    func snapshotOfServingState(_ scratch: Scratch) -> [String] {
        var state = ["current -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("models/line-1/current").string)) ?? "?")]
        state += scratch.list("models/line-1/v0001").map { "v0001/\($0): \(scratch.read("models/line-1/v0001/\($0)") ?? "?")" }
        state += ["index: \(scratch.read("training/index.json") ?? "?")"]
        state += scratch.list("training/train").map { "train/\($0)" } + scratch.list("training/held_out").map { "held_out/\($0)" }
        return state
    }

    func testTrainingStartsOnlyInsideTheWindowOrOnRequest() throws {
        let scratch = try makeScratch()
        defer { scratch.remove() }
        let clock = TestClock(hour: 12)
        let learning = try makeLearning(scratch, clock: clock)
        try accept(scratch, 0..<3)
        var tick = learning.tick()
        XCTAssertEqual(tick.ingest.added, 3)
        XCTAssertFalse(tick.startedTraining)
        XCTAssertEqual(tick.waiting, "outside the training window 22:00-05:00")
        clock.set(hour: 23)
        XCTAssertEqual(learning.tick().waiting, "3 of 5 new accepted images")
        clock.set(hour: 12)
        try accept(scratch, 3..<6)
        tick = learning.tick()
        XCTAssertFalse(tick.startedTraining, "enough images, but outside the window")
        // On demand: whatever the hour.
        try LearningLine.requestRetrain(trainingStore: scratch.path("training"))
        XCTAssertTrue(learning.isRetrainRequested)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        XCTAssertFalse(learning.isRetrainRequested, "the request is done")
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
        XCTAssertEqual(learning.store.newImagesSinceTraining, 0)
        XCTAssertEqual(scratch.trainerRuns.count, 1)
        XCTAssertFalse(learning.tick().startedTraining, "nothing new since")
    }

    /// SIGKILL of the trainer, three times in a row: the serving model and the store stay as
    /// they were, and each new attempt resumes the interrupted candidate until one finishes.
    func testKilledTrainerLeavesEverythingIntactAndResumes() throws {
        let scratch = try makeScratch()
        defer { scratch.remove() }
        let clock = TestClock(hour: 23)
        let learning = try makeLearning(scratch, clock: clock)
        try scratch.write("", to: "control/hang")
        try accept(scratch, 0..<6)
        XCTAssertEqual(learning.tick().ingest.added, 6)
        let before = snapshotOfServingState(scratch)
        for round in 0..<3 {
            let pid = try XCTUnwrap(learning.trainerProcessID, "round \(round): no trainer running")
            waitForRuns(scratch, round + 1)
            XCTAssertEqual(kill(pid, SIGKILL), 0)
            XCTAssertTrue(learning.waitUntilIdle(timeout: 30))
            XCTAssertEqual(snapshotOfServingState(scratch), before, "round \(round)")
            XCTAssertTrue(scratch.exists("models/line-1/.candidate/progress"), "the interrupted candidate stays for resuming")
            let tick = learning.tick()
            XCTAssertTrue(tick.startedTraining, "round \(round): \(tick.waiting ?? "")")
            XCTAssertTrue(tick.resumed)
        }
        // The hanging run is ended by SIGKILL once more; the next one completes.
        waitForRuns(scratch, 4)
        try FileManager.default.removeItem(atPath: scratch.path("control/hang").string)
        kill(try XCTUnwrap(learning.trainerProcessID), SIGKILL)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 30))
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
        let runs = scratch.trainerRuns
        XCTAssertEqual(runs.count, 5)
        XCTAssertFalse(runs[0].hasSuffix("--resume"))
        XCTAssertTrue(runs[1...].allSatisfy { $0.hasSuffix("--resume") }, "\(runs)")
        XCTAssertEqual(scratch.read("models/line-1/v0002/progress")?.split(separator: "\n").count, 5, "one candidate folder through all attempts")
    }

    /// The daemon dies while its trainer runs (the trainer keeps running, orphaned): a new
    /// daemon stops the orphan before it touches the candidate, then resumes the run. Twice.
    func testDaemonCrashDuringTrainingIsRecovered() throws {
        let scratch = try makeScratch()
        defer { scratch.remove() }
        let clock = TestClock(hour: 23)
        try scratch.write("", to: "control/hang")
        try accept(scratch, 0..<6)
        var crashedPIDs: [pid_t] = []
        var before: [String] = []
        for round in 0..<2 {
            weak var abandoned: LearningLine?
            do {
                let learning = try makeLearning(scratch, clock: clock)
                XCTAssertTrue(learning.tick().startedTraining, "round \(round)")
                if round == 0 { before = snapshotOfServingState(scratch) }
                waitForRuns(scratch, round + 1)
                crashedPIDs.append(try XCTUnwrap(learning.trainerProcessID))
                abandoned = learning
            }
            // The daemon process is gone: nothing of it acts any more.
            XCTAssertTrue(waitUntil { abandoned == nil }, "round \(round): the crashed daemon's object is still alive")
            XCTAssertEqual(kill(crashedPIDs.last!, 0), 0, "the orphaned trainer still runs")
        }
        try FileManager.default.removeItem(atPath: scratch.path("control/hang").string)
        let learning = try makeLearning(scratch, clock: clock)
        for pid in crashedPIDs { XCTAssertTrue(waitUntil { kill(pid, 0) != 0 }, "orphan \(pid) was stopped") }
        XCTAssertEqual(snapshotOfServingState(scratch), before)
        let tick = learning.tick()
        XCTAssertTrue(tick.startedTraining)
        XCTAssertTrue(tick.resumed)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
        XCTAssertEqual(scratch.trainerRuns.count, 3)
    }

    func testCrashingTrainerIsReportedAndRetried() throws {
        let scratch = try makeScratch()
        defer { scratch.remove() }
        let (logger, log) = MemoryLogHandler.logger()
        let learning = try makeLearning(scratch, clock: TestClock(hour: 23), logger: logger)
        try scratch.write("", to: "control/fail")
        try accept(scratch, 0..<6)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 30))
        XCTAssertTrue(log.messages.contains { $0.contains("trainer exited with status 3") }, "\(log.messages)")
        XCTAssertTrue(log.messages.contains { $0.contains("trainer: out of memory") })
        XCTAssertTrue(learning.status.hasPrefix("training failed"), learning.status)
        XCTAssertEqual(try learning.models.current()?.name, "v0001")
        try FileManager.default.removeItem(atPath: scratch.path("control/fail").string)
        XCTAssertTrue(learning.tick().startedTraining)
        XCTAssertTrue(learning.waitUntilIdle(timeout: 60))
        XCTAssertEqual(try learning.models.current()?.name, "v0002")
    }

    /// Waits until `count` runs have written to the candidate folder (so a kill hits a run
    /// that is under way, not one still starting).
    func waitForRuns(_ scratch: Scratch, _ count: Int) {
        XCTAssertTrue(waitUntil { (scratch.read("models/line-1/.candidate/progress") ?? "").split(separator: "\n").count >= count }, "run \(count) never started")
    }
}

/// Polls `condition` for up to `timeout` seconds.
func waitUntil(timeout: TimeInterval = 30, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

final class ManagedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var values: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
}
