import BuildInfo
import Checkpoints
import Foundation
import OperatorErrors
import TensorEngine

/// `manifest.json` of a model bundle (a directory with it and `weights.safetensors`).
public struct BundleManifest: Codable, Equatable {
    public static let currentFormatVersion = 1

    public struct Normalization: Codable, Equatable {
        public var mean: [Float]
        public var std: [Float]
    }

    public struct Threshold: Codable, Equatable {
        public var value: Float
        public var rule: RSTPMConfiguration.ThresholdRule
        /// Readable statement of the rule, e.g. "max validation-normal score x 1.1".
        public var statement: String
    }

    public struct TrainingSummary: Codable, Equatable {
        public var imageCount: Int
        public var trainingCount: Int
        public var validationCount: Int
        public var folder: String
        public var fileListSHA256: String
        public var studentEpochs: Int
        public var discriminatorEpochs: Int
        public var seconds: Double
    }

    public struct ValidationFigures: Codable, Equatable {
        /// Sum of the six level losses on the validation images (best epoch).
        public var studentLoss: Float
        public var studentBestEpoch: Int
        /// Focal loss of D on seeded pseudo-anomalies of the validation images (best epoch).
        public var discriminatorLoss: Float
        public var discriminatorBestEpoch: Int
        public var scoreMax: Float
        public var scoreMean: Float
    }

    public var formatVersion: Int
    public var modelID: String
    public var createdAt: String
    /// The rstpm that trained it (`0.1.0 (commit 5ad2686abcde)`); nil in manifests written before
    /// rstpm recorded it, which still load.
    public var rstpmVersion: String?
    public var configuration: RSTPMConfiguration
    public var teachers: [TeacherRecord]
    public var inputWidth: Int
    public var inputHeight: Int
    public var normalization: Normalization
    public var threshold: Threshold
    public var training: TrainingSummary
    public var validation: ValidationFigures
    /// SHA-256 of weights.safetensors.
    public var weightsSHA256: String
    /// Tensor name -> shape, as stored in weights.safetensors.
    public var tensors: [String: [Int]]
    /// The accuracy check of each reduced inference precision against f32 (`PrecisionCheck`),
    /// by precision name (`bf16`), as `rstpm train` ran it on the CPU it trained on; rstpmd runs
    /// a model in the fastest precision that passed. Nil in bundles trained before the check,
    /// or where no reduced precision ran: those run f32.
    public var precisions: [String: PrecisionCheck]? = nil
}

extension BundleManifest {
    /// The largest score Eq. 1 can give: each of the six level distances between unit vectors
    /// is at most 2, the three sums of two multiply to at most 4^3 = 64, and D's map is a
    /// probability. A threshold above it calls every image ok.
    public static let largestPossibleScore: Float = 64

    /// Why `threshold` cannot separate ok from defect, or nil: at or below 0 every image is a
    /// defect, above `largestPossibleScore` (or not finite) none is.
    public static func thresholdProblem(_ threshold: Float) -> String? {
        guard threshold.isFinite, threshold > 0, threshold <= largestPossibleScore else {
            return "\(threshold) must be finite, > 0 and <= \(largestPossibleScore) (the largest score the model can give)"
        }
        return nil
    }
}

/// Reading and writing model bundles.
public enum ModelBundle {
    public static let manifestFileName = "manifest.json"
    public static let weightsFileName = "weights.safetensors"

    /// Writes `networks`' state and `manifest` (its weightsSHA256 and tensors are filled in here)
    /// to `directory` atomically: everything goes to a temporary sibling that is then renamed into
    /// place (an existing bundle is moved aside first and removed after).
    @discardableResult
    public static func write(networks: RSTPMNetworks, manifest: BundleManifest, to directory: URL) throws -> BundleManifest {
        let parent = directory.deletingLastPathComponent()
        let temporary = parent.appendingPathComponent(".\(directory.lastPathComponent).tmp-\(UUID().uuidString)")
        let manager = FileManager.default
        do {
            try manager.createDirectory(at: temporary, withIntermediateDirectories: true)
            let pairs = networks.namedState().map { ($0.name, StoredTensor(shape: $0.tensor.value.shape, values: $0.tensor.value.scalars)) }
            let weightsURL = temporary.appendingPathComponent(weightsFileName)
            try SafeTensors.write(pairs, metadata: ["format": "rstpm-model", "model_id": manifest.modelID], to: weightsURL)
            var complete = manifest
            complete.weightsSHA256 = try sha256Hex(of: weightsURL)
            complete.tensors = Dictionary(uniqueKeysWithValues: pairs.map { ($0.0, $0.1.shape) })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(complete).write(to: temporary.appendingPathComponent(manifestFileName))
            var aside: URL?
            if manager.fileExists(atPath: directory.path) {
                aside = parent.appendingPathComponent(".\(directory.lastPathComponent).old-\(UUID().uuidString)")
                try manager.moveItem(at: directory, to: aside!)
            }
            try manager.moveItem(at: temporary, to: directory)
            if let aside { try? manager.removeItem(at: aside) }
            return complete
        } catch {
            try? manager.removeItem(at: temporary)
            throw OperatorError(.writeFailed, path: directory.path, problem: "cannot write the model bundle (\(error))",
                             hint: "check free space and write permission of \(parent.path)")
        }
    }

