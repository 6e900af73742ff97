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

/// How a bounded run ended.
public struct BoundedRun {
    public var reason: Process.TerminationReason
    /// The exit status, or the signal.
    public var status: Int32
    public var output: String
    /// Killed after the time limit: it hung.
    public var timedOut: Bool
    public var seconds: Double

    /// Ended by itself with an exit status (not a signal, not the time limit).
    public var exited: Bool { reason == .exit && !timedOut }
}

extension Tools {
    /// Runs `executable` under a virtual memory limit (`ulimit -v`, so that a runaway allocation
    /// ends the process instead of the machine) and kills it after `timeoutSeconds`.
    public static func runBounded(_ executable: URL, _ arguments: [String], environment: [String: String], currentDirectory: URL,
                                  timeoutSeconds: Double, memoryLimitKiB: Int = 8 << 20) throws -> BoundedRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -v \(memoryLimitKiB) && exec \"$0\" \"$@\"", executable.path] + arguments
        process.environment = environment
        process.currentDirectoryURL = currentDirectory
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let started = Date()
        try process.run()
        // Read while it runs: a full pipe would block it.
        let collected = Collected()
        let readerDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            collected.data = pipe.fileHandleForReading.readDataToEndOfFile()
            readerDone.signal()
        }
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            process.waitUntilExit()
            finished.signal()
        }
        var timedOut = false
        if finished.wait(timeout: .now() + timeoutSeconds) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
        }
        readerDone.wait()
        return BoundedRun(reason: process.terminationReason, status: process.terminationStatus, output: String(decoding: collected.data, as: UTF8.self),
                          timedOut: timedOut, seconds: Date().timeIntervalSince(started))
    }
}

/// A process's output, filled by its reader before the reader signals.
private final class Collected: @unchecked Sendable {
    var data = Data()
}
