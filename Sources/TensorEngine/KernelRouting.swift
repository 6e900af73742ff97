import CKernels
import Foundation

/// The instruction sets the engine has kernels for. `avx512` and `avx2` are CKernels' C kernel
/// tables (cpu_features.h); `generic` is the engine's Swift loops with OpenBLAS products, and runs
/// anywhere.
public enum KernelSet: String, CaseIterable, Sendable {
    case avx512, avx2, generic

    /// Whether this CPU runs the set.
    public var isAvailable: Bool { self == .generic || table != nil }

    /// The fastest set this CPU runs.
    public static var best: KernelSet { allCases.first { $0.isAvailable } ?? .generic }

    /// The set's C kernels: nil for `generic`, and where this CPU lacks the set.
    public var table: UnsafePointer<rstpm_kernel_set>? {
        switch self {
        case .avx512: rstpm_avx512_kernels()
        case .avx2: rstpm_avx2_kernels()
        case .generic: nil
        }
    }

    /// RSTPM_KERNELS=avx512|avx2|generic picks the set, unset the best one. A value that names no
    /// set, or one this CPU lacks, stops the process with a message: running silently on another
    /// set would make a forced-route test or benchmark measure the wrong kernels.
    fileprivate static let startup: KernelSet = {
        guard let value = ProcessInfo.processInfo.environment["RSTPM_KERNELS"], !value.isEmpty else { return best }
        let names = allCases.map(\.rawValue).joined(separator: ", ")
        guard let set = KernelSet(rawValue: value) else {
            stop("RSTPM_KERNELS=\(value) names no kernel set: use one of \(names), or unset it for the fastest this CPU runs")
        }
        guard set.isAvailable else {
            stop("RSTPM_KERNELS=\(value): this CPU lacks the instructions of that kernel set; it runs " +
                 allCases.filter(\.isAvailable).map(\.rawValue).joined(separator: ", "))
        }
        return set
    }()
}

/// Stops the process at start-up with a one-line message and exit status 2: a forced kernel set
/// or precision that cannot run must not silently run another.
private func stop(_ message: String) -> Never {
    FileHandle.standardError.write(Data("rstpm: \(message)\n".utf8))
    exit(2)
}

/// The number format of the engine's inference products: the convolutions (and 1x1 ones, the
/// linear layers of the networks) of layers in `.inference` mode, whose weights are packed once.
/// `f32` is the reference. `bf16` (AVX-512 BF16, on the avx512 kernel set) rounds the weights and
/// the activations to bf16 while packing them and sums in f32; everything else (depthwise,
/// BatchNorm, activations, training, backward passes, `.evaluation`) stays f32.
public enum Precision: String, CaseIterable, Sendable {
    case f32, bf16

    /// Why this precision cannot run on kernel set `set` on this CPU; nil where it can.
    public func problem(on set: KernelSet) -> String? {
        switch self {
        case .f32: return nil
        case .bf16:
            if set != .avx512 { return "bf16 runs on the avx512 kernel set only, and the engine runs \(set.rawValue) (RSTPM_KERNELS)" }
            return rstpm_avx512_bf16_kernels() == nil ? "this CPU lacks avx512_bf16" : nil
        }
    }

    /// RSTPM_PRECISION=f32|bf16, unset f32. A value that names no precision, or one that cannot
    /// run here, stops the process with a message, as RSTPM_KERNELS does.
    fileprivate static func startup(on set: KernelSet) -> Precision {
        guard let value = ProcessInfo.processInfo.environment["RSTPM_PRECISION"], !value.isEmpty else { return .f32 }
        guard let precision = Precision(rawValue: value) else {
            stop("RSTPM_PRECISION=\(value) names no precision: use one of \(allCases.map(\.rawValue).joined(separator: ", ")), or unset it for f32")
        }
        if let problem = precision.problem(on: set) { stop("RSTPM_PRECISION=\(value): \(problem); use f32") }
        return precision
    }
}

/// The routing table: the kernels of one set, which every route of the engine (products,
/// depthwise convolution, BatchNorm, ReLU/ReLU6) calls. `c` holds the set's C kernels; it is nil
/// for `generic`, whose routes are the Swift loops and OpenBLAS next to each call site.
struct Kernels {
    let set: KernelSet
    let precision: Precision
    let c: rstpm_kernel_set?
    /// The C product's register tile (rows, columns of C): blocks of C split at multiples of it
    /// leave no partial tiles inside the product. The generic set splits its OpenBLAS products
    /// at 14 x 32, as the engine always did.
    let gemmRows: Int, gemmColumns: Int

    init(_ set: KernelSet, precision: Precision = .f32) {
        precondition(set.isAvailable, "kernel set \(set) does not run on this CPU")
        precondition(precision.problem(on: set) == nil, "precision \(precision) does not run here: \(precision.problem(on: set) ?? "")")
        (self.set, self.precision) = (set, precision)
        c = set.table?.pointee
        (gemmRows, gemmColumns) = (c.map { $0.gemm_rows } ?? 14, c.map { $0.gemm_columns } ?? 32)
    }

    /// The table that packs and multiplies frozen weights in `precision` on `set`: the set's own,
    /// or in bf16 the avx512 set with bf16 inference products.
    static func frozenTable(_ set: KernelSet, _ precision: Precision) -> rstpm_kernel_set? {
        precision == .bf16 ? rstpm_avx512_bf16_kernels()?.pointee : set.table?.pointee
    }
}

/// The set in use: RSTPM_KERNELS or the best for this CPU, and RSTPM_PRECISION, chosen on first use.
nonisolated(unsafe) var kernels = Kernels(KernelSet.startup, precision: Precision.startup(on: KernelSet.startup))

extension Engine {
    /// The kernel set the engine runs (RSTPM_KERNELS, else the fastest this CPU runs).
    public static var kernelSet: KernelSet { kernels.set }

    /// Runs every later engine call on `set` (which must be available). For tests and benchmarks
    /// that compare sets in one process; call it only while no engine work runs.
    public static func useKernels(_ set: KernelSet) {
        kernels = Kernels(set)
    }

    /// The precision of the inference products (RSTPM_PRECISION or `choosePrecision`, else f32).
    public static var precision: Precision { kernels.precision }

    /// Runs the inference products in `precision` (which must run on the engine's kernel set),
    /// for tests and benchmarks that compare precisions in one process; call it only while no
    /// engine work runs. A switch of kernel set returns to f32.
    public static func usePrecision(_ precision: Precision) {
        kernels = Kernels(kernels.set, precision: precision)
    }

    /// `usePrecision` at start-up for an operator's choice named `source` (`--precision bf16`):
    /// where it cannot run here, stops the process with a one-line message and exit status 2.
    public static func choosePrecision(_ precision: Precision, source: String) {
        if let problem = precision.problem(on: kernelSet) { stop("\(source): \(problem); use f32") }
        usePrecision(precision)
    }
}
