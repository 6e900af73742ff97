/// A tensor that belongs to a model's state and can be read or replaced by name when loading or
/// saving weights: a `Parameter` or a `Buffer`.
public protocol StateTensor: AnyObject {
    var value: Tensor { get set }
}

/// A trainable tensor and the gradient accumulated for it.
///
/// `name` is the local PyTorch name ("weight", "bias"); the dotted path comes from
/// `Layer.namedParameters()`. The gradient is allocated on first use, so frozen networks never
/// pay for it.
public final class Parameter: StateTensor {
    public let name: String
    public var value: Tensor { didSet { version &+= 1 } }
    /// Changes whenever `value` does, in-place writes included: what caches derived from the
    /// value (packed weights) compare.
    public private(set) var version = 0
    private var storedGradient: Tensor?

    public init(name: String, value: Tensor) {
        self.name = name
        self.value = value
    }

    /// Accumulated gradient, the shape of `value`; zeros until a backward adds into it.
    public var gradient: Tensor {
        get { storedGradient ?? Tensor(zeros: value.shape) }
        set {
            precondition(newValue.shape == value.shape, "gradient \(newValue.shape) for parameter \(name) \(value.shape)")
            storedGradient = newValue
        }
    }

    /// Whether a backward has accumulated anything since the gradient was dropped.
    public var hasGradient: Bool { storedGradient != nil }

    /// Sets the gradient to zero (keeping its storage).
    public func zeroGradient() {
        if storedGradient != nil { storedGradient!.fill(with: 0) }
    }

    /// Frees the gradient storage (inference after training).
    public func dropGradient() { storedGradient = nil }

    /// Gives the kernels in-place access to the gradient, allocating it on first use.
    func withGradient<Result>(_ body: (UnsafeMutableBufferPointer<Float>) -> Result) -> Result {
        if storedGradient == nil { storedGradient = Tensor(zeros: value.shape) }
        return storedGradient!.scalars.withUnsafeMutableBufferPointer { body($0) }
    }
}

/// Non-trainable state saved with a model, e.g. BatchNorm's running statistics.
public final class Buffer: StateTensor {
    public let name: String
    public var value: Tensor

    public init(name: String, value: Tensor) {
        self.name = name
        self.value = value
    }
}
