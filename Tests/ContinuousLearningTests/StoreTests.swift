import Checkpoints
import ContinuousLearning
import Foundation
import SystemPackage
import XCTest

final class TrainingStoreTests: XCTestCase {
    func makeStore(_ scratch: Scratch, capacity: Int = 20, seed: UInt64 = 7) throws -> TrainingStore {
        let random = SeededRandom(seed: seed)
        let store = TrainingStore(root: scratch.path("store"), settings: TrainingStoreSettings(capacity: capacity, originalShare: 0.5, heldOutShare: 0.1),
                                  randomBelow: random.below)
        try store.open()
        return store
    }

    func testDuplicatesAreRecognisedByContentWhateverTheirName() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        for index in 0..<4 { try scratch.write(image(index, tag: "original"), to: "originals/\(index).png") }
        let store = try makeStore(scratch)
        XCTAssertEqual(try store.seed(originals: scratch.path("originals")), 4)
        XCTAssertEqual(try store.seed(originals: scratch.path("originals")), 0, "seeding happens once")

        try scratch.write(image(0, tag: "original"), to: "accepted/same-as-original.PNG")
        try scratch.write(image(1), to: "accepted/a.png")
        try scratch.write(image(1), to: "accepted/a-again.png")
        try scratch.write(image(2), to: "accepted/.upload.png")   // still being written: left alone
        let summary = try store.ingest(from: scratch.path("accepted"))
        XCTAssertEqual(summary.added, 1)
        XCTAssertEqual(summary.duplicates, 2)
        XCTAssertEqual(scratch.list("accepted"), [".upload.png"], "taken files leave accepted/")
        XCTAssertEqual(store.acceptedTotal, 1, "duplicates do not count as new images")
        XCTAssertEqual(store.entries.count, 5)
        let digest = sha256Hex(of: image(1))
        let entry = try XCTUnwrap(store.entries.first { $0.sha256 == digest })
        XCTAssertEqual(entry.file, digest + ".png")
        XCTAssertEqual(entry.origin, .accepted)
        XCTAssertTrue(scratch.exists("store/\(entry.pool.rawValue)/\(entry.file)"))

