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
//   backward needs (its input, a mask, BatchNorm's input, mean and 1/std). One forward, one
//   backward: a layer object used twice in one graph would overwrite its cache, so a model makes
//   one object per use.
// - `backward(outputGradient)` ADDS into its parameters' `gradient` and RETURNS the gradient
//   with respect to its input. Zeroing gradients is a separate step (`zeroGradients()` on a
//   layer or an optimiser), so gradients of several losses/batches can accumulate.
// - There is no autograd tape: a model's backward calls its layers' backwards in reverse order,
//   and ops with two inputs (add, concatenation, multiply, distance) are small objects whose
//   backward returns one gradient per input. Backward releases the layer's cache.
// - Shape errors are programmer errors (`precondition` with the shapes in the message); only
//   loading state from outside (`loadState`) throws.
// - A layer object is not thread-safe (its cache); run one model per thread, or one at a time.
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
// optimisers take. `stateDictionary()` and `loadState(_:source:ignoringUnexpected:)` save and
// load the whole tree by those names.
//
// Ops and their PyTorch twins
// ---------------------------
// Layers (one input): Conv2d, ConvTranspose2d, BatchNorm2d, ReLU, ReLU6, Sigmoid, MaxPool2d,
// AvgPool2d, GlobalAveragePool, Linear, Flatten, BilinearResize, NearestResize,
// L2Normalization, Sequential. Two-input or loss ops: ChannelConcatenation, Addition,
// Multiplication (with a one-channel map broadcast over channels), HalfSquaredDistance, Mean,
// FocalLoss. Optimisers: SGD, Adam. Each type's comment says which PyTorch call it matches and
// where it differs; every one is checked against PyTorch by the TensorEngineTests fixtures.
//
// Threads, BLAS and kernel sets
// -----------------------------
// The engine's kernels come in sets, one per instruction set, and ONE is chosen at start-up
// (KernelRouting.swift): RSTPM_KERNELS=avx512|avx2|generic, or, unset, the fastest the CPU runs;
// a value naming no set, or a set the CPU lacks, stops the process with a message. Every route
// (matrix products, depthwise convolution, BatchNorm, ReLU/ReLU6) calls the chosen set's table
// (`kernels`). `avx512` (14x32 register tiles of C) and `avx2` (AVX2 + FMA, 6x16 tiles) are C
// tables in CKernels, compiled per function for their ISA so the binary runs on any x86-64;
// `generic` has no C table: products go to OpenBLAS (`cblas_sgemm`) and the rest to the Swift
// loops, which compute the same functions. Tests switch sets with `Engine.useKernels(_:)`.
// The C products (packed blocks, bias and ReLU/ReLU6 applied in registers) take every product
// from 2 rows and 16 columns up; narrower ones stay on OpenBLAS, which is faster there.
// Stride-1 and stride-2 convolutions on a C product pack their input planes (stride 2: split
// into even and odd columns first) straight into the product's panels, with no im2col buffer;
// stride-1 ones also compute their input gradient as a convolution of the output gradient (no
// col2im). Frozen weights are packed once, in the layout of the set that multiplies them.
//
// Each call runs single-threaded: the engine splits a large product into column blocks
// itself, and every other loop (im2col, depthwise convolution, BatchNorm, pooling, resizing)
// splits its channels or rows the same way, over `Engine.threadCount` workers of CKernels'
// worker pool (`parallelFor`: the caller plus workers that spin a few hundred microseconds
// between jobs before they sleep, because waking sleeping threads for every layer cost ~13% of
// Lite0 at batch 1). One pool of workers, so OpenBLAS's spinning threads never compete with the
// engine's own. The default is every core the process sees (or RSTPM_THREADS);
// `Engine.configure(threadCount:)` changes it (the pool only grows).
//
// Memory
// ------
// Activations are fresh arrays (value semantics; caches share storage with the tensors they
// came from, copy-on-write). On first use the engine tells glibc never to map a block on its
// own and never to return freed heap memory, so the next forward reuses the pages of the last
// one instead of page-faulting fresh ones (batch-8 feature maps are tens of MB). im2col scratch
// comes from a small reusable pool and is bounded to about 4 MB per convolution (large planes
// are unfolded in blocks of output rows), so the columns are still in cache when the product
// reads them. The C products' packing scratch is per thread and reused.
//
// Inference fast paths
// --------------------
// A frozen network (teachers, benchmarks) can skip the layer-by-layer passes over memory:
// `Conv2d.inferenceForward(_:activation:)` writes bias + convolution + ReLU/ReLU6 in one pass
// (cache-sized output tiles: bias fill, sgemm with beta 1, activation), `Tensor.add(_:activation:)`
// adds a residual in place, and MaxPool2d in `.inference` keeps no argmax. Backbones use them
// after `foldBatchNorm()`.
//
// Training passes
// ---------------
// `BatchNorm2d.forward(_:activation:)` applies a following ReLU/ReLU6 in its own pass and its
// backward passes the gradient through it (recomputing the pre-activation from the cached
// input), so Conv-BN-ReLU writes one tensor, not three; `Sequential` and the backbones' units
// use it. BatchNorm2d, ReLU, ReLU6 and depthwise convolution run the kernel set's C kernels
// (batchnorm*.c, activations*.c, depthwise*.c) where it has them, else the Swift loops.

