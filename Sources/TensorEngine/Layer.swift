import OperatorErrors

/// How a layer behaves in forward: see the overview in TensorEngine.swift.
public enum LayerMode: Sendable {
    /// Batch statistics in BatchNorm (running statistics updated); caches kept for backward.
    case training
    /// Running statistics in BatchNorm; caches kept, so gradients can pass through.
    case evaluation
    /// Running statistics and nothing cached; backward is not allowed.
    case inference

    /// Whether forward keeps what backward needs.
    public var cachesForBackward: Bool { self != .inference }
}

/// A network piece with one input and one output and an llm.c-style forward/backward pair.
///
/// `forward` caches what `backward` needs unless `mode` is `.inference`; `backward` adds into
/// parameter gradients and returns the input gradient. Containers list their children so names,
/// modes and gradients can be handled recursively (see the extension below).
public protocol Layer: AnyObject {
    /// This layer's own mode; use `setMode(_:)` to set a whole tree.
    var mode: LayerMode { get set }
    func forward(_ input: Tensor) -> Tensor
    func backward(_ outputGradient: Tensor) -> Tensor
    /// Own trainable tensors under their local PyTorch names, in PyTorch's registration order.
    var ownParameters: [Parameter] { get }
    /// Own non-trainable state (e.g. running statistics), in PyTorch's registration order.
    var ownBuffers: [Buffer] { get }
    /// Child layers under their attribute names ("0", "1", ... in a `Sequential`).
    var children: [(name: String, layer: any Layer)] { get }
}

extension Layer {
    public var ownParameters: [Parameter] { [] }
    public var ownBuffers: [Buffer] { [] }
    public var children: [(name: String, layer: any Layer)] { [] }

    public func callAsFunction(_ input: Tensor) -> Tensor { forward(input) }

    /// Sets the mode of this layer and all its descendants.
    public func setMode(_ newMode: LayerMode) {
        mode = newMode
        for child in children { child.layer.setMode(newMode) }
    }

    /// Trainable parameters of the whole tree, depth-first, each once (the list optimisers take).
    public var parameters: [Parameter] {
        var seen = Set<ObjectIdentifier>()
        return namedParameters().map(\.parameter).filter { seen.insert(ObjectIdentifier($0)).inserted }
    }

    /// Parameters with dotted PyTorch names, e.g. "layer1.0.conv1.weight".
    public func namedParameters(prefix: String = "") -> [(name: String, parameter: Parameter)] {
        var result = ownParameters.map { (name: prefix + $0.name, parameter: $0) }
        for child in children { result += child.layer.namedParameters(prefix: prefix + child.name + ".") }
        return result
    }

    /// Buffers with dotted PyTorch names, e.g. "bn1.running_mean".
    public func namedBuffers(prefix: String = "") -> [(name: String, buffer: Buffer)] {
        var result = ownBuffers.map { (name: prefix + $0.name, buffer: $0) }
        for child in children { result += child.layer.namedBuffers(prefix: prefix + child.name + ".") }
        return result
    }

    /// Parameters and buffers in PyTorch `state_dict()` order: per layer its parameters, its
    /// buffers, then its children.
    public func namedState(prefix: String = "") -> [(name: String, tensor: any StateTensor)] {
        var result: [(name: String, tensor: any StateTensor)] = ownParameters.map { (name: prefix + $0.name, tensor: $0) }
        result += ownBuffers.map { (name: prefix + $0.name, tensor: $0) }
        for child in children { result += child.layer.namedState(prefix: prefix + child.name + ".") }
        return result
    }

    /// Zeroes the gradients of every parameter in the tree.
    public func zeroGradients() {
        for parameter in parameters { parameter.zeroGradient() }
    }
}

/// Layers applied one after another; children are named "0", "1", ... as in `torch.nn.Sequential`.
/// A BatchNorm2d followed by a ReLU or ReLU6 runs as one pass (`BatchNorm2d.forward(_:activation:)`).
public final class Sequential: Layer {
    public var mode: LayerMode = .training
    public let layers: [any Layer]
    private let names: [String]

    private let steps: [Step]

    /// One layer's pass, or a BatchNorm2d and the ReLU/ReLU6 after it in one pass (the
    /// activation layer itself is skipped: the BatchNorm's backward passes the gradient through
    /// it, and the pre-activation tensor is never written).
    private enum Step {
        case layer(any Layer)
        case normalization(BatchNorm2d, FusedActivation)
    }

    public init(_ layers: [any Layer]) {
        self.layers = layers
        self.names = layers.indices.map(String.init)
        steps = Self.steps(layers)
    }