        // The same bytes accepted again later: still a duplicate; a reopened store agrees.
        try scratch.write(image(1), to: "accepted/later.png")
        let reopened = try makeStore(scratch)
        XCTAssertEqual(try reopened.ingest(from: scratch.path("accepted")).duplicates, 1)
        XCTAssertEqual(reopened.entries, store.entries)
    }

    func testReservoirCapsTheStoreKeepsOriginalsAndSamplesAllArrivals() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        for index in 0..<40 { try scratch.write(image(index, tag: "original"), to: "originals/\(index).png") }
        let store = try makeStore(scratch, capacity: 20)
        try store.seed(originals: scratch.path("originals"))
        XCTAssertEqual(store.capacity(of: .heldOut), 2)
        XCTAssertEqual(store.capacity(of: .train), 18)
        let originals = store.entries.filter { $0.origin == .original }
        XCTAssertEqual(originals.filter { $0.pool == .train }.count, 9, "half of the training pool is reserved for originals")
        XCTAssertLessThanOrEqual(originals.filter { $0.pool == .heldOut }.count, 1)
        for entry in store.entries { XCTAssertEqual(store.pool(forDigest: entry.sha256), entry.pool, "the split follows the digest") }

        // 300 accepted images in six batches; remember which batch each came from.
        var batchOf: [String: Int] = [:]
        for batch in 0..<6 {
            for index in (batch * 50)..<(batch * 50 + 50) {
                try scratch.write(image(index), to: "accepted/\(index).png")
                batchOf[sha256Hex(of: image(index))] = batch
            }
            let summary = try store.ingest(from: scratch.path("accepted"))
            XCTAssertEqual(summary.added + summary.dropped, 50)
            XCTAssertLessThanOrEqual(store.entries.count, 20)
        }
        XCTAssertEqual(store.acceptedTotal, 300)
        XCTAssertEqual(store.entries.filter { $0.origin == .original }, originals, "originals are never replaced")
        let acceptedTrain = store.entries.filter { $0.origin == .accepted && $0.pool == .train }
        XCTAssertEqual(acceptedTrain.count, 9, "accepted images fill the rest of the training pool")
        // A uniform sample of all 300, not the first or the last ones.
        let batches = Set(acceptedTrain.compactMap { batchOf[$0.sha256] })
        XCTAssertGreaterThanOrEqual(batches.count, 3, "kept images come from batches \(batches.sorted())")
        // What the index names is exactly what is on disk.
        for pool in TrainingStore.Pool.allCases {
            XCTAssertEqual(scratch.list("store/\(pool.rawValue)"), store.entries.filter { $0.pool == pool }.map(\.file).sorted())
        }
        XCTAssertEqual(scratch.list("accepted"), [])
    }

    func testFilesACrashLeftUnindexedAreRemovedAtOpen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try makeStore(scratch)
        try scratch.write(image(1), to: "accepted/a.png")
        try store.ingest(from: scratch.path("accepted"))
        // A crash between writing an image and the index, and a temporary file.
        try scratch.write(image(2), to: "store/train/\(sha256Hex(of: image(2))).png")
        try scratch.write(image(3), to: "store/train/.x.rstpmd.tmp")
        let reopened = try makeStore(scratch)
        XCTAssertEqual(reopened.entries, store.entries)
        XCTAssertEqual(scratch.list("store/train") + scratch.list("store/held_out"), store.entries.map(\.file))
    }

    func testSnapshotIsStableWhileTheStoreChanges() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try makeStore(scratch, capacity: 12)
        for index in 0..<8 { try scratch.write(image(index), to: "accepted/\(index).png") }
        try store.ingest(from: scratch.path("accepted"))
        let count = try store.makeSnapshot()
        XCTAssertEqual(count, store.images(in: .train).count)
        let before = scratch.list("store/snapshot")
        for index in 8..<100 { try scratch.write(image(index), to: "accepted/\(index).png") }
        let summary = try store.ingest(from: scratch.path("accepted"))
        XCTAssertGreaterThan(summary.evicted, 0)
        XCTAssertEqual(scratch.list("store/snapshot"), before, "eviction does not touch the running trainer's images")
        for name in before { XCTAssertNotNil(scratch.read("store/snapshot/\(name)")) }
        XCTAssertTrue(Set(store.images(in: .heldOut).map { $0.lastComponent!.string }).isDisjoint(with: before), "held-out images are never trained on")
    }
}

