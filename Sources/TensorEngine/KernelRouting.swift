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

    private static func stop(_ message: String) -> Never {
        FileHandle.standardError.write(Data("rstpm: \(message)\n".utf8))
        exit(2)
    }
}

/// The routing table: the kernels of one set, which every route of the engine (products,
/// depthwise convolution, BatchNorm, ReLU/ReLU6) calls. `c` holds the set's C kernels; it is nil
/// for `generic`, whose routes are the Swift loops and OpenBLAS next to each call site.
struct Kernels {
    let set: KernelSet
    let c: rstpm_kernel_set?
    /// The C product's register tile (rows, columns of C): blocks of C split at multiples of it
    /// leave no partial tiles inside the product. The generic set splits its OpenBLAS products
    /// at 14 x 32, as the engine always did.
    let gemmRows: Int, gemmColumns: Int

    init(_ set: KernelSet) {
        precondition(set.isAvailable, "kernel set \(set) does not run on this CPU")
        self.set = set
        c = set.table?.pointee
        (gemmRows, gemmColumns) = (c.map { $0.gemm_rows } ?? 14, c.map { $0.gemm_columns } ?? 32)
    }
}

/// The set in use: RSTPM_KERNELS or the best for this CPU, chosen on first use.
nonisolated(unsafe) var kernels = Kernels(KernelSet.startup)

extension Engine {
    /// The kernel set the engine runs (RSTPM_KERNELS, else the fastest this CPU runs).
    public static var kernelSet: KernelSet { kernels.set }

    /// Runs every later engine call on `set` (which must be available). For tests and benchmarks
    /// that compare sets in one process; call it only while no engine work runs.
    public static func useKernels(_ set: KernelSet) {
        kernels = Kernels(set)
    }
}
