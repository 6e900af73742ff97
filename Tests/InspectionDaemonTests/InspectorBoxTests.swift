import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// An inspector that prepares a type of its own: a token per batch, which its `inspect` checks
/// it gets back. Scores come from the PGM double.
final class TokenInspector: Inspector {
    struct Tokens { var token: Int; var inputs: [InspectionInput] }
    let modelIdentity: ModelIdentity
    private let pgm = PGMInspector()
    private let lock = NSLock()
    private var issued: [Int] = []
    private var preparedNames: [String] = []
    private var inspectedTokens: [Int] = []
    /// Called at the start of each inspection, with how many batches this inspector inspected before.
    var onInspect: ((Int) -> Void)?

    init(_ identifier: String) { modelIdentity = ModelIdentity(identifier: identifier, version: "1") }

    func prepare(_ inputs: [InspectionInput]) -> Tokens {
        lock.lock(); defer { lock.unlock() }
        issued.append(issued.count + 1)
        preparedNames += inputs.map(\.fileName)
        return Tokens(token: issued.count, inputs: inputs)
    }

    func inspect(prepared: Tokens) -> [Result<InspectionOutcome, InspectionError>] {
        lock.lock(); let before = inspectedTokens.count; inspectedTokens.append(prepared.token); lock.unlock()
        onInspect?(before)
        return pgm.inspect(prepared.inputs)
    }

    var prepared: [String] { lock.lock(); defer { lock.unlock() }; return preparedNames }
    /// The tokens inspected, each one this inspector issued, in order.
    var inspected: [Int] { lock.lock(); defer { lock.unlock() }; return inspectedTokens }
}

/// `AnyInspector` keeps an inspector's prepared type; a swapped-in model prepares again.
final class InspectorBoxTests: XCTestCase {
    func input(_ name: String) -> InspectionInput {
        InspectionInput(fileName: name, path: FilePath("/nonexistent/\(name)"), bytes: PGMInspector.image())
    }

    func testWhatAnInspectorPreparedGoesBackToIt() {
        let inspector = TokenInspector("tokens")
        let boxed = AnyInspector(inspector)
        let first = boxed.prepare([input("a.pgm")]), second = boxed.prepare([input("b.pgm"), input("c.pgm")])
        XCTAssertEqual(second.inspect().count, 2)
        XCTAssertEqual(first.inspect().count, 1)
        XCTAssertEqual(inspector.inspected, [2, 1])
        XCTAssertEqual(boxed.modelIdentity.identifier, "tokens")
    }

    func testTheCrashingWrapperPassesItsInnerPreparedThrough() {
        let inner = TokenInspector("tokens")
        let crashing = CrashingInspector(inner, crashingOn: "poison.pgm")
        let results = AnyInspector(crashing).prepare([input("a.pgm")]).inspect()
        XCTAssertNotNil(try? results[0].get())
        XCTAssertEqual(inner.prepared, ["a.pgm"])
        XCTAssertEqual(inner.inspected, [1], "inspected what it prepared, not prepared again")
    }

    func testAServingModelSwapsOnlyWhenTaken() {
        let served = ServingModel(AnyInspector(TokenInspector("old")))
        served.replace(with: AnyInspector(TokenInspector("new")))
        XCTAssertEqual(served.nextIdentity.identifier, "new")
        XCTAssertEqual(served.current.inspector.modelIdentity.identifier, "old", "the running batch keeps its model")
        XCTAssertEqual(served.current.generation, 0)
        let swap = served.takePending()
        XCTAssertEqual(swap?.old.identifier, "old")
        XCTAssertEqual(served.current.inspector.modelIdentity.identifier, "new")
        XCTAssertEqual(served.current.generation, 1)
        XCTAssertNil(served.takePending())
    }

    /// The next batch is prepared while the first is inspected; a swap that arrives during the
    /// first leaves that prepared batch to the old model, so the new model prepares it again.
    func testABatchPreparedBeforeASwapIsPreparedAgainByTheNewModel() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (logger, _) = MemoryLogHandler.logger()
        let old = TokenInspector("old"), new = TokenInspector("new")
        let pipeline = LinePipeline(configuration: folders.configuration(batchSize: 4), instance: "host-a", inspector: old, logger: logger)
        try pipeline.prepare()
        old.onInspect = { before in if before == 0 { pipeline.replaceInspector(new) } }
        for name in ["a.pgm", "b.pgm", "c.pgm"] { try folders.write(PGMInspector.image(), to: "inbox/\(name)") }
        XCTAssertEqual(pipeline.pass(now: 0).decided, 3)
        XCTAssertEqual(old.inspected, [1], "the old model inspected its first batch only")
        XCTAssertEqual(old.prepared.sorted(), ["a.pgm", "b.pgm", "c.pgm"])
        XCTAssertEqual(new.prepared.sorted(), ["b.pgm", "c.pgm"], "the batch the old model prepared is prepared again")
        XCTAssertEqual(new.inspected, [1])
        XCTAssertEqual((try folders.json("outbox/b.pgm.json")["model"] as? [String: Any])?["id"] as? String, "new")
        XCTAssertEqual(pipeline.modelIdentity.identifier, "new")
    }
}
