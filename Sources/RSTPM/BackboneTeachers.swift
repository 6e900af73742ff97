import Backbones
import Checkpoints
import Foundation
import OperatorErrors
import TensorEngine

extension Backbone: FeatureExtractor, InferenceFoldable {
    public var tapChannels: [Int] { kind.tapChannels }
}

extension TeacherSet {
    /// T1 and T2 from their ImageNet checkpoints in `weightsDirectory` (each kind's default file
    /// name), frozen with BatchNorm folded; S1 = a random-init backbone of T1's kind.
    public static func pretrained(teacher1: String, teacher2: String, weightsDirectory: URL) throws -> TeacherSet {
        func kind(_ name: String, _ role: String) throws -> BackboneKind {
            guard let kind = BackboneKind(rawValue: name) else {
                throw OperatorError(.invalidInput, path: "configuration", problem: "unknown \(role) backbone \"\(name)\"",
                                 hint: "use one of \(BackboneKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return kind
        }
        let kinds = [try kind(teacher1, "T1"), try kind(teacher2, "T2")]
        var networks: [Backbone] = []
        var records: [TeacherRecord] = []
        for (role, kind) in zip(["T1", "T2"], kinds) {
            let file = weightsDirectory.appendingPathComponent(kind.defaultCheckpointFileName)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw OperatorError(.notFound, path: file.path, problem: "\(role) checkpoint missing",
                                 hint: "run `rstpm weights fetch` or pass --weights-dir with \(kind.defaultCheckpointFileName)")
            }
            // Hash before parsing: a file under a known name must be the file that name promises,
            // so a crafted checkpoint never reaches the unpickler.
            let digest = try sha256Hex(of: file)
            if let promised = WeightsDirectory.expectedHashPrefix(fileName: kind.defaultCheckpointFileName), !digest.hasPrefix(promised) {
                throw OperatorError(.malformed, path: file.path, problem: "\(role) checkpoint has SHA-256 \(digest), its name promises one starting \(promised): the file is corrupt or not the published weights",
                                 hint: "delete it and run `rstpm weights fetch` again")
            }
            let network = try Backbone.pretrained(kind: kind, checkpoint: file)
            network.setMode(.inference)
            network.foldBatchNorm()
            networks.append(network)
            records.append(TeacherRecord(role: role, kind: kind.rawValue, checkpointFile: kind.defaultCheckpointFileName,
                                         checkpointSHA256: digest))
        }
        let studentKind = kinds[0]
        return TeacherSet(teacher1: networks[0], teacher2: networks[1], records: records,
                          makeStudent: { Backbone(kind: studentKind, seed: $0) })
    }
}

extension RSTPMModel {
    /// Loads a bundle with its teachers from `weightsDirectory`, checking their SHA-256 against
    /// the manifest.
    public static func load(bundle: URL, weightsDirectory: URL) throws -> RSTPMModel {
        let manifest = try ModelBundle.read(from: bundle).manifest
        let teachers = try TeacherSet.pretrained(teacher1: manifest.configuration.teacher1, teacher2: manifest.configuration.teacher2,
                                                 weightsDirectory: weightsDirectory)
        return try load(bundle: bundle, teachers: teachers)
    }
}
