import ArgumentParser

struct RSTPMDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rstpmd", abstract: "Watch-folder inspection daemon.")
}
RSTPMDaemonCommand.main()
