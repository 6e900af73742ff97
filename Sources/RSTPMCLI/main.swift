import ArgumentParser

struct RSTPMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rstpm", abstract: "Train, run, evaluate and benchmark RSTPM anomaly detection models.")
}
RSTPMCommand.main()
