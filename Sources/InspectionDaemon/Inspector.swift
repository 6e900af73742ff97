// InspectionDaemon: the watch-folder service behind `rstpmd`.
//
// Images land in a line's inbox; the line's `InboxWatcher` notices them (a poll timer for
// SMB/NFS plus inotify for local disks) and its `InboxScanner` reports a file once it is
// complete. The `WorkQueue` claims it by an atomic rename into this instance's work directory;
// the `BatchStages` hand it to an `Inspector` (the model, supplied by the executable) for a
// score and an anomaly map; `VerdictPolicy` decides; the `OutcomeWriter` writes `<name>.json`
// and `<name>.heatmap.png` durably to the outbox and archives, deletes or leaves the input.
// `LinePipeline` puts these parts together. The work directory is the queue: whatever is there
// at start is recovered. Every file operation goes through `Syscalls` (DaemonSupport), so tests
// can make the disk fail on purpose. `DaemonService` runs the lines under systemd (sd_notify,
// watchdog, reload, drain). docs/rstpmd.md lists the functions one image passes through.
import Foundation
import SystemPackage

/// What the model behind a line is, as recorded in every verdict.
public struct ModelIdentity: Sendable, Equatable, Codable {
    public var identifier: String
    public var version: String
    /// The precision of the model's inference products (`f32`, `bf16`; `PrecisionChoice`); nil
    /// where no network runs (test doubles) and in verdicts from before it was recorded.
    public var precision: String?

    public init(identifier: String, version: String, precision: String? = nil) {
        self.identifier = identifier
        self.version = version
        self.precision = precision
    }

    enum CodingKeys: String, CodingKey {
        case identifier = "id"
        case version, precision
    }

    /// Every key, `precision` as null when unknown, as the verdict writes every field.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(identifier, forKey: .identifier)
        try c.encode(version, forKey: .version)
        try c.encode(precision, forKey: .precision)
    }
}

/// One claimed input handed to the inspector: its bytes, already read (O_NOFOLLOW) from the
/// work directory.
public struct InspectionInput: Sendable {
    /// The file name as it arrived in the inbox.
    public var fileName: String
    /// Where it lies now (the line's work directory).
    public var path: FilePath
    public var bytes: [UInt8]

    public init(fileName: String, path: FilePath, bytes: [UInt8]) {
        self.fileName = fileName
        self.path = path
        self.bytes = bytes
    }
}

/// Where a decision threshold came from, as recorded in the verdict.
public enum ThresholdSource: String, Sendable, Codable {
    /// Shipped with the model bundle (calibrated on good validation images).
    case model
    /// `threshold:` in the line's configuration overrides the model's value.
    case configuration
}

/// Milliseconds spent in each stage for one image.
public struct InspectionTimings: Sendable, Equatable {
    public var decodeMilliseconds: Double
    public var inferMilliseconds: Double

    public init(decodeMilliseconds: Double, inferMilliseconds: Double) {
        self.decodeMilliseconds = decodeMilliseconds
        self.inferMilliseconds = inferMilliseconds
    }
}

/// The inspector's answer for one image.
public struct InspectionOutcome: Sendable {
    /// Image-level anomaly score (higher is more anomalous).
    public var score: Float
    /// The model's own threshold; a line's `threshold:` replaces it (`VerdictPolicy`).
    public var threshold: Float
    /// Pixel anomaly scores, row-major, covering the whole original image. // (mapHeight, mapWidth)
    public var anomalyMap: [Float]
    public var mapWidth: Int
    public var mapHeight: Int
    /// The decoded image's size, to which the map is scaled for region extraction.
    public var imageWidth: Int
    public var imageHeight: Int
    /// Renders and encodes the heatmap figure as PNG, outlined at the threshold `VerdictPolicy`
    /// decided, with the score and verdict drawn into its corner when `drawsLabel`. Deferred so
    /// that the pipeline draws it on its output thread while the network works on the next
    /// batch; it may throw (out of memory).
    public var renderHeatmapPNG: @Sendable (_ threshold: Float, _ drawsLabel: Bool) throws -> [UInt8]
    public var timings: InspectionTimings

