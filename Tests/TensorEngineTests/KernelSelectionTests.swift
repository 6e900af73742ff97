import Foundation
import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// Which kernel set runs: RSTPM_KERNELS in the real `rstpm` (a forced set is the one measured, a
/// wrong value stops the process with a message), and switching sets inside one process.
final class KernelSelectionTests: XCTestCase {
    /// `rstpm bench engine` with no network selected: it only measures the sgemm peak, on the set
    /// it names.
    private func benchPeak(kernels: String) throws -> (status: Int32, output: String) {
        guard let rstpm = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm is not built: run `swift build -c release` first") }
        var environment = ProcessInfo.processInfo.environment
        environment["RSTPM_KERNELS"] = kernels
        return try Tools.run(rstpm, ["bench", "engine", "--only", "no-such-network", "--iterations", "1", "--threads", "1"],
                             environment: environment)
    }

    func testForcedKernelSetIsTheOneThatRuns() throws {
        try forEachKernelSet([.avx2, .generic]) { set in
            let run = try benchPeak(kernels: set.rawValue)
            XCTAssertEqual(run.status, 0, run.output)
            XCTAssertTrue(run.output.contains("sgemm 1024^3 peak: \(set.rawValue) kernels"), run.output)
        }
    }

    func testUnknownOrMissingKernelSetStopsWithAMessage() throws {
        let unknown = try benchPeak(kernels: "avx3")
        XCTAssertEqual(unknown.status, 2, unknown.output)
        XCTAssertTrue(unknown.output.contains("RSTPM_KERNELS=avx3 names no kernel set: use one of avx512, avx2, generic"), unknown.output)
        XCTAssertFalse(unknown.output.contains("peak"), unknown.output)
        guard let missing = KernelSet.allCases.first(where: { !$0.isAvailable }) else {
            print("every kernel set runs on this CPU: the message for a missing one is not checked here")
            return
        }
        let run = try benchPeak(kernels: missing.rawValue)
        XCTAssertEqual(run.status, 2, run.output)
        XCTAssertTrue(run.output.contains("this CPU lacks the instructions of that kernel set"), run.output)
    }

    /// A frozen convolution keeps its weights packed in the layout of the set that packed them:
    /// after a switch of sets it must pack them again, not read one set's panels with another's
    /// register tile (14 rows against 6).
    func testPackedWeightsFollowAKernelSetSwitch() throws {
        let generator = SeededGenerator(seed: 41)
        let conv = Conv2d(inputChannels: 16, outputChannels: 40, kernelSize: 3, padding: 1, generator: generator)
        let x = generator.uniformTensor(shape: [1, 16, 20, 24], bound: 1)
        let reference = conv.forward(x)
        conv.setMode(.inference)
        var outputs: [KernelSet: Tensor] = [:]
        try forEachKernelSet { set in
            outputs[set] = conv.inferenceForward(x, activation: .none)
            XCTAssertEqual(Engine.kernelSet, set)
        }
        for (set, output) in outputs {
            XCTAssertLessThanOrEqual(maxRelativeDifference(output.scalars, reference.scalars), 1e-5, "\(set.rawValue) after a switch")
        }
    }
}
