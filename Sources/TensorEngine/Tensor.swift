/// A float32 tensor of any rank: a shape and contiguous row-major storage, with value semantics.
///
/// Feature maps are NCHW. `scalars` may be mutated in place but must keep `count` elements.
public struct Tensor: Equatable, Sendable, CustomStringConvertible {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    public init(shape: [Int], repeating value: Float) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.scalars = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// Storage with unspecified contents, for kernels that overwrite every element (saves
    /// zero-filling large activations).
    init(unspecified shape: [Int]) {
        let count = shape.reduce(1, *)
        self.shape = shape
        self.scalars = [Float](unsafeUninitializedCapacity: count) { _, initializedCount in initializedCount = count }
    }

    /// Number of elements.
    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// NCHW accessors; the tensor must have rank 4.
    public var batchSize: Int { precondition(rank == 4, "batchSize needs NCHW, shape is \(shape)"); return shape[0] }
    public var channels: Int { precondition(rank == 4, "channels needs NCHW, shape is \(shape)"); return shape[1] }
    public var height: Int { precondition(rank == 4, "height needs NCHW, shape is \(shape)"); return shape[2] }
    public var width: Int { precondition(rank == 4, "width needs NCHW, shape is \(shape)"); return shape[3] }

    public var description: String {
        let preview = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), scalars: [\(preview)\(count > 8 ? ", ..." : "")])"
    }

    /// The same scalars under another shape with the same element count.
    public func reshaped(to newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Item `index` of the leading (batch) dimension, keeping that dimension with size 1.
    public func batchItem(_ index: Int) -> Tensor {
        batchItems(index..<(index + 1))
    }

    /// Items `range` of the leading (batch) dimension.
    public func batchItems(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "batch range \(range) out of bounds for shape \(shape)")
        let itemSize = shape[0] == 0 ? 0 : count / shape[0]
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, scalars: Array(scalars[(range.lowerBound * itemSize)..<(range.upperBound * itemSize)]))
    }

    /// Concatenates tensors along the leading (batch) dimension, as `torch.cat(tensors, 0)`.
    public static func concatenatingBatches(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "nothing to concatenate")
        let tail = Array(tensors[0].shape.dropFirst())
        var scalars: [Float] = []
        scalars.reserveCapacity(tensors.reduce(0) { $0 + $1.count })
        var batch = 0
        for tensor in tensors {
            precondition(Array(tensor.shape.dropFirst()) == tail, "batch concatenation of \(tensor.shape) with trailing \(tail)")
            scalars.append(contentsOf: tensor.scalars)
            batch += tensor.shape[0]
        }
        return Tensor(shape: [batch] + tail, scalars: scalars)
    }

    /// Stacks equally shaped tensors along a new leading dimension, as `torch.stack(tensors, 0)`.
    public static func stack(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "nothing to stack")
        let itemShape = tensors[0].shape
        var scalars: [Float] = []
        scalars.reserveCapacity(tensors.count * tensors[0].count)
        for tensor in tensors {
            precondition(tensor.shape == itemShape, "stacking \(tensor.shape) with \(itemShape)")
            scalars.append(contentsOf: tensor.scalars)
        }
        return Tensor(shape: [tensors.count] + itemShape, scalars: scalars)
    }

    /// Sets every element to `value`, keeping the storage.
    public mutating func fill(with value: Float) {
        scalars.withUnsafeMutableBufferPointer { buffer in
            for i in buffer.indices { buffer[i] = value }
        }
    }

    /// Largest element (for logging and scores); the tensor must not be empty.
    public func max() -> Float {
        precondition(count > 0, "max of an empty tensor")
        return scalars.withUnsafeBufferPointer { buffer in buffer.reduce(-Float.infinity) { Swift.max($0, $1) } }
    }

    /// Mean of all elements, accumulated in double precision.
    public func mean() -> Float {
        precondition(count > 0, "mean of an empty tensor")
        return scalars.withUnsafeBufferPointer { buffer in
            var sum = 0.0
            for value in buffer { sum += Double(value) }
            return Float(sum / Double(buffer.count))
        }
    }
}

// Elementwise arithmetic on equally shaped tensors (no gradients: use the op objects for those).
extension Tensor {
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.zipped(with: rhs, +) }
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.zipped(with: rhs, -) }
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.zipped(with: rhs, *) }
    public static func + (lhs: Tensor, rhs: Float) -> Tensor { lhs.mapped { $0 + rhs } }
    public static func * (lhs: Tensor, rhs: Float) -> Tensor { lhs.mapped { $0 * rhs } }

    public static func += (lhs: inout Tensor, rhs: Tensor) {
        precondition(lhs.shape == rhs.shape, "adding \(rhs.shape) into \(lhs.shape)")
        lhs.scalars.withUnsafeMutableBufferPointer { l in
            rhs.scalars.withUnsafeBufferPointer { r in
                for i in l.indices { l[i] += r[i] }
            }
        }
    }

    /// Applies `transform` to every element.
    public func mapped(_ transform: (Float) -> Float) -> Tensor {
        Tensor(shape: shape, scalars: scalars.map(transform))
    }

    func zipped(with other: Tensor, _ combine: (Float, Float) -> Float) -> Tensor {
        precondition(shape == other.shape, "elementwise op on \(shape) and \(other.shape)")
        var result = [Float](repeating: 0, count: count)
        scalars.withUnsafeBufferPointer { a in
            other.scalars.withUnsafeBufferPointer { b in
                result.withUnsafeMutableBufferPointer { r in
                    for i in r.indices { r[i] = combine(a[i], b[i]) }
                }
            }
        }
        return Tensor(shape: shape, scalars: result)
    }
}