    /// An outcome whose heatmap is already encoded.
    public init(
        score: Float, threshold: Float,
        anomalyMap: [Float], mapWidth: Int, mapHeight: Int,
        imageWidth: Int, imageHeight: Int, heatmapPNG: [UInt8], timings: InspectionTimings
    ) {
        self.init(score: score, threshold: threshold, anomalyMap: anomalyMap, mapWidth: mapWidth,
                  mapHeight: mapHeight, imageWidth: imageWidth, imageHeight: imageHeight, renderHeatmapPNG: { _, _ in heatmapPNG }, timings: timings)
    }

    public init(
        score: Float, threshold: Float,
        anomalyMap: [Float], mapWidth: Int, mapHeight: Int,
        imageWidth: Int, imageHeight: Int, renderHeatmapPNG: @escaping @Sendable (_ threshold: Float, _ drawsLabel: Bool) throws -> [UInt8], timings: InspectionTimings
    ) {
        precondition(anomalyMap.count == mapWidth * mapHeight, "anomaly map has \(anomalyMap.count) values for \(mapWidth)x\(mapHeight)")
        self.score = score
        self.threshold = threshold
        self.anomalyMap = anomalyMap
        self.mapWidth = mapWidth
        self.mapHeight = mapHeight
        self.imageWidth = imageWidth
        self.imageHeight = imageHeight
        self.renderHeatmapPNG = renderHeatmapPNG
        self.timings = timings
    }
}

/// Why one image could not be inspected. Each sends that input (and only that input) to
/// quarantine with `<name>.error.json`; the rest of the batch goes on.
public enum InspectionError: Error, Sendable, Equatable {
    /// Not a readable image: the codec's message says why.
    case decodeFailure(message: String)
    /// Larger than the line accepts.
    case tooLarge(width: Int, height: Int, limit: Int)
    /// A format the inspector does not read; the decoder's message says so in full.
    case unsupportedFormat(message: String)
    /// The model failed on a decoded image (non-finite scores, shape it cannot take).
    case inferenceFailure(message: String)

    /// Whether a file still being written fails this way too (it ends early, or its header has
    /// not arrived yet).
    public var mayBeIncomplete: Bool {
        switch self {
        case .decodeFailure, .unsupportedFormat: return true
        case .tooLarge, .inferenceFailure: return false
        }
    }

    /// A stable, machine-readable kind for error.json.
    public var kind: String {
        switch self {
        case .decodeFailure: return "decode_failure"
        case .tooLarge: return "too_large"
        case .unsupportedFormat: return "unsupported_format"
        case .inferenceFailure: return "inference_failure"
        }
    }

    public var message: String {
        switch self {
        case .decodeFailure(let message): return "cannot decode image: \(message)"
        case .tooLarge(let width, let height, let limit): return "image is \(width)x\(height) pixels, more than the limit of \(limit) pixels"
        case .unsupportedFormat(let message): return message
        case .inferenceFailure(let message): return "inference failed: \(message)"
        }
    }
}

/// The model behind a line. Implemented by the RSTPM module (teacher, student, discriminator);
/// tests use deterministic doubles. `prepare` does the work on a batch that needs no network
/// (decoding) on another thread, while the batch before is inspected; `inspect(prepared:)` is
/// called from one line's queue at a time, with what this inspector's own `prepare` returned.
/// An inspector that does nothing ahead prepares `[InspectionInput]`, the inputs themselves.
public protocol Inspector: AnyObject {
    /// What `prepare` hands to `inspect(prepared:)`; only this inspector reads it.
    associatedtype Prepared
    var modelIdentity: ModelIdentity { get }
    /// The model's own threshold, when known before the first input (for the metrics).
    var modelThreshold: Float? { get }
    func prepare(_ inputs: [InspectionInput]) -> Prepared
    /// One result per input of the prepared batch, in order. A batch holds the files that
    /// arrived together.
    func inspect(prepared: Prepared) -> [Result<InspectionOutcome, InspectionError>]
}

