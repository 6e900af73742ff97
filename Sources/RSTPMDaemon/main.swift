// rstpmd: the watch-folder inspection daemon (see the InspectionDaemon module).
import ArgumentParser
import Backbones
import BuildInfo
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import Systemd

struct RSTPMDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rstpmd",
        abstract: "Watch-folder inspection daemon: inspects every image landing in a line's inbox and writes a verdict and a heatmap to its outbox.",
        discussion: "Runs under systemd (Type=notify): SIGHUP reloads configuration and models, SIGTERM drains and stops.",
        version: RSTPMBuild.description)

    @Option(name: .long, help: "Configuration file.")
    var config: String = DaemonConfiguration.defaultPath.string

    @Flag(name: .long, help: "Check the configuration file (given here or by --config) and explain every problem, then exit.")
    var checkConfig = false

    @Argument(help: "With --check-config: the file to check (overrides --config).")
    var file: String?

    @Flag(name: .long, help: "Process what is in the inboxes (and work directories) now, then exit.")
    var once = false

    @Option(name: .long, help: "Weights directory with the teachers' checkpoints (default: $RSTPM_WEIGHTS, else $XDG_DATA_HOME/rstpm/weights, else ~/.local/share/rstpm/weights).")
    var weightsDir: String?

    func validate() throws {
        if file != nil && !checkConfig { throw ValidationError("a positional FILE is only taken with --check-config; use --config FILE") }
        if checkConfig && once { throw ValidationError("--check-config and --once exclude each other") }
    }

    func run() throws {
        let path = FilePath(file ?? config)
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["RSTPMD_DEBUG"] == nil ? .info : .debug
            return handler
        }
        let logger = Logger(label: "rstpmd")
        let weights = WeightsDirectory.resolve(override: weightsDir)
        let crashOn = ProcessInfo.processInfo.environment["RSTPMD_TEST_CRASH_ON"]
        let service = DaemonService(configurationPath: path, modelLoader: { line in
            let inspector = try RSTPMInspector(bundle: line.modelBundle, weightsDirectory: weights, heatmapResolution: line.heatmapResolution)
            let choice = inspector.precisionChoice
            logger.event(.precisionChosen, .notice, "line \(line.name): model \(inspector.model.modelID) runs \(choice.precision.rawValue): \(choice.reason)",
                         ["line": "\(line.name)", "precision": "\(choice.precision.rawValue)"])
            // The crash-containment test's poison pill; never set in service units.
            if let crashOn { return CrashingInspector(inspector, crashingOn: crashOn) }
            return inspector
        }, logger: logger, candidateEvaluator: RSTPMCandidateEvaluator(weightsDirectory: weights))

        if checkConfig {
            // The ExecStartPre= gate: refuse whatever the start would refuse, models included.
            do {
                let configuration = try DaemonConfiguration.load(from: path)
                let failures = service.checkModels(configuration)
                guard failures.isEmpty else {
                    let text = "\(path): \(failures.count) line(s) would not start (weights directory \(weights.path)):\n"
                        + failures.map { "  \($0)" }.joined(separator: "\n") + "\n"
                    FileHandle.standardError.write(Data(text.utf8))
                    throw ExitCode(1)
                }
                print("\(path): OK, \(configuration.lines.count) line(s): \(configuration.lines.map(\.name).joined(separator: ", ")); models and teachers load")
            } catch let error as ConfigurationError {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(1)
            }
            return
        }
        do {
            try service.load()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        if once {
            let left = service.runOnce()
            if left > 0 {
                logger.error("\(left) input(s) left in work directories after errors; they are retried at the next run")
                throw ExitCode(1)
            }
            return
        }
        service.start()
        service.runUntilSignalled()
    }
}

RSTPMDaemonCommand.main()
