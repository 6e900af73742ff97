import Foundation

/// The project's built executables, run from tests.
public enum Tools {
    /// The built executable `name`: beside the running test bundle (this build's products),
    /// else in `.build/release`; nil when neither exists.
    public static func builtExecutable(_ name: String) -> URL? {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
        let release = TestPaths.repositoryRoot.appendingPathComponent(".build/release/\(name)")
        return [besideTests, release].first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// Runs an executable to its end; returns its exit status and its output and errors together.
    public static func run(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        let finished = try runReportingReason(executable, arguments, environment: environment)
        return (finished.status, finished.output)
    }

    /// `run`, also telling an exit from a death by signal (`status` is then the signal).
    public static func runReportingReason(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws
        -> (reason: Process.TerminationReason, status: Int32, output: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus, output)
    }
}
