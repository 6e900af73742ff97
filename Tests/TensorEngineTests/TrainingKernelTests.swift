import KernelSetTesting
import TensorEngine
import XCTest

/// BatchNorm2d (training and evaluation mode) and ReLU/ReLU6, forward and backward, as the
/// layers route them under every kernel set (the C kernels of CKernels/batchnorm*.c and
/// activations*.c, and the generic set's Swift loops), against double-precision references on shapes
/// around the vector widths, N = 1, 2 and 3, and inputs whose mean is far from zero.
final class TrainingKernelTests: XCTestCase {
    static let shapes: [(n: Int, c: Int, h: Int, w: Int)] = [
        (1, 1, 1, 2), (2, 3, 1, 1), (1, 2, 1, 17), (2, 5, 3, 5), (3, 4, 7, 7), (1, 3, 4, 16),
        (2, 2, 9, 13), (2, 7, 33, 3), (1, 2, 64, 65),
    ]

    func testBatchNormTrainingMatchesDoubleReference() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 31)
            for (index, s) in Self.shapes.enumerated() {
                let shape = [s.n, s.c, s.h, s.w]
                let bn = BatchNorm2d(channels: s.c)
                bn.weight.value = generator.uniformTensor(shape: [s.c], bound: 2)
                bn.bias.value = generator.uniformTensor(shape: [s.c], bound: 1)
                // Every other shape with enough values per channel gets a large common offset: the
                // variance must not cancel. (With a few values, the float mean's rounding alone
                // moves the deviations by more than the tolerance.)
                let offset: Float = index % 2 == 1 && s.n * s.h * s.w >= 16 ? 40 : 0
                let x = generator.uniformTensor(shape: shape, bound: 3).scalars.map { $0 + offset }
                let input = Tensor(shape: shape, scalars: x)
                let y = bn.forward(input)
                let dy = generator.uniformTensor(shape: shape, bound: 1)
                let dx = bn.backward(dy)

                let reference = referenceBatchNorm(x, dy.scalars, gamma: bn.weight.value.scalars, beta: bn.bias.value.scalars,
                                                   n: s.n, c: s.c, plane: s.h * s.w, statistics: nil)
                let name = "\(shape)"
                XCTAssertLessThanOrEqual(scaledError(y.scalars, reference.y), 1e-5, "y \(name)")
                // dx is a difference of terms of size gamma / std * dy that nearly cancel on small channels.
                XCTAssertLessThanOrEqual(scaledError(dx.scalars, reference.dx, scale: reference.dxScale), 1e-5, "dx \(name)")
                XCTAssertLessThanOrEqual(scaledError(bn.weight.gradient.scalars, reference.dgamma), 1e-5, "dgamma \(name)")
                XCTAssertLessThanOrEqual(scaledError(bn.bias.gradient.scalars, reference.dbeta), 1e-5, "dbeta \(name)")
                let count = Double(s.n * s.h * s.w)
                let runningMean = reference.mean.map { 0.1 * $0 }
                let runningVariance = reference.variance.map { 0.9 + 0.1 * $0 * count / (count - 1) }
                XCTAssertLessThanOrEqual(scaledError(bn.runningMean.value.scalars, runningMean), 1e-5, "running mean \(name)")
                XCTAssertLessThanOrEqual(scaledError(bn.runningVariance.value.scalars, runningVariance), 1e-5, "running var \(name)")
            }
        }
    }

    func testBatchNormEvaluationModeBackwardMatchesDoubleReference() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 32)
            for s in Self.shapes {
                let shape = [s.n, s.c, s.h, s.w]
                let bn = BatchNorm2d(channels: s.c)
                bn.weight.value = generator.uniformTensor(shape: [s.c], bound: 2)
                bn.bias.value = generator.uniformTensor(shape: [s.c], bound: 1)
                bn.runningMean.value = generator.uniformTensor(shape: [s.c], bound: 1)
                bn.runningVariance.value = Tensor(shape: [s.c], scalars: generator.uniformTensor(shape: [s.c], bound: 1).scalars.map { 1.5 + $0 })
                bn.setMode(.evaluation)
                let x = generator.uniformTensor(shape: shape, bound: 3)
                let y = bn.forward(x)
                let dy = generator.uniformTensor(shape: shape, bound: 1)
                let dx = bn.backward(dy)
                let statistics = (bn.runningMean.value.scalars.map(Double.init), bn.runningVariance.value.scalars.map(Double.init))
                let reference = referenceBatchNorm(x.scalars, dy.scalars, gamma: bn.weight.value.scalars, beta: bn.bias.value.scalars,
                                                   n: s.n, c: s.c, plane: s.h * s.w, statistics: statistics)
                let name = "\(shape)"
                XCTAssertLessThanOrEqual(scaledError(y.scalars, reference.y), 1e-5, "y \(name)")
                XCTAssertLessThanOrEqual(scaledError(dx.scalars, reference.dx), 1e-5, "dx \(name)")
                XCTAssertLessThanOrEqual(scaledError(bn.weight.gradient.scalars, reference.dgamma), 1e-5, "dgamma \(name)")
                XCTAssertLessThanOrEqual(scaledError(bn.bias.gradient.scalars, reference.dbeta), 1e-5, "dbeta \(name)")
            }
        }
    }

    /// A Sequential runs BatchNorm2d + ReLU/ReLU6 as one pass; it must give exactly what the
    /// two layers give one after the other (forward, gradients, running statistics).
    func testSequentialFusedBatchNormActivationEqualsSeparateLayers() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 34)
            for s in Self.shapes {
                for fusedReLU6 in [false, true] {
                    let shape = [s.n, s.c, s.h, s.w]
                    let (fused, separate) = (BatchNorm2d(channels: s.c), BatchNorm2d(channels: s.c))
                    // gamma up to 8, and 8 with beta 0 on channel 0: values below 0 and above 6.
                    var gamma = generator.uniformTensor(shape: [s.c], bound: 8), beta = generator.uniformTensor(shape: [s.c], bound: 1)
                    (gamma.scalars[0], beta.scalars[0]) = (8, 0)
                    for bn in [fused, separate] { (bn.weight.value, bn.bias.value) = (gamma, beta) }
                    let activation: any Layer = fusedReLU6 ? ReLU6() : ReLU()
                    let sequence = Sequential([fused, fusedReLU6 ? ReLU6() : ReLU()])
                    let x = generator.uniformTensor(shape: shape, bound: 3), dy = generator.uniformTensor(shape: shape, bound: 1)

                    let y = sequence.forward(x), dx = sequence.backward(dy)
                    let expectedY = activation.forward(separate.forward(x))
                    let expectedDx = separate.backward(activation.backward(dy))
                    let name = "\(shape) \(fusedReLU6 ? "relu6" : "relu")"
                    XCTAssertEqual(y.scalars, expectedY.scalars, "y \(name)")
                    XCTAssertEqual(dx.scalars, expectedDx.scalars, "dx \(name)")
                    XCTAssertEqual(fused.weight.gradient.scalars, separate.weight.gradient.scalars, "dgamma \(name)")
                    XCTAssertEqual(fused.bias.gradient.scalars, separate.bias.gradient.scalars, "dbeta \(name)")
                    XCTAssertEqual(fused.runningVariance.value.scalars, separate.runningVariance.value.scalars, "running var \(name)")
                    if fusedReLU6 { XCTAssertTrue(y.scalars.contains(6) && y.scalars.contains(0), "both kinks reached \(name)") }
                }
            }
        }
    }

    func testReLUAndReLU6ForwardAndBackwardAreExact() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 33)
            // Counts around the vector width and across the elementwise chunks (16384 floats).
            for count in [1, 15, 16, 17, 33, 100, 40_001] {
                var x = generator.uniformTensor(shape: [1, 1, 1, count], bound: 8).scalars
                x[0] = 0
                if count > 2 { x[1] = 6; x[2] = .nan }
                let input = Tensor(shape: [1, 1, 1, count], scalars: x)
                let dy = generator.uniformTensor(shape: input.shape, bound: 1)

                let relu = ReLU(), relu6 = ReLU6()
                let y = relu.forward(input), y6 = relu6.forward(input)
                let dx = relu.backward(dy), dx6 = relu6.backward(dy)
                for i in 0..<count {
                    let v = x[i]
                    if v.isNaN {
                        XCTAssertTrue(y.scalars[i].isNaN && y6.scalars[i].isNaN, "NaN propagates at \(i) of \(count)")
                        continue
                    }
                    XCTAssertEqual(y.scalars[i], max(v, 0), "relu \(i) of \(count)")
                    XCTAssertEqual(y6.scalars[i], min(max(v, 0), 6), "relu6 \(i) of \(count)")
                    XCTAssertEqual(dx.scalars[i], v > 0 ? dy.scalars[i] : 0, "relu backward \(i) of \(count)")
                    XCTAssertEqual(dx6.scalars[i], v > 0 && v < 6 ? dy.scalars[i] : 0, "relu6 backward \(i) of \(count)")
                }
            }
        }
    }

    /// y, dx, dgamma, dbeta of BatchNorm2d in double; batch statistics (biased variance) when
    /// `statistics` is nil, else the given (mean, variance).
    func referenceBatchNorm(_ x: [Float], _ dy: [Float], gamma: [Float], beta: [Float], n: Int, c: Int, plane: Int,
                            statistics: (mean: [Double], variance: [Double])?)
        -> (y: [Double], dx: [Double], dxScale: Double, dgamma: [Double], dbeta: [Double], mean: [Double], variance: [Double]) {
        var y = [Double](repeating: 0, count: x.count), dx = y, dxScale = 0.0
        var dgamma = [Double](repeating: 0, count: c), dbeta = dgamma, means = dgamma, variances = dgamma
        let count = Double(n * plane)
        for ch in 0..<c {
            var indices: [Int] = []
            for item in 0..<n {
                let start = (item * c + ch) * plane
                indices += Array(start..<(start + plane))
            }
            var mean = 0.0, variance = 0.0
            if let statistics {
                (mean, variance) = (statistics.mean[ch], statistics.variance[ch])
            } else {
                for i in indices { mean += Double(x[i]) }
                mean /= count
                for i in indices { variance += (Double(x[i]) - mean) * (Double(x[i]) - mean) }
                variance /= count
            }
            let r = 1 / (variance + 1e-5).squareRoot()
            var sumDy = 0.0, sumDyXhat = 0.0
            for i in indices {
                let xhat = (Double(x[i]) - mean) * r
                y[i] = xhat * Double(gamma[ch]) + Double(beta[ch])
                sumDy += Double(dy[i])
                sumDyXhat += Double(dy[i]) * xhat
            }
            let (meanDy, meanDyXhat) = statistics == nil ? (sumDy / count, sumDyXhat / count) : (0, 0)
            for i in indices {
                let xhat = (Double(x[i]) - mean) * r
                dx[i] = Double(gamma[ch]) * r * (Double(dy[i]) - meanDy - xhat * meanDyXhat)
                dxScale = max(dxScale, abs(Double(gamma[ch]) * r * Double(dy[i])))
            }
            (dgamma[ch], dbeta[ch], means[ch], variances[ch]) = (sumDyXhat, sumDy, mean, variance)
        }
        return (y, dx, dxScale, dgamma, dbeta, means, variances)
    }

    /// max |actual - expected| over `scale`, by default max |expected|.
    func scaledError(_ actual: [Float], _ expected: [Double], scale: Double? = nil) -> Double {
        precondition(actual.count == expected.count)
        let scale = scale ?? expected.map(abs).max() ?? 0
        let error = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
        return scale > 0 ? error / scale : error
    }
}
