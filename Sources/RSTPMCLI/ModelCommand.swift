import ArgumentParser
import ContinuousLearning
import Foundation
import InspectionDaemon
import OperatorErrors
import RSTPM
import SystemPackage

/// The line named on the command line, found in rstpmd's configuration. What is wrong with the
/// files is a runtime error (one line, exit status 1), not a usage error.
struct LineSelection: ParsableArguments {
    @Option(name: .long, help: "The rstpmd configuration that names the line's model store and training store.")
    var config: String = DaemonConfiguration.defaultPath.string

    @Argument(help: "The inspection line (its `name` in the configuration).")
    var line: String

    func resolve() throws -> LineConfiguration {
        let path = FilePath(config)
        let text: String
        do {
            text = try String(contentsOfFile: config, encoding: .utf8)
        } catch {
            throw OperatorError(.unreadable, path: config, problem: "cannot read the configuration (\(error.localizedDescription))",
                             hint: "pass rstpmd's configuration with --config FILE")
        }
        // Only the paths are needed: the daemon checks the disk when it loads the file.
        let configuration = try DaemonConfiguration.parse(yaml: text, file: path, checkFileSystem: false)
        guard let found = configuration.lines.first(where: { $0.name == line }) else {
            throw OperatorError(.notFound, path: config, problem: "no line \"\(line)\"",
                             hint: "its lines are \(configuration.lines.map(\.name).joined(separator: ", "))")
        }
        return found
    }

    func modelStore() throws -> ModelStore {
        let selected = try resolve()
        guard ModelStore.isStore(selected.modelBundle) else {
            throw OperatorError(.invalidInput, path: selected.modelBundle.string, problem: "line \(line)'s model is a single bundle, not a model store",
                             hint: "versions exist only where rstpmd learns: a model store has versions and a `current` link")
        }
        return ModelStore(root: selected.modelBundle)
    }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "List a line's model versions or roll back to one.",
        subcommands: [List.self, Rollback.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a line's model versions with the gate's figures; * marks the serving one.")

        @OptionGroup var selection: LineSelection

        func run() throws {
            let store = try selection.modelStore()
            let current = try store.current()?.name
            print("   version  gate      false-reject  AUROC   decided               reason")
            for version in try store.versions() {
                let marker = version.name == current ? "*" : " "
                guard let gate = version.gate else {
                    print("\(marker)  \(version.name)    -")
                    continue
                }
                let frr = String(format: "%.4f", gate.candidate.falseRejectRate)
                let auroc = gate.candidate.auroc.map { String(format: "%.4f", $0) } ?? "  -   "
                print("\(marker)  \(version.name)    \(gate.decision.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(frr)        \(auroc)  \(gate.decidedAt)  \(gate.reason)")
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point the line's model at VERSION, or at the newest accepted version older than the current one.",
            discussion: "rstpmd notices the switch within seconds and serves the version from its next batch, without a restart.")

        @OptionGroup var selection: LineSelection

        @Argument(help: "The version to serve, e.g. v0003.")
        var version: String?

        func run() throws {
            let store = try selection.modelStore()
            let previous = try store.current()?.name ?? "none"
            let target = try store.rollback(to: version)
            print("\(selection.line): \(previous) -> \(target.name)")
        }
    }
}
