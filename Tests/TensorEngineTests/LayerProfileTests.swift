import Foundation
import TensorEngine
import XCTest

/// RSTPM_PROFILE's report: nested stages count only their own time, and the remainder line.
final class LayerProfileTests: XCTestCase {
    override func tearDown() {
        LayerProfile.reset()
        LayerProfile.enabled = ProcessInfo.processInfo.environment["RSTPM_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false
    }

    /// The report's columns for `label`: calls, ms per unit, share, GFLOPS.
    private func columns(_ report: String, _ label: String) throws -> [Double] {
        let line = try XCTUnwrap(report.split(separator: "\n").first { $0.hasPrefix(label + " ") }, "no line \(label) in\n\(report)")
        return line.dropFirst(label.count).split(separator: " ").map { Double($0.replacingOccurrences(of: "%", with: "")) ?? .nan }
    }

    func testNestedStagesCountOnlyTheirOwnTime() throws {
        LayerProfile.enabled = true
        LayerProfile.reset()
        let start = DispatchTime.now().uptimeNanoseconds
        LayerProfile.measure("outer stage") {
            usleep(30_000)
            LayerProfile.measure("inner layer") { usleep(60_000) }
        }
        usleep(20_000)
        let wall = DispatchTime.now().uptimeNanoseconds - start
        let report = LayerProfile.report(per: 1, wallNanoseconds: wall)
        let (outer, inner) = (try columns(report, "outer stage"), try columns(report, "inner layer"))
        XCTAssertEqual(outer[0], 1)
        XCTAssertGreaterThanOrEqual(inner[1], 60)
        // Without the inner layer's 60 ms, which a plain wall time of the outer stage includes.
        XCTAssertGreaterThanOrEqual(outer[1], 30)
        XCTAssertLessThan(outer[1], 60, report)
        let sum = try columns(report, "sum of the above")[0], rest = try columns(report, "not profiled (wall time less the sum)")[0]
        XCTAssertEqual(sum, outer[1] + inner[1], accuracy: 0.002)
        XCTAssertGreaterThanOrEqual(rest, 19, report)
    }

    func testTransposedConvolutionReportsItsFlops() throws {
        LayerProfile.enabled = true
        LayerProfile.reset()
        let layer = ConvTranspose2d(inputChannels: 16, outputChannels: 8, kernelSize: 2, stride: 2, generator: SeededGenerator(seed: 3))
        layer.mode = .inference
        _ = layer(SeededGenerator(seed: 4).uniformTensor(shape: [1, 16, 32, 32], bound: 1))
        let report = LayerProfile.report(per: 1)
        XCTAssertGreaterThan(try columns(report, "conv-transpose 2x2/2 16->8 at 32x32")[3], 0, report)
    }
}
