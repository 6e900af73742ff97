import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The fused inverted-residual path (InvertedResidualFusion.swift, depthwise bands in
/// CKernels/depthwise*.c) against the same three layers run one by one, on every kernel set and
/// in bf16: the fused path reuses each layer's product and depthwise kernel, so the outputs are
/// equal bit for bit. The shapes cover strides 1 and 2, kernels 3 and 5, the skip,
/// odd plane sizes (bands and worker parts that end inside a block of rows), planes wider than
/// a band's budget, and batches.
final class InvertedResidualFusionTests: XCTestCase {
    struct Case {
        let input, expanded, output, kernel, stride, n, h, w: Int
        /// The expansion's kernel and stride: 1x1 in the blocks, the stem's 3x3/2 for Lite's first block.
        var expansionKernel = 1, expansionStride = 1
    }

    static let cases = [
        Case(input: 16, expanded: 96, output: 24, kernel: 3, stride: 2, n: 1, h: 128, w: 128),  // Lite's widest block
        Case(input: 24, expanded: 144, output: 24, kernel: 3, stride: 1, n: 2, h: 64, w: 64),   // kept shape: the skip
        Case(input: 24, expanded: 144, output: 40, kernel: 5, stride: 2, n: 1, h: 67, w: 70),   // odd sides, kernel 5
        Case(input: 40, expanded: 240, output: 40, kernel: 5, stride: 1, n: 1, h: 37, w: 33),   // bands end inside a block
        Case(input: 32, expanded: 192, output: 16, kernel: 3, stride: 1, n: 2, h: 48, w: 40),   // batch of 2, bands of 12 rows
        Case(input: 3, expanded: 32, output: 16, kernel: 3, stride: 1, n: 2, h: 256, w: 256, expansionKernel: 3, expansionStride: 2),  // stem
        Case(input: 3, expanded: 24, output: 8, kernel: 5, stride: 2, n: 1, h: 73, w: 81, expansionKernel: 3, expansionStride: 1),
    ]

    func testFusedBlocksEqualTheLayersOneByOneOnEveryKernelSet() throws {
        try forEachKernelSet { set in
            // The generic set has no C kernels: its blocks run layer by layer.
            for t in Self.cases { try compare(t, label: set.rawValue, fuses: set != .generic) }
        }
    }

    func testFusedBlocksEqualTheLayersOneByOneInBFloat16() throws {
        try requireBFloat16()
        try withPrecision(.bf16) {
            for t in Self.cases { try compare(t, label: "bf16", fuses: true) }
        }
    }

    /// A block in its input's shape must not be fused below the plane size that pays, nor where
    /// the layers are not in `.inference`.
    func testFallsBackWhereItDoesNotApply() {
        let generator = SeededGenerator(seed: 3)
        let t = Case(input: 16, expanded: 96, output: 24, kernel: 3, stride: 1, n: 1, h: 16, w: 16)
        let (expansion, depthwise, projection) = layers(t, generator)
        let x = generator.uniformTensor(shape: [1, 16, 16, 16], bound: 1)
        XCTAssertNil(InvertedResidualFusion.forward(x, expansion: expansion, depthwise: depthwise, projection: projection, addsInput: false))
        let large = generator.uniformTensor(shape: [1, 16, 64, 64], bound: 1)
        projection.setMode(.training)
        XCTAssertNil(InvertedResidualFusion.forward(large, expansion: expansion, depthwise: depthwise, projection: projection, addsInput: false))
    }

    private func layers(_ t: Case, _ generator: SeededGenerator) -> (Conv2d, Conv2d, Conv2d) {
        let expansion = Conv2d(inputChannels: t.input, outputChannels: t.expanded, kernelSize: t.expansionKernel, stride: t.expansionStride,
                               padding: t.expansionKernel / 2, generator: generator)
        let depthwise = Conv2d(inputChannels: t.expanded, outputChannels: t.expanded, kernelSize: t.kernel, stride: t.stride,
                               padding: t.kernel / 2, groups: t.expanded, generator: generator)
        let projection = Conv2d(inputChannels: t.expanded, outputChannels: t.output, kernelSize: 1, generator: generator)
        for layer in [expansion, depthwise, projection] { layer.setMode(.inference) }
        return (expansion, depthwise, projection)
    }

    private func compare(_ t: Case, label: String, fuses: Bool) throws {
        let generator = SeededGenerator(seed: UInt64(t.h * 1000 + t.w))
        let (expansion, depthwise, projection) = layers(t, generator)
        let x = generator.uniformTensor(shape: [t.n, t.input, t.h, t.w], bound: 2)
        let skip = t.stride == 1 && t.input == t.output && t.expansionKernel == 1
        Engine.useFusedBlocks(false)
        defer { Engine.useFusedBlocks(true) }
        let expanded = expansion.inferenceForward(x, activation: .relu6)
        var expected = projection.inferenceForward(depthwise.inferenceForward(expanded, activation: .relu6), activation: .none)
        if skip { expected.add(x, activation: .none) }
        Engine.useFusedBlocks(true)
        guard fuses else {
            XCTAssertNil(InvertedResidualFusion.forward(x, expansion: expansion, depthwise: depthwise, projection: projection, addsInput: skip))
            return
        }
        let fused = try XCTUnwrap(InvertedResidualFusion.forward(x, expansion: expansion, depthwise: depthwise, projection: projection, addsInput: skip),
                                  "\(label) \(t): not fused")
        XCTAssertEqual(fused.shape, expected.shape, "\(label) \(t)")
        let differing = zip(fused.scalars, expected.scalars).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "\(label) \(t): \(differing) of \(expected.count) outputs differ")
    }
}
