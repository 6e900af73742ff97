import BuildInfo
import ContinuousLearning
import DaemonSupport
import Foundation
import Logging
import OperatorErrors
import SystemPackage
import Systemd

/// The daemon's life under systemd: load configuration and models, recover, watch, report
/// READY/STATUS/WATCHDOG, reload on SIGHUP without losing queued work (it is in work/), and
/// drain on SIGTERM. The housekeeping timer pings the watchdog only when every line is idle or
/// has advanced since the last check, so a hung inspection lets systemd's watchdog fire.
public final class DaemonService {
    public let configurationPath: FilePath
    let modelLoader: ModelLoader
    let notifier: ServiceNotifier
    let syscalls: any Syscalls
    let logger: Logger
    /// Scores candidates for the learning gate; nil in a build without one (learning lines
    /// then refuse to start).
    let candidateEvaluator: (any CandidateEvaluator)?
    /// The learning schedule's clock and time zone (tests move them).
    let learningClock: () -> Date
    let learningTimeZone: TimeZone
    public let metrics = MetricsRegistry()
    /// Serialises start, reload, housekeeping and stop.
    public let controlQueue = DispatchQueue(label: "rstpmd.control")

    public private(set) var configuration: DaemonConfiguration?
    public private(set) var lines: [LinePipeline] = []
    /// The learning cycle of each line with `learning:`, by line name.
    public private(set) var learning: [String: LearningLine] = [:]
    /// The store version each line serves (lines whose model is a store), by line name.
    var servingVersions: [String: String] = [:]
    /// A version that failed to load, so it is reported once, not at every check.
    var failedVersions: [String: String] = [:]
    private var lastProgress: [String: UInt64] = [:]
    private var housekeepingTimer: DispatchSourceTimer?
    private var signalSources: [DispatchSourceSignal] = []

    public init(configurationPath: FilePath, modelLoader: @escaping ModelLoader, notifier: ServiceNotifier = ServiceNotifier(),
                syscalls: any Syscalls = SystemCalls(), logger: Logger, candidateEvaluator: (any CandidateEvaluator)? = nil,
                learningClock: @escaping () -> Date = Date.init, learningTimeZone: TimeZone = .current) {
        self.configurationPath = configurationPath
        self.candidateEvaluator = candidateEvaluator
        self.learningClock = learningClock
        self.learningTimeZone = learningTimeZone
        self.modelLoader = modelLoader
        self.notifier = notifier
        self.syscalls = syscalls
        self.logger = logger
    }

    /// Loads the configuration and every line's model, creates the work directories, and
    /// builds the pipelines (not yet watching). Throws `ConfigurationError`, `ModelLoadError`
    /// or an `Errno` for a work directory.
    public func load() throws {
        let configuration = try DaemonConfiguration.load(from: configurationPath)
        let (pipelines, versions) = try makePipelines(configuration)
        let learning = try makeLearning(configuration, keeping: [:])
        self.configuration = configuration
        self.lines = pipelines
        self.servingVersions = versions
        self.learning = learning
        CrashMarker.install(markers: pipelines.map(\.crashMarkerPath.string))
    }

    /// Asks every learning line for a run now (SIGUSR1).
    public func requestRetraining() {
        for (name, line) in learning {
            do {
                try LearningLine.requestRetrain(trainingStore: line.configuration.trainingStore, syscalls: syscalls)
                line.tickAsync()
            } catch {
                metrics.increment("rstpmd_learning_failures_total", labels: ["line": name, "kind": "other"])
                logger.event(.learningFailed, .error, "cannot record the retraining request: \(error)", ["line": "\(name)"])
            }
        }
    }

    /// Starts watching every line and sends READY=1 (the models are loaded by now). Recovery of
    /// work/ runs on each line's queue first, so a large backlog does not delay READY.
    public func start() {
        controlQueue.sync {
            for line in lines {
                line.queue.async { _ = line.recover(now: monotonicNanoseconds()) }
                line.start()
            }
            logger.event(.started, .notice, "rstpmd ready: \(lines.count) line(s)", ["instance": "\(configuration?.instance ?? "")", "version": "\(RSTPMBuild.description)"])
            notifier.ready()
            notifier.status(statusLine())
        }
        startHousekeeping()
    }

    /// `--once`: recover, then take everything complete in the inboxes (waiting out the settle
    /// interval, and the second look at inputs that could not be decoded) until they hold
    /// nothing more. Returns the inputs left behind (in work/ after errors, or in an inbox
    /// without progress for twice the settle interval plus the second look's wait plus 10 s).
    public func runOnce() -> Int {
        var left = 0
        for line in lines {
            line.queue.sync {
                _ = line.recover(now: monotonicNanoseconds())
                let settle = line.configuration.settleIntervalSeconds
                // A file that never settles or cannot be claimed must not keep --once alive.
                let patience = Int64((2 * settle + 10) * 1e9) + line.secondLookNanoseconds
                var lastProgress = monotonicNanoseconds()
                while true {
                    let now = monotonicNanoseconds()
                    let summary = line.pass(now: now)
                    if summary.claimed + summary.decided + summary.quarantined > 0 { lastProgress = now }
                    let waiting = line.scanner.pendingCount + line.inputsAwaitingSecondLook
                    if waiting == 0 || now - lastProgress > patience {
                        left += summary.queueDepth + line.scanner.pendingCount
                        line.prune()
                        break
                    }
                    usleep(useconds_t(min(max(settle / 2, 0.01), 1) * 1e6))
                }
            }
        }
        writeMetrics()
        return left
    }

