import KernelSetTesting
import TestSupport
import TensorEngine
import XCTest

/// The inference paths of upsampling layers against straightforward implementations.
final class UpsamplingPathTests: XCTestCase {
    /// Transposed convolution as a scatter of every input value times every weight.
    private func referenceTransposed(_ x: Tensor, _ layer: ConvTranspose2d) -> Tensor {
        let (N, C, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (O, k, s, p) = (layer.outputChannels, layer.kernelSize, layer.stride, layer.padding)
        let (Ho, Wo) = ((H - 1) * s - 2 * p + k + layer.outputPadding, (W - 1) * s - 2 * p + k + layer.outputPadding)
        let w = layer.weight.value.scalars
        var out = [Float](repeating: 0, count: N * O * Ho * Wo)
        for n in 0..<N { for o in 0..<O {
            for i in 0..<(Ho * Wo) { out[(n * O + o) * Ho * Wo + i] = layer.bias?.value.scalars[o] ?? 0 }
            for c in 0..<C { for iy in 0..<H { for ix in 0..<W { for ky in 0..<k { for kx in 0..<k {
                let (oy, ox) = (iy * s + ky - p, ix * s + kx - p)
                guard oy >= 0, oy < Ho, ox >= 0, ox < Wo else { continue }
                out[((n * O + o) * Ho + oy) * Wo + ox] += x.scalars[((n * C + c) * H + iy) * W + ix] * w[((c * O + o) * k + ky) * k + kx]
            } } } } }
        } }
        return Tensor(shape: [N, O, Ho, Wo], scalars: out)
    }

    /// Kernel = stride (the tiled scatter), with and without bias, and an overlapping kernel.
    func testTransposedConvolutionEqualsScatterReference() {
        let generator = SeededGenerator(seed: 31)
        for (k, s, p, outputPadding, bias) in [(2, 2, 0, 0, true), (2, 2, 0, 0, false), (3, 3, 0, 0, true), (3, 2, 1, 1, true)] {
            let layer = ConvTranspose2d(inputChannels: 5, outputChannels: 6, kernelSize: k, stride: s, padding: p,
                                        outputPadding: outputPadding, bias: bias, generator: generator)
            layer.mode = .inference
            let x = generator.uniformTensor(shape: [2, 5, 7, 9], bound: 2)
            let (actual, expected) = (layer(x), referenceTransposed(x, layer))
            XCTAssertEqual(actual.shape, expected.shape)
            XCTAssertLessThan(maxRelativeDifference(actual.scalars, expected.scalars), 1e-5, "k\(k) s\(s) p\(p) bias \(bias)")
            XCTAssertEqual(layer.inferenceForward(x, activation: .relu), ReLU()(actual), "k\(k) s\(s) p\(p) bias \(bias) with ReLU")
        }
    }

    /// In `.inference` the product multiplies weights packed once in the layer's precision: bf16
    /// where asked (within bf16's rounding of the reference, and not f32's result), f32 again
    /// after, and new weights are packed again.
    func testTransposedConvolutionRunsInTheLayersPrecision() throws {
        try requireBFloat16()
        let generator = SeededGenerator(seed: 32)
        let layer = ConvTranspose2d(inputChannels: 48, outputChannels: 24, kernelSize: 2, stride: 2, generator: generator)
        layer.mode = .inference
        let x = generator.uniformTensor(shape: [2, 48, 16, 16], bound: 2)
        try withPrecision(.f32) {
            let f32 = layer(x)
            XCTAssertLessThan(maxRelativeDifference(f32.scalars, referenceTransposed(x, layer).scalars), 1e-5)
            layer.setInferencePrecision(.bf16)
            let bf16 = layer(x)
            XCTAssertNotEqual(bf16.scalars, f32.scalars)
            XCTAssertLessThan(maxRelativeDifference(bf16.scalars, f32.scalars), 2e-2)
            layer.setInferencePrecision(nil)
            XCTAssertEqual(layer(x).scalars, f32.scalars)
            layer.weight.value = generator.uniformTensor(shape: layer.weight.value.shape, bound: 1)
            XCTAssertLessThan(maxRelativeDifference(layer(x).scalars, referenceTransposed(x, layer).scalars), 1e-5)
        }
    }

    func testResizeIntoConcatenationEqualsResizeThenConcatenation() {
        let generator = SeededGenerator(seed: 32)
        let (low, skip) = (generator.uniformTensor(shape: [2, 3, 5, 6], bound: 2), generator.uniformTensor(shape: [2, 4, 10, 12], bound: 2))
        let resize = BilinearResize(outputHeight: 10, outputWidth: 12)
        let concatenation = ChannelConcatenation()
        resize.mode = .inference
        concatenation.mode = .inference
        XCTAssertEqual(resize.forward(low, concatenatingWith: skip), concatenation.forward([resize(low), skip]))
    }

    /// relu(x) * M and relu(x) + relu(x) * M against the ReLU, Multiplication and sum they replace.
    func testAttendedEqualsReLUThenProduct() {
        let generator = SeededGenerator(seed: 33)
        let (x, map) = (generator.uniformTensor(shape: [2, 3, 5, 7], bound: 2), generator.uniformTensor(shape: [2, 1, 5, 7], bound: 1))
        let activation = ReLU()(x)
        let scaled = Multiplication().forward(activation, map)
        XCTAssertEqual(Multiplication.attended(x, by: map, residual: false), scaled)
        XCTAssertEqual(Multiplication.attended(x, by: map, residual: true), activation + scaled)
    }
}
