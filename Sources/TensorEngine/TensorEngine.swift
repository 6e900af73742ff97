// TensorEngine: a small float32 CPU tensor engine in the style of llm.c.
//
// Data layout
// -----------
// A `Tensor` is a value type: a shape (`[Int]`, any rank) and a contiguous row-major `[Float]`
// (copy-on-write through Swift arrays). Images and feature maps are NCHW: (batch, channels,
// height, width), the last index varying fastest, exactly PyTorch's default memory layout, so a
// PyTorch state_dict tensor can be copied element for element. Weights follow PyTorch's shapes:
// Conv2d (out, in/groups, kH, kW), ConvTranspose2d (in, out, kH, kW), Linear (out, in).
//
// The Layer contract
// ------------------
// Every layer is a class with a `forward(_:)` and a `backward(_:)`, as llm.c's layer pairs:
// - `forward` computes the output and, unless the layer is in `.inference` mode, keeps what its
//   backward needs (its input, a mask, BatchNorm's normalised input and 1/std). One forward, one
//   backward: a layer object used twice in one graph would overwrite its cache, so a model makes
//   one object per use.
// - `backward(outputGradient)` ADDS into its parameters' `gradient` and RETURNS the gradient
//   with respect to its input. Zeroing gradients is a separate step (`zeroGradients()` on a
//   layer or an optimiser), so gradients of several losses/batches can accumulate.
// - There is no autograd tape: a model's backward calls its layers' backwards in reverse order,
//   and ops with two inputs (add, concatenation, multiply, distance) are small objects whose
//   backward returns one gradient per input.
//
// Training, evaluation and inference mode
// ---------------------------------------
// `LayerMode` has three cases, set recursively with `setMode(_:)` (layers start in `.training`,
// as PyTorch modules do):
// - `.training`: BatchNorm normalises with batch statistics and updates its running statistics;
//   caches are kept for backward.
// - `.evaluation`: BatchNorm uses its running statistics; caches are still kept, so gradients can
//   flow through a fixed network (its parameter gradients accumulate too, unused unless stepped).
// - `.inference`: running statistics and NOTHING cached, so a frozen network (a teacher) costs
//   only its activations; calling backward after an inference forward is a programmer error.
//
// Parameters and buffers, and their names
// ----------------------------------------
// A `Parameter` holds a trainable `value` and its `gradient` (allocated on first use); a
// `Buffer` holds non-trainable state (BatchNorm's running_mean, running_var,
// num_batches_tracked). Each layer lists its own parameters and buffers under PyTorch's local
// names ("weight", "bias", "running_mean", ...) and its child layers under their attribute
// names (a `Sequential` names them "0", "1", ...). `namedParameters()`, `namedBuffers()` and
// `namedState()` walk the tree depth-first and join the names with dots, in PyTorch's
// state_dict order (own parameters, own buffers, then each child), so a model whose children
// are named as its PyTorch twin's attributes loads a state_dict key for key, e.g.
// "layer1.0.conv1.weight". `parameters` is the ordered, de-duplicated trainable list the
// optimisers take.
//
// Threads and BLAS
// ----------------
// Matrix products go to OpenBLAS (`cblas_sgemm`); loops that OpenBLAS does not own (im2col,
// depthwise convolution, BatchNorm, pooling, resizing) split their channels or rows over
// `Engine.threadCount` workers with `DispatchQueue.concurrentPerform`. `Engine.configure` sets
// both; by default they use every core the process sees, and OpenBLAS keeps OPENBLAS_NUM_THREADS
// when the environment sets it.

import CBLAS
import Foundation

/// Process-wide settings of the engine: how many threads its kernels and OpenBLAS use.
public enum Engine {
    nonisolated(unsafe) private static var configuredThreadCount: Int?

    /// Workers used by the engine's own parallel loops.
    public static var threadCount: Int {
        if let count = configuredThreadCount { return count }
        _ = defaultConfiguration
        return configuredThreadCount ?? 1
    }

    /// Sets the worker count of the engine's loops and of OpenBLAS.
    public static func configure(threadCount: Int) {
        precondition(threadCount >= 1, "thread count must be at least 1, got \(threadCount)")
        configuredThreadCount = threadCount
        openblas_set_num_threads(Int32(threadCount))
    }

    private static let defaultConfiguration: Void = {
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        if configuredThreadCount == nil { configuredThreadCount = cores }
        // OpenBLAS reads OPENBLAS_NUM_THREADS itself; only override it when nobody chose.
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil {
            openblas_set_num_threads(Int32(configuredThreadCount ?? cores))
        }
    }()

    /// Applies the default configuration once; kernels call this before their first sgemm.
    @inline(__always) static func prepare() { _ = defaultConfiguration }
}

/// Runs `body` over `0..<count` split into at most `Engine.threadCount` contiguous ranges.
/// Small loops (under `minimumPerWorker` items per worker) stay on the calling thread.
@inline(__always)
func parallelRanges(count: Int, minimumPerWorker: Int = 1, _ body: (Range<Int>) -> Void) {
    let workers = min(Engine.threadCount, count / max(1, minimumPerWorker))
    if workers <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        let start = count * worker / workers, end = count * (worker + 1) / workers
        if start < end { body(start..<end) }
    }
}
