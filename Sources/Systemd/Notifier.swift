// Systemd: the two ways rstpmd talks to its service manager.
//
// `ServiceNotifier` sends the sd_notify(3) state messages (READY, STATUS, WATCHDOG, RELOADING,
// STOPPING) through libsystemd; `JournalLogHandler` (JournalLogHandler.swift) is a swift-log
// backend that writes structured entries with sd_journal_sendv(3). Neither knows anything about
// inspection: the daemon decides what to say and when.
import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// Sends service state to systemd over `$NOTIFY_SOCKET`; every call is a no-op when the
/// variable is unset (not started by systemd, or `--once` from a shell).
public struct ServiceNotifier: Sendable {
    public init() {}

    /// `READY=1`, optionally with a status line: start-up (or a reload) is finished.
    public func ready(status: String? = nil) {
        send(["READY=1"] + statusField(status))
    }

    /// `STATUS=...`: the one line `systemctl status` shows.
    public func status(_ text: String) {
        send(statusField(text))
    }

    /// `WATCHDOG=1`: the pipeline made progress (or is idle) since the last ping.
    public func watchdog() {
        send(["WATCHDOG=1"])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, which systemd 253+ requires for Type=notify-reload
    /// and accepts for Type=notify.
    public func reloading(status: String? = nil) {
        send(["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())"] + statusField(status))
    }

    /// `STOPPING=1`: a graceful drain has begun.
    public func stopping(status: String? = nil) {
        send(["STOPPING=1"] + statusField(status))
    }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), or nil when it is off.
    /// sd_watchdog_enabled checks `WATCHDOG_PID` against this process, so a child never pings
    /// for its parent.
    public var watchdogIntervalMicroseconds: UInt64? {
        var usec: UInt64 = 0
        let enabled = sd_watchdog_enabled(0, &usec)
        return enabled > 0 && usec > 0 ? usec : nil
    }

    /// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC against.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    private func statusField(_ status: String?) -> [String] {
        // A newline would end the field early and inject another assignment.
        guard let status else { return [] }
        return ["STATUS=" + status.replacingNewlines()]
    }

    private func send(_ fields: [String]) {
        guard !fields.isEmpty else { return }
        _ = sd_notify(0, fields.joined(separator: "\n"))
    }
}

extension String {
    func replacingNewlines() -> String {
        String(map { $0.isNewline ? " " : $0 })
    }
}
