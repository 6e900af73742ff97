import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The inference-only fast paths against the layer-by-layer training paths they replace.
final class InferencePathTests: XCTestCase {
    func testFusedConvolutionEqualsConvolutionThenActivation() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 11)
            // (inputs, outputs, kernel, stride, padding, groups, width): pointwise, im2col, depthwise 3 and 5, strided.
            let cases = [(8, 6, 1, 1, 0, 1, 13), (3, 5, 3, 2, 1, 1, 17), (6, 6, 3, 1, 1, 6, 19), (6, 6, 5, 2, 2, 6, 21), (4, 8, 3, 2, 1, 4, 33)]
            for (c, o, k, s, p, groups, width) in cases {
                let conv = Conv2d(inputChannels: c, outputChannels: o, kernelSize: k, stride: s, padding: p, groups: groups, generator: generator)
                let x = generator.uniformTensor(shape: [2, c, 11, width], bound: 8)
                let plain = conv.forward(x)
                conv.setMode(.inference)
                for (activation, layer) in [(FusedActivation.none, nil), (.relu, ReLU() as any Layer), (.relu6, ReLU6())] {
                    let expected = layer?.forward(plain) ?? plain
                    let fused = conv.inferenceForward(x, activation: activation)
                    XCTAssertEqual(fused.shape, expected.shape)
                    let difference = maxRelativeDifference(fused.scalars, expected.scalars)
                    XCTAssertLessThanOrEqual(difference, 1e-5, "conv \(c)->\(o) k\(k) s\(s) groups \(groups) \(activation)")
                }
                conv.setMode(.training)
            }
        }
    }

    /// In `.inference` a convolution keeps its weights packed between calls: changing them (in
    /// place, or by assignment) must show in the next output. Pointwise, 3x3 and 7x7 stride 2.
    func testInferenceFollowsWeightChanges() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 14)
            for (c, o, k, s, p) in [(8, 20, 1, 1, 0), (5, 16, 3, 1, 1), (3, 30, 7, 2, 3)] {
                let conv = Conv2d(inputChannels: c, outputChannels: o, kernelSize: k, stride: s, padding: p, generator: generator)
                let x = generator.uniformTensor(shape: [1, c, 24, 24], bound: 1)
                conv.setMode(.inference)
                let before = conv.forward(x)
                conv.weight.value.scalars[0] += 1
                let inPlace = conv.forward(x)
                conv.weight.value = conv.weight.value.mapped { -$0 }
                let assigned = conv.forward(x)
                conv.setMode(.training)
                conv.weight.value = conv.weight.value.mapped { -$0 }
                XCTAssertNotEqual(inPlace, before, "k\(k)")
                XCTAssertLessThanOrEqual(maxRelativeDifference(inPlace.scalars, conv.forward(x).scalars), 1e-5, "k\(k) in place")
                conv.weight.value = conv.weight.value.mapped { -$0 }
                XCTAssertLessThanOrEqual(maxRelativeDifference(assigned.scalars, conv.forward(x).scalars), 1e-5, "k\(k) assigned")
            }
        }
    }

    func testInPlaceAdditionWithActivation() {
        let generator = SeededGenerator(seed: 12)
        let a = generator.uniformTensor(shape: [2, 3, 5, 7], bound: 8), b = generator.uniformTensor(shape: [2, 3, 5, 7], bound: 8)
        var sum = a
        sum.add(b, activation: .relu6)
        XCTAssertEqual(sum, (a + b).mapped { Swift.min(Swift.max($0, 0), 6) })
        XCTAssertTrue(sum.scalars.contains(6) && sum.scalars.contains(0))
    }

    func testMaxPoolInferenceEqualsIndexedPath() {
        let generator = SeededGenerator(seed: 13)
        for (k, s, p, width) in [(3, 2, 1, 17), (3, 2, 1, 64), (2, 2, 0, 9), (3, 1, 1, 11)] {
            var x = generator.uniformTensor(shape: [2, 3, 10, width], bound: 1)
            x.scalars[5] = .nan
            let pool = MaxPool2d(kernelSize: k, stride: s, padding: p)
            let indexed = pool.forward(x)
            pool.setMode(.inference)
            let fast = pool.forward(x)
            XCTAssertEqual(fast.shape, indexed.shape)
            XCTAssertTrue(zip(fast.scalars, indexed.scalars).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }, "k\(k) s\(s) p\(p) width \(width)")
            XCTAssertTrue(fast.scalars.contains { $0.isNaN })
        }
    }
}