import CBLAS
import CKernels
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

    /// Sets the worker count of the engine's loops and matrix products (call it before work
    /// starts; RSTPM_THREADS in the environment sets the default).
    public static func configure(threadCount: Int) {
        precondition(threadCount >= 1, "thread count must be at least 1, got \(threadCount)")
        _ = defaultConfiguration
        configuredThreadCount = threadCount
    }

    private static let defaultConfiguration: Void = {
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let requested = ProcessInfo.processInfo.environment["RSTPM_THREADS"].flatMap(Int.init) ?? cores
        if configuredThreadCount == nil { configuredThreadCount = max(1, requested) }
        // The engine splits matrix products over its own workers (see sgemm), so each OpenBLAS
        // call runs on the calling thread.
        openblas_set_num_threads(1)
        keepLargeAllocationsInHeap()
    }()

    /// The OpenBLAS kernel set in use (e.g. "Haswell", "Cooperlake"), for benchmark reports:
    /// OPENBLAS_CORETYPE in the environment overrides OpenBLAS's own choice by CPU model.
    public static var blasCoreName: String {
        prepare()
        return openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    }

    /// Activations are large, short-lived arrays. By default glibc maps each one fresh from the
    /// kernel and unmaps it on free, so every layer pays page faults on new pages; serving them
    /// from the heap and keeping freed memory lets the next layer reuse the pages. (mallopt is
    /// looked up at run time: Glibc's Swift module does not export malloc.h.)
    private static func keepLargeAllocationsInHeap() {
        #if os(Linux)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let (trimThreshold, mmapMaximum): (Int32, Int32) = (-1, -4)  // M_TRIM_THRESHOLD, M_MMAP_MAX
        // No block is mapped on its own (the threshold cannot exceed 32 MiB, and batch-8 feature
        // maps are larger), and freed memory stays with the process for the next forward.
        _ = mallopt(mmapMaximum, 0)
        _ = mallopt(trimThreshold, Int32.max)
        #endif
    }

    /// Applies the default configuration once; kernels call this before their first sgemm.
    @inline(__always) static func prepare() { _ = defaultConfiguration }
}

/// Runs `body` over `0..<count` split into contiguous ranges on `Engine.threadCount` workers.
/// Four ranges per worker, so that a worker the OS schedules late (a busy machine) leaves its
/// share to the others instead of holding everyone up.
@inline(__always)
func parallelRanges(count: Int, _ body: (Range<Int>) -> Void) {
    let threads = Engine.threadCount
    let ranges = threads <= 1 ? 1 : min(4 * threads, count)
    if ranges <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    parallelFor(iterations: ranges) { index in
        let start = count * index / ranges, end = count * (index + 1) / ranges
        if start < end { body(start..<end) }
    }
}

extension Engine {
    /// Runs `body(i)` for i in 0..<count on the engine's workers, one index per worker at a time;
    /// the engine's loops inside `body` then run whole on the calling worker. For the items of
    /// an inference batch: each layer of an item runs on one core, without the hand-offs
    /// between cores at every layer, and the item's activations stay in that core's caches.
    /// `body` must touch only its own index's results (frozen layers pack their weights under a
    /// lock). Under RSTPM_PROFILE the indices run one after another: the profile's tables are
    /// not shared between threads.
    public static func forEachInParallel(count: Int, _ body: (Int) -> Void) {
        if LayerProfile.enabled {
            for index in 0..<count { body(index) }
            return
        }
        parallelFor(iterations: count, body)
    }
}

/// Runs `body(i)` for every i in `0..<iterations` on the calling thread and the engine's
/// `Engine.threadCount - 1` pool workers (`rstpm_parallel_for`), which spin briefly between
/// jobs instead of sleeping: a layer's parallel loop often lasts less than waking a thread.
@inline(__always)
func parallelFor(iterations: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        var job = body
        withUnsafeMutablePointer(to: &job) { pointer in
            rstpm_parallel_for(Int32(iterations), Int32(Engine.threadCount), { context, index in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(index))
            }, pointer)
        }
    }
}

/// Runs `body(source, target)` once for every (n, c) plane of two NCHW tensors that hold the
/// same number of planes (N*C), spread over the workers: `source` and `target` point at that
/// plane of each tensor (their sizes are `count / planes`). The per-plane loops of resizing
/// and pooling, forward and backward, are written on this.
@inline(__always)
func forEachPlane(of source: Tensor, into target: inout Tensor,
                  _ body: (_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>) -> Void) {
    let planes = source.shape[0] * source.shape[1]
    precondition(planes == target.shape[0] * target.shape[1], "forEachPlane: \(source.shape) vs \(target.shape)")
    guard planes > 0 else { return }
    let (sourcePlane, targetPlane) = (source.count / planes, target.count / planes)
    source.scalars.withUnsafeBufferPointer { x in
        target.scalars.withUnsafeMutableBufferPointer { y in
            let (x, y) = (x.baseAddress!, y.baseAddress!)
            parallelRanges(count: planes) { range in
                for plane in range { body(x + plane * sourcePlane, y + plane * targetPlane) }
            }
        }
    }
}
