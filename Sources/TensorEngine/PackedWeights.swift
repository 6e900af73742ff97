import CKernels
import Foundation

/// Guards the weights that frozen layers pack lazily (Conv2d's packed and Winograd weights):
/// the items of a batch may run on different workers at once (`Engine.forEachInParallel`), and
/// the first to reach a layer packs for all.
let frozenWeightsLock = NSLock()

/// A convolution's weights packed once for the kernel set's C product: each group's (rows,
/// columns) matrix in the panels the `frozen` table's `pack_a` writes (the layout follows the
/// set's register tile and the precision), so that products with frozen weights (`.inference`)
/// skip packing A on every call; they multiply with the same table. `version` is the weight
/// parameter's version it was packed from: any later change to the weights, or to the engine's
/// kernel set or the precision asked for, makes it stale. The product multiplies with `table`,
/// the one that packed them, so one process can run networks in different precisions.
final class PackedWeights {
    let version: Int
    let kernelSet: KernelSet
    let precision: Precision
    let table: rstpm_kernel_set
    let rows: Int, columns: Int, groups: Int
    private let groupFloats: Int
    private let panels: UnsafeMutablePointer<Float>

    /// Packs with the engine's current kernel set in `precision` (which must run on it); the set
    /// must have a C product.
    init(_ weights: UnsafePointer<Float>, groups: Int, rows: Int, columns: Int, version: Int, precision: Precision) {
        precondition(precision.problem(on: kernels.set) == nil, "precision \(precision) does not run on \(kernels.set)")
        let c = Kernels.frozenTable(kernels.set, precision)!
        (self.version, kernelSet, self.precision, table) = (version, kernels.set, precision, c)
        (self.rows, self.columns, self.groups) = (rows, columns, groups)
        groupFloats = c.packed_a_floats(rows, columns)
        panels = .allocate(capacity: groups * groupFloats)
        for group in 0..<groups {
            c.pack_a(rows, columns, weights + group * rows * columns, columns, panels + group * groupFloats)
        }
    }

    deinit { panels.deallocate() }

    /// Whether these panels still serve weights at `version` in `precision` on the engine's
    /// current kernel set.
    func matches(version: Int, precision: Precision) -> Bool {
        self.version == version && kernelSet == kernels.set && self.precision == precision
    }

    /// Group `group`'s packed matrix.
    func matrix(group: Int) -> rstpm_packed_a {
        rstpm_packed_a(panels: panels + group * groupFloats, rows: rows, first_row: 0)
    }
}

/// Calls `body` with a pointer to `packed`, or nil.
@inline(__always)
func withPackedMatrix<Result>(_ packed: rstpm_packed_a?, _ body: (UnsafePointer<rstpm_packed_a>?) -> Result) -> Result {
    guard var packed else { return body(nil) }
    return withUnsafePointer(to: &packed) { body($0) }
}