    /// Reads and checks a bundle: manifest fields, format version, configuration, the weights
    /// file's SHA-256 and its tensor names/shapes against the manifest.
    public static func read(from directory: URL) throws -> (manifest: BundleManifest, tensors: StateDict) {
        let manifestURL = directory.appendingPathComponent(manifestFileName)
        let weightsURL = directory.appendingPathComponent(weightsFileName)
        let rebuild = "retrain with `rstpm train` or copy the bundle again"
        guard let data = try? Data(contentsOf: manifestURL) else {
            throw OperatorError(.unreadable, path: manifestURL.path, problem: "missing or unreadable manifest", hint: "point --model at a bundle directory written by `rstpm train`")
        }
        let manifest: BundleManifest
        do { manifest = try JSONDecoder().decode(BundleManifest.self, from: data) } catch {
            throw OperatorError(.malformed, path: manifestURL.path, problem: "manifest is not a valid rstpm manifest (\(error))", hint: rebuild)
        }
        guard manifest.formatVersion == BundleManifest.currentFormatVersion else {
            throw OperatorError(.unsupported, path: manifestURL.path, problem: "format version \(manifest.formatVersion), this rstpm reads \(BundleManifest.currentFormatVersion)",
                             hint: "use the rstpm version that wrote it, or retrain")
        }
        let problems = manifest.configuration.problems()
        guard problems.isEmpty else {
            throw OperatorError(.malformed, path: manifestURL.path, problem: "invalid configuration: \(problems.joined(separator: "; "))", hint: rebuild)
        }
        if let problem = BundleManifest.thresholdProblem(manifest.threshold.value) {
            throw OperatorError(.malformed, path: manifestURL.path, problem: "threshold.value: \(problem)", hint: rebuild)
        }
        guard manifest.inputWidth == manifest.configuration.inputWidth, manifest.inputHeight == manifest.configuration.inputHeight,
              manifest.normalization.mean == ModelInput.mean, manifest.normalization.std == ModelInput.std,
              manifest.teachers.map(\.role) == ["T1", "T2"],
              manifest.teachers[0].kind == manifest.configuration.teacher1, manifest.teachers[1].kind == manifest.configuration.teacher2
        else {
            throw OperatorError(.malformed, path: manifestURL.path, problem: "manifest fields disagree (input size, normalisation or teachers)", hint: rebuild)
        }
        let digest: String
        do { digest = try sha256Hex(of: weightsURL) } catch {
            throw OperatorError(.unreadable, path: weightsURL.path, problem: "missing or unreadable weights", hint: rebuild)
        }
        guard digest == manifest.weightsSHA256 else {
            throw OperatorError(.malformed, path: weightsURL.path, problem: "SHA-256 \(digest) differs from the manifest's \(manifest.weightsSHA256): the weights are corrupt or from another model", hint: rebuild)
        }
        let tensors: StateDict
        do { tensors = try SafeTensors.read(contentsOf: weightsURL).tensors } catch {
            throw OperatorError(.malformed, path: weightsURL.path, problem: "unreadable safetensors (\(error))", hint: rebuild)
        }
        let stored = Dictionary(uniqueKeysWithValues: tensors.keys.map { ($0, tensors[$0]!.shape) })
        guard stored == manifest.tensors else {
            throw OperatorError(.malformed, path: weightsURL.path, problem: "tensor names or shapes differ from the manifest", hint: rebuild)
        }
        return (manifest, tensors)
    }

    /// Copies `tensors` into the networks' state, requiring exactly the same names and shapes.
    static func load(_ tensors: StateDict, into networks: RSTPMNetworks, path: String) throws {
        let state = networks.namedState()
        let expected = Set(state.map(\.name)), present = Set(tensors.keys)
        guard expected == present else {
            let missing = expected.subtracting(present).sorted().prefix(5), extra = present.subtracting(expected).sorted().prefix(5)
            throw OperatorError(.wrongWeights, path: path, problem: "tensor names do not fit this configuration and these teachers (missing \(Array(missing)), unexpected \(Array(extra)))",
                             hint: "the bundle was made for other teachers or another rstpm version; retrain")
        }
        for (name, target) in state {
            let tensor = tensors[name]!
            guard tensor.shape == target.value.shape else {
                throw OperatorError(.tensorShapesDiffer([name]), path: path, problem: "tensor \(name) has shape \(tensor.shape), the network needs \(target.value.shape)",
                                 hint: "the bundle was made for other teachers; retrain")
            }
            target.value = Tensor(shape: tensor.shape, scalars: tensor.values)
        }
    }
}