final class ModelStoreTests: XCTestCase {
    func testVersionsRollbackAndPruning() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let models = try scratch.makeModelStore()
        XCTAssertTrue(ModelStore.isStore(scratch.path("models/line-1")))
        XCTAssertFalse(ModelStore.isStore(scratch.path("models/line-1/v0001")))
        XCTAssertEqual(try models.current()?.name, "v0001")
        for _ in 0..<3 {
            try scratch.write(#"{"quality":"good"}"#, to: "models/line-1/.candidate/manifest.json")
            let version = try models.commitCandidate()
            try models.activate(version.name)
        }
        XCTAssertEqual(try models.versions().map(\.name), ["v0001", "v0002", "v0003", "v0004"])
        XCTAssertEqual(try models.current()?.name, "v0004")
        XCTAssertEqual(try models.rollback().name, "v0003")
        XCTAssertEqual(try models.rollback(to: "v0001").name, "v0001")
        XCTAssertThrowsError(try models.rollback(to: "v0009"))
        // The current version survives pruning even when it is old; numbers never repeat.
        XCTAssertEqual(try models.prune(keeping: 2), ["v0002"])
        XCTAssertEqual(try models.versions().map(\.name), ["v0001", "v0003", "v0004"])
        try scratch.write(#"{"quality":"good"}"#, to: "models/line-1/.candidate/manifest.json")
        XCTAssertEqual(try models.commitCandidate().name, "v0005")
        XCTAssertEqual(scratch.list("models/line-1").filter { $0.hasPrefix(".") }, [])
    }

    /// A reader resolving `current` while it is switched back and forth never finds it missing
    /// or dangling.
    func testCurrentLinkSwitchIsAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let models = try scratch.makeModelStore()
        try scratch.write(#"{"quality":"good"}"#, to: "models/line-1/.candidate/manifest.json")
        try models.commitCandidate()
        let link = scratch.path("models/line-1/current/manifest.json").string
        let stop = ManagedAtomicFlag()
        let failures = ManagedCounter()
        let reads = ManagedCounter()
        let reader = Thread {
            while !stop.isSet {
                var status = stat()
                if stat(link, &status) != 0 { failures.increment() }
                reads.increment()
            }
        }
        reader.start()
        for index in 0..<400 { try models.activate(index % 2 == 0 ? "v0002" : "v0001") }
        stop.set()
        while !reader.isFinished { usleep(1000) }
        XCTAssertGreaterThan(reads.value, 100)
        XCTAssertEqual(failures.value, 0, "current was missing or dangling \(failures.value) times in \(reads.value) reads")
        XCTAssertEqual(try models.current()?.name, "v0001")
    }
}

final class ScheduleAndGateTests: XCTestCase {
    func testWindowWrapsPastMidnight() throws {
        let night = try XCTUnwrap(TimeWindow(parsing: "22:00-05:00"))
        XCTAssertTrue(night.contains(minuteOfDay: 22 * 60))
        XCTAssertTrue(night.contains(minuteOfDay: 2 * 60))
        XCTAssertFalse(night.contains(minuteOfDay: 5 * 60))
        XCTAssertFalse(night.contains(minuteOfDay: 12 * 60))
        XCTAssertTrue(night.contains(TestClock.at(hour: 23, minute: 30), timeZone: utc))
        XCTAssertFalse(night.contains(TestClock.at(hour: 23, minute: 30), timeZone: TimeZone(secondsFromGMT: -3 * 3600)!))
        let day = try XCTUnwrap(TimeWindow(parsing: "09:30-17:00"))
        XCTAssertTrue(day.contains(minuteOfDay: 9 * 60 + 30))
        XCTAssertFalse(day.contains(minuteOfDay: 17 * 60))
        XCTAssertEqual(night.description, "22:00-05:00")
        for bad in ["22:00", "25:00-01:00", "22:0-05:00", "ten-eleven"] { XCTAssertNil(TimeWindow(parsing: bad), bad) }
    }

    func testGateComparesFalseRejectsAndAUROCWithTolerances() throws {
        let current = GateFigures(falseRejectRate: 0.02, auroc: 0.95, threshold: 0.5)
        let policy = GatePolicy(falseRejectTolerance: 0.01, aurocTolerance: 0.02)
        func decide(_ frr: Double, _ auroc: Double?) -> GateRecord.Decision {
            GateRecord.decide(candidate: GateFigures(falseRejectRate: frr, auroc: auroc, threshold: 0.4), current: current, heldOutImages: 100, policy: policy).0
        }
        XCTAssertEqual(decide(0.02, 0.95), .accepted)
        XCTAssertEqual(decide(0.03, 0.94), .accepted, "within both tolerances")
        XCTAssertEqual(decide(0.031, 0.99), .rejected)
        XCTAssertEqual(decide(0.0, 0.92), .rejected)
        XCTAssertEqual(GateRecord.decide(candidate: current, current: current, heldOutImages: 0, policy: policy).0, .rejected, "no held-out images, no promotion")

        // Figures from scores: normals first, then defects; FRR at the model's own threshold.
        let figures = try GateFigures(scores: BundleScores(scores: [0.1, 0.6, 0.2, 0.3, 0.9, 0.5], threshold: 0.5), normalCount: 4)
        XCTAssertEqual(figures.falseRejectRate, 0.25)
        XCTAssertEqual(try XCTUnwrap(figures.auroc), 7.0 / 8.0, accuracy: 1e-12)
        XCTAssertNil(try GateFigures(scores: BundleScores(scores: [0.1, 0.2], threshold: 0.5), normalCount: 2).auroc)
        // Images a model could not read (NaN) are left out of both figures.
        let partial = try GateFigures(scores: BundleScores(scores: [0.1, .nan, 0.6, 0.9, .nan], threshold: 0.5), normalCount: 3)
        XCTAssertEqual(partial.falseRejectRate, 0.5)
        XCTAssertEqual(partial.auroc, 1)
    }
}

final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    func set() { lock.lock(); flag = true; lock.unlock() }
}

final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
    func increment() { lock.lock(); count += 1; lock.unlock() }
}