    /// One status line, as `systemctl status` shows it.
    public func statusLine() -> String {
        // Totals come from the metrics, which outlive the pipelines a reload replaces.
        let decided = Int(metrics.total("rstpmd_inputs_total"))
        let queued = lines.reduce(0) { $0 + $1.queueDepth }
        let learningText = learning.keys.sorted().map { "; \($0): \(learning[$0]!.status)" }.joined()
        let pausedText = lines.compactMap { line in line.intakePauseReason.map { "; \(line.configuration.name): intake paused, \($0)" } }.joined()
        return "\(lines.count) line(s), \(decided) decided, \(queued) queued" + pausedText + learningText
    }

    // MARK: watchdog, status, metrics

    private func startHousekeeping() {
        let intervalMicroseconds = notifier.watchdogIntervalMicroseconds.map { $0 / 2 } ?? 2_000_000
        let timer = DispatchSource.makeTimerSource(queue: controlQueue)
        timer.schedule(deadline: .now(), repeating: .microseconds(Int(min(intervalMicroseconds, 5_000_000))), leeway: .milliseconds(100))
        timer.setEventHandler { [weak self] in _ = self?.housekeeping() }
        timer.resume()
        housekeepingTimer = timer
    }

    /// Pings the watchdog when every line is idle or advanced since the last call, updates
    /// STATUS and writes the metrics file. Returns whether it pinged. Runs on `controlQueue`
    /// (tests may call it directly when they own the service).
    @discardableResult
    public func housekeeping() -> Bool {
        var healthy = true
        for line in lines {
            let (counter, busy) = line.progress
            let name = line.configuration.name
            if busy && lastProgress[name] == counter { healthy = false }
            lastProgress[name] = counter
        }
        if healthy && notifier.watchdogIntervalMicroseconds != nil { notifier.watchdog() }
        checkModelSwaps()
        for line in lines { line.pruneIfDue(now: monotonicNanoseconds()) }
        for line in learning.values { line.tickAsync() }
        notifier.status(statusLine())
        writeMetrics()
        return healthy
    }

    private func writeMetrics() {
        guard let path = configuration?.metricsFile else { return }
        do {
            try metrics.write(to: path, using: FileOperations(syscalls: syscalls))
        } catch {
            logger.event(.metricsFailed, .warning, "cannot write metrics file: \(error)", ["image.path": "\(path)"])
        }
    }

    // MARK: reload and stop

    /// SIGHUP: RELOADING=1, read the configuration and load models while the old lines keep
    /// working; then stop the old lines between batches and start the new ones (queued work is
    /// in work/ and is picked up again). A bad configuration or model keeps the old setup.
    public func reload() {
        controlQueue.sync {
            notifier.reloading(status: "reloading configuration and models")
            let newConfiguration: DaemonConfiguration
            let newLines: [LinePipeline]
            let newVersions: [String: String]
            let newLearning: [String: LearningLine]
            do {
                newConfiguration = try DaemonConfiguration.load(from: configurationPath)
                (newLines, newVersions) = try makePipelines(newConfiguration)
                newLearning = try makeLearning(newConfiguration, keeping: learning)
            } catch {
                logger.event(.reloadFailed, .error, "reload failed, keeping the running configuration: \(error)", ["config": "\(configurationPath)"])
                notifier.ready(status: "reload failed; running the previous configuration (see journal)")
                return
            }
            drain(lines, timeoutSeconds: configuration?.drainTimeoutSeconds ?? 60)
            for (name, old) in learning where newLearning[name] !== old { old.stop() }
            configuration = newConfiguration
            lines = newLines
            CrashMarker.install(markers: lines.map(\.crashMarkerPath.string))
            servingVersions = newVersions
            failedVersions = [:]
            learning = newLearning
            lastProgress = [:]
            for line in lines { line.start() }
            logger.event(.reloaded, .notice, "reloaded: \(lines.count) line(s)", ["config": "\(configurationPath)"])
            notifier.ready(status: statusLine())
        }
    }

    /// SIGTERM: STOPPING=1, stop watching, let running batches finish within the drain budget.
    /// An unfinished input stays in work/ and is recovered at the next start.
    public func stop() {
        controlQueue.sync {
            housekeepingTimer?.cancel()
            housekeepingTimer = nil
            notifier.stopping(status: "draining")
            logger.event(.stopping, .notice, "stopping: draining \(lines.count) line(s)")
            drain(lines, timeoutSeconds: configuration?.drainTimeoutSeconds ?? 60)
            // A stopped trainer's candidate stays; the run resumes at the next start.
            for line in learning.values { line.stop() }
            writeMetrics()
        }
    }

    private func drain(_ pipelines: [LinePipeline], timeoutSeconds: Double) {
        for line in pipelines { line.requestStop() }
        let deadline = DispatchTime.now() + timeoutSeconds
        for line in pipelines where !line.waitUntilIdle(timeout: deadline) {
            logger.event(.stopping, .warning, "line \(line.configuration.name) did not finish its batch in \(timeoutSeconds) s; its input stays in work/")
        }
    }

    /// Installs SIGTERM/SIGINT (stop, exit 0), SIGHUP (reload) and SIGUSR1 (retrain every
    /// learning line now) and never returns.
    public func runUntilSignalled() -> Never {
        for signalNumber in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { [self] in
                if signalNumber == SIGHUP {
                    DispatchQueue.global().async { self.reload() }
                } else if signalNumber == SIGUSR1 {
                    controlQueue.async { self.requestRetraining() }
                } else {
                    DispatchQueue.global().async {
                        self.stop()
                        exit(0)
                    }
                }
            }
            source.resume()
            signalSources.append(source)
        }
        dispatchMain()
    }
}