    /// Children under explicit attribute names, for PyTorch modules that name their parts.
    public init(named namedLayers: [(name: String, layer: any Layer)]) {
        self.layers = namedLayers.map(\.layer)
        self.names = namedLayers.map(\.name)
        steps = Self.steps(layers)
    }

    private static func steps(_ layers: [any Layer]) -> [Step] {
        var steps: [Step] = []
        var index = 0
        while index < layers.count {
            if let batchNorm = layers[index] as? BatchNorm2d, index + 1 < layers.count {
                let activation: FusedActivation? = switch layers[index + 1] {
                case is ReLU: .relu
                case is ReLU6: .relu6
                default: nil
                }
                if let activation {
                    steps.append(.normalization(batchNorm, activation))
                    index += 2
                    continue
                }
            }
            steps.append(.layer(layers[index]))
            index += 1
        }
        return steps
    }

    public var children: [(name: String, layer: any Layer)] {
        Array(zip(names, layers)).map { (name: $0.0, layer: $0.1) }
    }

    public func forward(_ input: Tensor) -> Tensor {
        var x = input
        for step in steps {
            switch step {
            case .layer(let layer): x = layer.forward(x)
            case .normalization(let batchNorm, let activation): x = batchNorm.forward(x, activation: activation)
            }
        }
        return x
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        var g = outputGradient
        for step in steps.reversed() {
            switch step {
            case .layer(let layer): g = layer.backward(g)
            case .normalization(let batchNorm, _): g = batchNorm.backward(g)
            }
        }
        return g
    }
}

/// Precondition shared by every layer's backward.
@inline(__always)
func requireCache<T>(_ cache: T?, _ layer: String) -> T {
    guard let cache else {
        preconditionFailure("\(layer).backward without a cached forward (was the forward run in .inference mode, or backward called twice?)")
    }
    return cache
}

/// Why a set of named tensors could not be loaded into a model; `source` names where they came
/// from (a checkpoint path) so the operator knows which file to fix or replace.
extension OperatorError {
    static func missingTensor(name: String, source: String) -> OperatorError {
        OperatorError(.missingTensors([name]), path: source, problem: "no tensor \"\(name)\"",
                      hint: "is this checkpoint for this architecture and variant?")
    }

    static func shapeMismatch(name: String, expected: [Int], found: [Int], source: String) -> OperatorError {
        OperatorError(.tensorShapesDiffer([name]), path: source, problem: "tensor \"\(name)\" has shape \(found), the model expects \(expected)",
                      hint: "wrong architecture or width?")
    }

    static func unexpectedTensors(names: [String], source: String) -> OperatorError {
        let shown = names.prefix(5).joined(separator: ", ")
        return OperatorError(.unexpectedTensors(names), path: source,
                             problem: "\(names.count) tensors the model does not have (\(shown)\(names.count > 5 ? ", ..." : ""))",
                             hint: "wrong architecture?")
    }
}

extension Layer {
    /// Every parameter and buffer by its state_dict name (copies: values are tensors), for saving.
    public func stateDictionary() -> [String: Tensor] {
        Dictionary(namedState().map { ($0.name, $0.tensor.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// Copies `tensors` into this model's parameters and buffers by state_dict name.
    ///
    /// Every state tensor of the model must be present with its shape, except that one-element
    /// tensors match whatever their shape (PyTorch's 0-d `num_batches_tracked` may arrive as
    /// shape [] or [1]). Names the model does not have are an error unless
    /// `ignoringUnexpected` (e.g. a backbone's classifier head). Nothing is changed on error.
    public func loadState(_ tensors: [String: Tensor], source: String, ignoringUnexpected: Bool = false) throws {
        let state = namedState()
        var assignments: [(any StateTensor, Tensor)] = []
        for (name, target) in state {
            guard let tensor = tensors[name] else { throw OperatorError.missingTensor(name: name, source: source) }
            let bothScalars = tensor.count == 1 && target.value.count == 1
            guard tensor.shape == target.value.shape || bothScalars else {
                throw OperatorError.shapeMismatch(name: name, expected: target.value.shape, found: tensor.shape, source: source)
            }
            assignments.append((target, tensor.reshaped(to: target.value.shape)))
        }
        if !ignoringUnexpected {
            let known = Set(state.map(\.name))
            let unexpected = tensors.keys.filter { !known.contains($0) }.sorted()
            if !unexpected.isEmpty { throw OperatorError.unexpectedTensors(names: unexpected, source: source) }
        }
        for (target, tensor) in assignments { target.value = tensor }
    }
}
