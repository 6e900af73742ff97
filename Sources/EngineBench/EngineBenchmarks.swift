// EngineBench: timing helpers for `rstpm bench engine` and the engine's report test, kept out of
// the TensorEngine library; they reach the engine's product through its `package` functions.

import CBLAS
import Foundation
import TensorEngine

/// Short timing helpers for reports (no assertions rely on them): a 3x3 convolution through the
/// engine and a bare sgemm of the same matrix shape, so the two GFLOPS figures can be compared.
public enum EngineBenchmarks {
    public struct Measurement: CustomStringConvertible {
        /// Best wall time of one call, in milliseconds.
        public let milliseconds: Double
        public let gigaflops: Double
        public var description: String { String(format: "%.2f ms, %.1f GFLOPS", milliseconds, gigaflops) }
    }

    /// Conv2d(channels->channels, 3x3, padding 1) on (batchSize, channels, size, size): the best
    /// of `iterations` forwards, and of forward+backward (3x the forward's FLOPs).
    public static func convolution3x3(batchSize: Int = 8, channels: Int = 64, size: Int = 64, iterations: Int = 3)
        -> (forward: Measurement, forwardBackward: Measurement) {
        let generator = SeededGenerator(seed: 1)
        let conv = Conv2d(inputChannels: channels, outputChannels: channels, kernelSize: 3, padding: 1, bias: false, generator: generator)
        let input = generator.uniformTensor(shape: [batchSize, channels, size, size], bound: 1)
        let flops = 2.0 * Double(batchSize * channels * channels * 9 * size * size)
        conv.setMode(.inference)
        let forward = best(of: iterations) { _ = conv.forward(input) }
        conv.setMode(.training)
        let gradient = Tensor(shape: [batchSize, channels, size, size], repeating: 0.01)
        let both = best(of: iterations) {
            _ = conv.forward(input)
            _ = conv.backward(gradient)
        }
        return (Measurement(milliseconds: forward * 1e3, gigaflops: flops / forward / 1e9),
                Measurement(milliseconds: both * 1e3, gigaflops: 3 * flops / both / 1e9))
    }

    /// Whether the engine's products run on its kernel set's C product (else on OpenBLAS).
    public static var kernelGemm: Bool { TensorEngine.kernelGemm(m: 1024, n: 1024) }

    /// C (m, n) = A (m, k) * B (k, n), best of `iterations`: a bare `cblas_sgemm` with OpenBLAS's
    /// own threads (`Engine.threadCount` of them), or, with `engineSplit`, the engine's product
    /// (single-threaded calls on column blocks, one per engine worker, of the kernel set's C
    /// product where `kernelGemm`, else of OpenBLAS).
    public static func sgemm(m: Int, n: Int, k: Int, iterations: Int = 3, engineSplit: Bool = false) -> Measurement {
        // Reading the thread count applies the engine's configuration first (which sets OpenBLAS
        // to one thread); the engine's sgemm applies it itself.
        if !engineSplit { openblas_set_num_threads(Int32(Engine.threadCount)) }
        defer { openblas_set_num_threads(1) }
        let generator = SeededGenerator(seed: 2)
        let a = generator.uniformTensor(shape: [m, k], bound: 1), b = generator.uniformTensor(shape: [k, n], bound: 1)
        var c = [Float](repeating: 0, count: m * n)
        let seconds = best(of: iterations) {
            a.scalars.withUnsafeBufferPointer { pa in
                b.scalars.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        if engineSplit {
                            TensorEngine.sgemm(transposeA: false, transposeB: false, m: m, n: n, k: k, a: pa.baseAddress!, lda: k,
                                               b: pb.baseAddress!, ldb: n, beta: 0, c: pc.baseAddress!, ldc: n)
                        } else {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                                        pa.baseAddress!, Int32(k), pb.baseAddress!, Int32(n), 0, pc.baseAddress!, Int32(n))
                        }
                    }
                }
            }
        }
        return Measurement(milliseconds: seconds * 1e3, gigaflops: 2.0 * Double(m * n * k) / seconds / 1e9)
    }

    private static func best(of iterations: Int, _ body: () -> Void) -> Double {
        body()  // warm-up: scratch buffers, OpenBLAS threads
        var best = Double.infinity
        for _ in 0..<max(1, iterations) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }
}
