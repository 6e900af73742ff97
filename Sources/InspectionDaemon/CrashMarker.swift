import Foundation

/// Tells a crash from a kill. A fatal signal (SIGSEGV, SIGABRT, SIGFPE, SIGILL, SIGBUS, SIGTRAP:
/// what a decoder bug, a failed allocation or a Swift trap raises) leaves an empty file at every
/// line's `LinePipeline.crashMarkerPath` before the process dies; SIGKILL,
/// SIGTERM or a power cut leave none. At the next start a line that finds the marker knows that
/// the inputs it had in flight were there when the daemon crashed (`LinePipeline.recover`), and
/// an input present at two crashes is quarantined instead of crashing the daemon a third time.
public enum CrashMarker {
    static let signals: [Int32] = [SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP]

    /// Installs the handlers (once) and makes `markers` the files created; called again with the
    /// new lines' markers after a reload.
    public static func install(markers: [String]) {
        // A null-terminated C array the handler walks without allocating or locking. The previous
        // array is leaked on purpose: a handler on another thread may still be reading it.
        let paths = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: markers.count + 1)
        for (index, marker) in markers.enumerated() { paths[index] = strdup(marker) }
        paths[markers.count] = nil
        installLock.lock(); defer { installLock.unlock() }
        crashMarkerPaths = paths
        protectCurrentThread()
        guard !installed else { return }
        installed = true
        for signalNumber in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_sigaction = crashSignalHandler
            action.sa_flags = SA_SIGINFO | SA_ONSTACK
            sigemptyset(&action.sa_mask)
            sigaction(signalNumber, &action, previousCrashActions + Int(signalNumber))
        }
    }

    /// Gives the calling thread an alternate signal stack, so that a stack overflow on it still
    /// runs the handler. One system call once the thread has one.
    public static func protectCurrentThread() {
        var current = stack_t()
        guard sigaltstack(nil, &current) == 0, current.ss_flags & Int32(SS_DISABLE) != 0 else { return }
        let size = 64 * 1024
        var stack = stack_t()
        stack.ss_sp = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)  // lives as long as the thread
        stack.ss_size = size
        stack.ss_flags = 0
        sigaltstack(&stack, nil)
    }

    private static let installLock = NSLock()
    nonisolated(unsafe) private static var installed = false
}

/// Read by the signal handler: a pointer-sized store, whole on every platform we run on.
nonisolated(unsafe) private var crashMarkerPaths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
/// What each signal did before; the handler hands the signal on to it.
nonisolated(unsafe) private let previousCrashActions: UnsafeMutablePointer<sigaction> = {
    let actions = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
    actions.initialize(repeating: sigaction(), count: 65)
    return actions
}()

private func crashSignalHandler(_ signalNumber: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    // Only async-signal-safe calls: open, close, sigaction, raise.
    if let paths = crashMarkerPaths {
        var index = 0
        while let path = paths[index] {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            if descriptor >= 0 { close(descriptor) }
            index += 1
        }
    }
    // Hand the signal on to the previous action (the Swift backtracer, or the default): a fault
    // re-executes the faulting instruction and meets it; a sent signal (abort) is raised again.
    sigaction(signalNumber, previousCrashActions + Int(signalNumber), nil)
    if (info?.pointee.si_code ?? 0) <= 0 { raise(signalNumber) }
}