extension Inspector {
    public var modelThreshold: Float? { nil }

    /// `prepare` then `inspect`, on the calling thread.
    public func inspect(_ inputs: [InspectionInput]) -> [Result<InspectionOutcome, InspectionError>] {
        inspect(prepared: prepare(inputs))
    }
}

extension Inspector where Prepared == [InspectionInput] {
    public func prepare(_ inputs: [InspectionInput]) -> [InspectionInput] { inputs }
}

/// Any inspector, its prepared type kept inside: what `prepare` returns can only go back to
/// the inspector that prepared it, so no `Any` and no cast are needed. A line serves one of
/// these, and a model swap replaces it with another, whose prepared type may differ.
public final class AnyInspector {
    public let modelIdentity: ModelIdentity
    public let modelThreshold: Float?
    private let prepareBatch: ([InspectionInput]) -> PreparedBatch

    public init<Base: Inspector>(_ base: Base) {
        modelIdentity = base.modelIdentity
        modelThreshold = base.modelThreshold
        prepareBatch = { inputs in
            let prepared = base.prepare(inputs)
            return PreparedBatch(inputs: inputs) { base.inspect(prepared: prepared) }
        }
    }

    /// Runs the inspector's `prepare` now; the batch's `inspect()` runs its `inspect(prepared:)`.
    public func prepare(_ inputs: [InspectionInput]) -> PreparedBatch {
        prepareBatch(inputs)
    }
}

/// A batch that one inspector prepared, bound to that inspector's `inspect(prepared:)`.
public struct PreparedBatch {
    public let inputs: [InspectionInput]
    private let inspectPrepared: () -> [Result<InspectionOutcome, InspectionError>]

    init(inputs: [InspectionInput], inspect: @escaping () -> [Result<InspectionOutcome, InspectionError>]) {
        self.inputs = inputs
        self.inspectPrepared = inspect
    }

    /// One result per input, in order.
    public func inspect() -> [Result<InspectionOutcome, InspectionError>] {
        let results = inspectPrepared()
        precondition(results.count == inputs.count, "inspector returned \(results.count) results for \(inputs.count) inputs")
        return results
    }
}

/// Loads a line's model bundle (`line.modelBundle`; the line also gives its heatmap
/// resolution); called at start and on every SIGHUP reload. The line's threshold override is
/// not the inspector's business: `VerdictPolicy` applies it.
public typealias ModelLoader = (_ line: LineConfiguration) throws -> any Inspector

/// Aborts the process when it is asked to inspect an input named `fileName`: the poison pill of
/// the crash-containment test (rstpmd wraps its inspector in one when the environment sets
/// `RSTPMD_TEST_CRASH_ON` to a file name). The abort runs where a decoder or network bug would.
public final class CrashingInspector<Inner: Inspector>: Inspector {
    let inner: Inner
    let fileName: String

    public init(_ inner: Inner, crashingOn fileName: String) {
        self.inner = inner
        self.fileName = fileName
    }

    public var modelIdentity: ModelIdentity { inner.modelIdentity }

    public func prepare(_ inputs: [InspectionInput]) -> (inputs: [InspectionInput], inner: Inner.Prepared) {
        (inputs, inner.prepare(inputs))
    }

    public func inspect(prepared: (inputs: [InspectionInput], inner: Inner.Prepared)) -> [Result<InspectionOutcome, InspectionError>] {
        if prepared.inputs.contains(where: { $0.fileName == fileName }) { abort() }
        return inner.inspect(prepared: prepared.inner)
    }
}
