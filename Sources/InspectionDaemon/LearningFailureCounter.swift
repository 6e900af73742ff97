import DaemonSupport
import Logging

/// Counts a learning line's failures into `rstpmd_learning_failures_total` as they are logged:
/// ContinuousLearning reports them as journal events and knows nothing of metrics, so the
/// daemon wraps the log handler it hands to each learning line. Everything is passed on.
struct LearningFailureCounter: LogHandler {
    var inner: any LogHandler
    let line: String
    let metrics: MetricsRegistry

    /// The kind label for an event at `level`, or nil when it is no failure (a notice such as
    /// "trainer stopped with the daemon" is not one).
    static func failureKind(_ event: JournalEvent?, level: Logger.Level) -> String? {
        guard level >= .warning, let event else { return nil }
        switch event {
        case .trainingFailed: return "training"
        case .gateRejected: return "gate_rejected"
        case .learningFailed: return "other"
        default: return nil
        }
    }

    func log(event: LogEvent) {
        if case .string(let id)? = event.metadata?["MESSAGE_ID"], let kind = Self.failureKind(JournalEvent(rawValue: id), level: event.level) {
            metrics.increment("rstpmd_learning_failures_total", labels: ["line": line, "kind": kind])
        }
        inner.log(event: event)
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }
}

extension Logger {
    /// This logger, counting `line`'s learning failures into `metrics` as well.
    public func countingLearningFailures(of line: String, into metrics: MetricsRegistry) -> Logger {
        var logger = self
        logger.handler = LearningFailureCounter(inner: handler, line: line, metrics: metrics)
        return logger
    }
}
