import CKernels
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
    private func benchPeak(kernels: String?, precision: String? = nil, arguments: [String] = []) throws -> (status: Int32, output: String) {
        guard let rstpm = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm is not built: run `swift build -c release` first") }
        var environment = ProcessInfo.processInfo.environment
        environment["RSTPM_KERNELS"] = kernels
        environment["RSTPM_PRECISION"] = precision
        return try Tools.run(rstpm, ["bench", "engine", "--only", "no-such-network", "--iterations", "1", "--threads", "1"] + arguments,
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

    /// bf16 where it cannot run (another kernel set, a CPU without avx512_bf16), or a precision
    /// that does not exist, stops before any work with one line and exit status 2, from the
    /// option and from RSTPM_PRECISION alike.
    func testUnavailableOrUnknownPrecisionStopsWithAMessage() throws {
        let option = try benchPeak(kernels: "generic", arguments: ["--precision", "bf16"])
        XCTAssertEqual(option.status, 2, option.output)
        XCTAssertTrue(option.output.contains("rstpm: --precision bf16: bf16 runs on the avx512 kernel set only, and the engine runs generic"),
                      option.output)
        XCTAssertFalse(option.output.contains("peak"), option.output)
        let environment = try benchPeak(kernels: "generic", precision: "bf16")
        XCTAssertEqual(environment.status, 2, environment.output)
        XCTAssertTrue(environment.output.contains("rstpm: RSTPM_PRECISION=bf16: bf16 runs on the avx512 kernel set only"), environment.output)
        let unknown = try benchPeak(kernels: nil, precision: "fp8")
        XCTAssertEqual(unknown.status, 2, unknown.output)
        XCTAssertTrue(unknown.output.contains("RSTPM_PRECISION=fp8 names no precision: use one of f32, bf16"), unknown.output)
        if rstpm_avx512_bf16_kernels() == nil && KernelSet.avx512.isAvailable {
            let missing = try benchPeak(kernels: "avx512", arguments: ["--precision", "bf16"])
            XCTAssertEqual(missing.status, 2, missing.output)
            XCTAssertTrue(missing.output.contains("--precision bf16: this CPU lacks avx512_bf16; use f32"), missing.output)
        } else {
            print("this CPU has avx512_bf16 (or lacks avx512): the message for a CPU without it is not checked here")
        }
    }

    /// Where bf16 runs, the option is taken and the run says so.
    func testBFloat16OptionRunsWhereTheCPUHasIt() throws {
        guard rstpm_avx512_bf16_kernels() != nil else { throw XCTSkip("this CPU lacks avx512_bf16") }
        let run = try benchPeak(kernels: "avx512", arguments: ["--precision", "bf16"])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("precision bf16"), run.output)
        let plain = try benchPeak(kernels: "avx512")
        XCTAssertTrue(plain.output.contains("precision f32"), plain.output)
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
