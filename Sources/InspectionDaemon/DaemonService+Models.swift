// DaemonService's models and learning: each line's pipeline with its model (a bundle, or a
// store's current version), the learning cycles, and the swap to a new store version.
import ContinuousLearning
import DaemonSupport
import Foundation
import OperatorErrors
import SystemPackage

extension DaemonService {
    func makePipelines(_ configuration: DaemonConfiguration) throws -> ([LinePipeline], [String: String]) {
        var versions: [String: String] = [:]
        let pipelines = try configuration.lines.map { line in
            let (inspector, version) = try loadModel(line)
            versions[line.name] = version
            let autoAcceptor = line.learning.flatMap { learning in
                learning.autoAcceptQuantile.map { AutoAcceptor(accepted: learning.accepted, quantile: $0, syscalls: syscalls) }
            }
            let pipeline = LinePipeline(configuration: line, instance: configuration.instance, inspector: inspector,
                                        syscalls: syscalls, metrics: metrics, logger: logger, autoAcceptor: autoAcceptor)
            try pipeline.prepare()
            return pipeline
        }
        return (pipelines, versions)
    }

    /// Loads a line's model: the bundle itself, or for a model store the version `current`
    /// points at, whose name the verdicts then carry as `model.version`.
    func loadModel(_ line: LineConfiguration) throws -> (any Inspector, String?) {
        var bundle = line.modelBundle
        var version: String?
        do {
            if ModelStore.isStore(line.modelBundle, syscalls: syscalls) {
                let store = ModelStore(root: line.modelBundle, syscalls: syscalls)
                guard let current = try store.current() else {
                    throw OperatorError(.notFound, path: line.modelBundle.string, problem: "`current` is missing", hint: "run `rstpm model rollback LINE VERSION`")
                }
                bundle = current.path
                version = current.name
            }
            var versioned = line
            versioned.modelBundle = bundle
            let inspector = try modelLoader(versioned)
            return (version.map { Self.versioned(inspector, version: $0) } ?? inspector, version)
        } catch {
            throw ModelLoadError(line: line.name, bundle: bundle, underlying: "\(error)")
        }
    }

    /// The inspector reporting the store version it was loaded from.
    private static func versioned<Base: Inspector>(_ inspector: Base, version: String) -> any Inspector {
        StoreVersionInspector(inspector, version: version)
    }

    /// `--check-config`: loads every line's model exactly as `load()` will (a store's current
    /// version, the teachers, every SHA-256), without creating or touching any folder. One
    /// message per line that would not start, naming its `lines[i].model` key.
    public func checkModels(_ configuration: DaemonConfiguration) -> [String] {
        configuration.lines.enumerated().compactMap { index, line in
            do {
                _ = try loadModel(line)
                return nil
            } catch {
                return "lines[\(index)].model: \(error)"
            }
        }
    }

    /// A learning cycle per line with `learning:`; one whose line and settings did not change
    /// is kept (with its running trainer) across a reload.
    func makeLearning(_ configuration: DaemonConfiguration, keeping existing: [String: LearningLine]) throws -> [String: LearningLine] {
        var result: [String: LearningLine] = [:]
        for line in configuration.lines {
            guard let settings = line.learning else { continue }
            if let old = existing[line.name], old.configuration == settings, old.models.root == line.modelBundle {
                result[line.name] = old
                continue
            }
            guard let candidateEvaluator else {
                throw ModelLoadError(line: line.name, bundle: line.modelBundle, underlying: "learning is configured but this build cannot evaluate candidate models")
            }
            let learning = LearningLine(lineName: line.name, configuration: settings, modelStore: line.modelBundle, evaluator: candidateEvaluator,
                                        syscalls: syscalls, logger: logger.countingLearningFailures(of: line.name, into: metrics), clock: learningClock, timeZone: learningTimeZone)
            do {
                try learning.prepare()
            } catch {
                throw ModelLoadError(line: line.name, bundle: line.modelBundle, underlying: "cannot prepare learning: \(error)")
            }
            result[line.name] = learning
        }
        return result
    }

    /// Loads the version a line's `current` link points at when it differs from the one serving
    /// (after a promotion or `rstpm model rollback`) and hands it to the line, which switches
    /// between batches. Returns the lines that switched. Runs on `controlQueue` from
    /// housekeeping (tests may call it directly when they own the service).
    @discardableResult
    public func checkModelSwaps() -> [String] {
        var switched: [String] = []
        for line in lines where servingVersions[line.configuration.name] != nil {
            let name = line.configuration.name
            let store = ModelStore(root: line.configuration.modelBundle, syscalls: syscalls)
            guard let current = try? store.current(), current.name != servingVersions[name], failedVersions[name] != current.name else { continue }
            do {
                var versioned = line.configuration
                versioned.modelBundle = current.path
                let inspector = try modelLoader(versioned)
                line.replaceInspector(Self.versioned(inspector, version: current.name))
                servingVersions[name] = current.name
                failedVersions[name] = nil
                switched.append(name)
            } catch {
                failedVersions[name] = current.name
                metrics.increment("rstpmd_learning_failures_total", labels: ["line": name, "kind": "other"])
                logger.event(.learningFailed, .error, "cannot load \(current.name), \(servingVersions[name] ?? "the previous version") keeps serving: \(error)",
                                     ["line": "\(name)", "image.path": "\(current.path)"])
            }
        }
        return switched
    }
}
