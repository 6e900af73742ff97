import Foundation
import OperatorErrors
#if canImport(Glibc)
import Glibc
#endif

/// How a trainer child ended.
public enum TrainerTermination: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signalled(signal: Int32)

    public var succeeded: Bool { self == .exited(code: 0) }

    public var description: String {
        switch self {
        case .exited(let code): return "exited with status \(code)"
        case .signalled(let signal): return "killed by signal \(signal)"
        }
    }
}

/// A training run in a child process that inspection does not notice: SCHED_IDLE (it runs
/// only when a core is otherwise idle), nice 19 and the idle I/O class from its first
/// instruction on, one thread
/// (`RSTPM_THREADS`, `OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS`), and its own process group so
/// that stopping it stops whatever it started. stdout and stderr come back line by line.
public final class TrainerProcess: @unchecked Sendable {
    public let processID: pid_t
    private let lock = NSLock()
    private var termination: TrainerTermination?
    private let finished = DispatchSemaphore(value: 0)

    /// Starts `arguments[0]` (an absolute path) with `arguments[1...]`. `onLine` and `onExit`
    /// are called from a private thread; `onExit` once, after the last line.
    public init(arguments: [String], environment: [String: String], onLine: @escaping @Sendable (String) -> Void,
                onExit: @escaping @Sendable (TrainerTermination) -> Void) throws {
        precondition(!arguments.isEmpty, "a trainer command needs a program")
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw OperatorError.trainerLaunch(program: arguments[0], errno: errno) }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        // Not inherited by other children (the dup2 in the child clears the flag on 1 and 2).
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)

        let variables = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        // glibc's posix_spawnattr_setschedpolicy refuses SCHED_IDLE, and lowering the child
        // after the spawn would race with the threads it starts. Instead a throwaway thread
        // lowers itself (policy, nice and I/O priority are per thread on Linux and inherited
        // by a child) and spawns; the daemon's own threads keep their priority.
        let spawned = SpawnResult()
        let spawner = Thread {
            var parameters = sched_param()
            parameters.sched_priority = 0
            _ = sched_setscheduler(0, Self.schedIdle, &parameters)
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            _ = Self.ioprioSet?(Self.ioprioSetNumber, 1, 0, 3 << 13)
            (spawned.result, spawned.processID) = Self.spawn(arguments: arguments, variables: variables, output: writeEnd)
            spawned.done.signal()
        }
        spawner.start()
        spawned.done.wait()
        Glibc.close(writeEnd)
        guard spawned.result == 0 else {
            Glibc.close(readEnd)
            throw OperatorError.trainerLaunch(program: arguments[0], errno: spawned.result)
        }
        let child = spawned.processID
        processID = child

        let linesDone = DispatchSemaphore(value: 0)
        let reader = Thread {
            Self.readLines(from: readEnd, onLine: onLine)
            Glibc.close(readEnd)
            linesDone.signal()
        }
        reader.name = "rstpmd.trainer.\(child).output"
        reader.start()
        let thread = Thread { [self, child] in
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            // Whatever the trainer started dies with it, so nothing keeps the pipe open.
            _ = kill(-child, SIGKILL)
            linesDone.wait()
            let termination: TrainerTermination = (status & 0x7f) == 0 ? .exited(code: (status >> 8) & 0xff) : .signalled(signal: status & 0x7f)
            lock.lock(); self.termination = termination; lock.unlock()
            onExit(termination)
            finished.signal()
        }
        thread.name = "rstpmd.trainer.\(child)"
        thread.start()
    }

    /// posix_spawn with stdin from /dev/null, stdout and stderr to `output`, default signal
    /// dispositions, an empty mask and a process group of its own. Returns (error, pid).
    private static func spawn(arguments: [String], variables: [String: String], output: Int32) -> (Int32, pid_t) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The daemon ignores SIGTERM/SIGHUP/SIGINT/SIGUSR1 to handle them itself; ignored
        // signals survive exec, so the child gets the defaults back.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signalNumber in [SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signalNumber) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, arguments[0], &actions, &attributes, argv, envp)
        return (result, child)
    }

    /// Not exported by Glibc's Swift overlay: linux/sched.h and the syscall tables.
    static let schedIdle: Int32 = 5
    #if arch(x86_64)
    static let ioprioSetNumber = 251
    #elseif arch(arm64)
    static let ioprioSetNumber = 30
    #endif

    /// syscall(2) is variadic and so unavailable in Swift; glibc has no ioprio_set wrapper. With
    /// integer arguments only, the variadic and the plain calling conventions agree (x86_64 and
    /// arm64 Linux), so it is called through a plain function pointer.
    static let ioprioSet: (@convention(c) (Int, Int, Int, Int) -> Int)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syscall") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int, Int, Int, Int) -> Int).self)
    }()

    /// Sends `signal` to the trainer's process group.
    public func send(_ signal: Int32) {
        _ = kill(-processID, signal)
    }

    /// Waits for the child to end and its exit handler to run; nil on timeout.
    public func wait(timeout: DispatchTime = .distantFuture) -> TrainerTermination? {
        guard finished.wait(timeout: timeout) == .success else { return nil }
        finished.signal()
        lock.lock(); defer { lock.unlock() }
        return termination
    }

    private static func readLines(from descriptor: Int32, onLine: (String) -> Void) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: 0x0A) {
                onLine(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
            // A progress bar redrawn with \r never ends its line; keep the memory bounded.
            if pending.count > 64 * 1024 { pending.removeFirst(pending.count - 4096) }
        }
        if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
    }

    /// Whether a process with `processID` exists and started at `startTicks` (field 22 of
    /// /proc/PID/stat), so a recycled pid is never mistaken for an old trainer.
    public static func isRunning(processID: pid_t, startTicks: UInt64) -> Bool {
        guard let ticks = startTime(of: processID) else { return false }
        return ticks == startTicks
    }

    /// Field 22 of /proc/PID/stat (start time in clock ticks after boot); nil when gone.
    public static func startTime(of processID: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(processID)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z" else { return nil }
        return UInt64(fields[19])
    }
}

/// Handed from the spawning thread, which the caller waits for.
private final class SpawnResult: @unchecked Sendable {
    var result: Int32 = 0
    var processID: pid_t = 0
    let done = DispatchSemaphore(value: 0)
}

extension OperatorError {
    /// The trainer program could not be started.
    static func trainerLaunch(program: String, errno: Int32) -> OperatorError {
        OperatorError(.unavailable, path: program, problem: "cannot start the trainer: \(String(cString: strerror(errno)))",
                      hint: "check learning.trainer in the configuration: an absolute path to an executable")
    }
}
