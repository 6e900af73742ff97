import ArgumentParser
import BuildInfo

/// The `rstpm` root command: each subcommand lives in its own file and is listed here.
struct RSTPMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rstpm",
        abstract: "Train, run, evaluate and benchmark RSTPM anomaly detection models.",
        version: RSTPMBuild.description,
        subcommands: [WeightsCommand.self, ClassifyCommand.self, BenchCommand.self, TrainCommand.self, InferCommand.self, EvalCommand.self, DemoCommand.self, DemoDataCommand.self, ModelCommand.self, RetrainCommand.self, SetupLineCommand.self, ReviewCommand.self]
    )
}

RSTPMCommand.mainSuggestingCommands()
