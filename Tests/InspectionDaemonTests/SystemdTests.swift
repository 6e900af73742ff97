import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import Systemd
import TestSupport
import XCTest

/// A bound AF_UNIX datagram socket standing in for systemd's notification socket. Like systemd
/// it reads as datagrams arrive: the kernel queues only a few (net.unix.max_dgram_qlen, 10
/// here), and a full queue would block the daemon's sd_notify.
final class NotifySocket: @unchecked Sendable {
    let path: String
    let descriptor: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var reader: DispatchSourceRead?

    init() throws {
        path = "/tmp/rstpmd-notify-\(UUID().uuidString.prefix(8)).sock"
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw Errno(rawValue: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw Errno(rawValue: errno) }
        let reader = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: DispatchQueue(label: "notify-socket"))
        reader.setEventHandler { [weak self] in self?.readPending() }
        reader.resume()
        self.reader = reader
    }

    private func readPending() {
        lock.lock(); defer { lock.unlock() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count <= 0 { break }
            received.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }

    /// Every datagram received since the last call, oldest first.
    func receiveAll() -> [String] {
        readPending()
        lock.lock(); defer { lock.unlock() }
        defer { received = [] }
        return received
    }

    deinit {
        let descriptor = descriptor, path = path
        reader?.setCancelHandler {
            close(descriptor)
            unlink(path)
        }
        reader?.cancel()
    }
}

final class SystemdTests: XCTestCase {
    func writeConfiguration(_ folders: LineFolders) throws -> FilePath {
        let yaml = """
        instance: test-host
        metrics_file: \(folders.path("metrics/rstpmd.prom"))
        drain_timeout_seconds: 5
        lines:
          - name: line-1
            inbox: \(folders.path("inbox"))
            work: \(folders.path("work"))
            outbox: \(folders.path("outbox"))
            archive: \(folders.path("archive"))
            quarantine: \(folders.path("quarantine"))
            model: \(folders.path("model"))
            poll_interval_seconds: 0.05
            settle_interval_seconds: 0
        """
        try folders.write(Array(yaml.utf8), to: "rstpmd.yaml")
        return folders.path("rstpmd.yaml")
    }

    func testNotificationsArriveInOrderOnTheNotifySocket() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        setenv("WATCHDOG_USEC", "10000000", 1)
        setenv("WATCHDOG_PID", "\(getpid())", 1)
        defer { unsetenv("NOTIFY_SOCKET"); unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID") }

        let (logger, _) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: try writeConfiguration(folders), modelLoader: { _ in PGMInspector() }, logger: logger)
        try service.load()
        service.start()
        try folders.write(PGMInspector.image(), to: "inbox/one.pgm")
        let deadline = Date().addingTimeInterval(10)
        while !folders.exists("archive/one.pgm") && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(folders.exists("archive/one.pgm"), "the running service processed a file")
        XCTAssertTrue(service.lines[0].waitUntilIdle(timeout: .now() + 10))
        XCTAssertTrue(service.controlQueue.sync { service.housekeeping() })
        service.reload()
        service.stop()

        let messages = socket.receiveAll()
        func firstIndex(_ field: String, after start: Int = -1) -> Int? {
            messages.indices.first { $0 > start && messages[$0].split(separator: "\n").contains { $0.hasPrefix(field) } }
        }
        let ready = try XCTUnwrap(firstIndex("READY=1"), "\(messages)")
        let status = try XCTUnwrap(firstIndex("STATUS=", after: ready), "\(messages)")
        let watchdog = try XCTUnwrap(firstIndex("WATCHDOG=1", after: status), "\(messages)")
        let reloading = try XCTUnwrap(firstIndex("RELOADING=1", after: watchdog), "\(messages)")
        let readyAgain = try XCTUnwrap(firstIndex("READY=1", after: reloading), "\(messages)")
        let stopping = try XCTUnwrap(firstIndex("STOPPING=1", after: readyAgain), "\(messages)")
        XCTAssertEqual(ready, 0, "READY comes first: \(messages)")
        XCTAssertEqual(stopping, messages.count - 1, "STOPPING comes last: \(messages)")
        XCTAssertNotNil(messages[reloading].range(of: #"MONOTONIC_USEC=\d+"#, options: .regularExpression), messages[reloading])
        XCTAssertTrue(messages.contains { $0.contains("STATUS=1 line(s), 1 decided, 0 queued") }, "\(messages)")
        // The metrics file was written atomically and holds the decision.
        let metrics = try String(contentsOfFile: folders.path("metrics/rstpmd.prom").string, encoding: .utf8)
        XCTAssertTrue(metrics.contains(#"rstpmd_inputs_total{line="line-1",verdict="ok"} 1"#), metrics)
        XCTAssertFalse(folders.exists("metrics/rstpmd.prom.tmp"))
    }

    func testWatchdogIsWithheldWhileAnInspectionHangs() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let inspector = PGMInspector()
        inspector.beforeBatch = { entered.signal(); release.wait() }
        let (logger, _) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: try writeConfiguration(folders), modelLoader: { _ in inspector }, logger: logger)
        try service.load()
        service.start()
        XCTAssertTrue(service.controlQueue.sync { service.housekeeping() }, "idle: healthy")
        try folders.write(PGMInspector.image(), to: "inbox/hangs.pgm")
        XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        _ = service.controlQueue.sync { service.housekeeping() }
        XCTAssertFalse(service.controlQueue.sync { service.housekeeping() }, "no progress while hung: no WATCHDOG=1")
        release.signal()
        let deadline = Date().addingTimeInterval(10)
        while !folders.exists("archive/hangs.pgm") && Date() < deadline { usleep(20_000) }
        inspector.beforeBatch = nil
        XCTAssertTrue(service.lines[0].waitUntilIdle(timeout: .now() + 10))
        XCTAssertTrue(service.controlQueue.sync { service.housekeeping() }, "advanced: healthy again")
        service.stop()
    }

    func testReloadWithABadConfigurationKeepsRunning() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let path = try writeConfiguration(folders)
        let (logger, store) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: path, modelLoader: { _ in PGMInspector() }, logger: logger)
        try service.load()
        service.start()
        try folders.write(Array("lines: 3\n".utf8), to: "rstpmd.yaml")
        service.reload()
        XCTAssertEqual(service.lines.count, 1, "the running configuration stays")
        try folders.write(PGMInspector.image(), to: "inbox/after.pgm")
        let deadline = Date().addingTimeInterval(10)
        while !folders.exists("archive/after.pgm") && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(folders.exists("archive/after.pgm"))
        service.stop()
        store.lock.lock(); defer { store.lock.unlock() }
        XCTAssertTrue(store.entries.contains { $0.2["MESSAGE_ID"] == JournalEvent.reloadFailed.messageID })
    }

    func testJournalIsUsedOnlyWhenStderrIsTheJournalStream() throws {
        unsetenv("JOURNAL_STREAM")
        XCTAssertEqual(JournalLogHandler.detectDestination(), .standardError)
        var status = stat()
        XCTAssertEqual(fstat(STDERR_FILENO, &status), 0)
        setenv("JOURNAL_STREAM", "\(status.st_dev):\(status.st_ino)", 1)
        defer { unsetenv("JOURNAL_STREAM") }
        XCTAssertEqual(JournalLogHandler.detectDestination(), .journal)
        setenv("JOURNAL_STREAM", "\(status.st_dev):\(status.st_ino + 1)", 1)
        XCTAssertEqual(JournalLogHandler.detectDestination(), .standardError, "stderr redirected elsewhere")
    }

    func testFieldNamesAndPriorities() {
        XCTAssertEqual(JournalLogHandler.fieldName(forMetadataKey: "image.path"), "IMAGE_PATH")
        XCTAssertEqual(JournalLogHandler.fieldName(forMetadataKey: "MESSAGE_ID"), "MESSAGE_ID")
        XCTAssertEqual(JournalLogHandler.fieldName(forMetadataKey: "_PID"), "PID")
        XCTAssertEqual(JournalLogHandler.fieldName(forMetadataKey: "9lives"), "F_9LIVES")
        XCTAssertEqual(JournalLogHandler.priority(of: .error), 3)
        XCTAssertEqual(JournalLogHandler.priority(of: .info), 6)
        XCTAssertEqual(Set(JournalEvent.allCases.map(\.rawValue)).count, JournalEvent.allCases.count, "message ids are distinct")
        for event in JournalEvent.allCases {
            XCTAssertNotNil(event.rawValue.range(of: "^[0-9a-f]{32}$", options: .regularExpression), "\(event) is a 128-bit id")
        }
    }

    /// Starts systemd-journald by hand when none listens (no systemd PID 1 needed), sends events
    /// through the handler and reads them back with journalctl. Stops the journald it started.
    func testJournaldReceivesStructuredFields() throws {
        guard getuid() == 0 else { throw XCTSkip("starting systemd-journald by hand needs root") }
        let journald = "/lib/systemd/systemd-journald"
        guard FileManager.default.isExecutableFile(atPath: journald), FileManager.default.isExecutableFile(atPath: "/usr/bin/journalctl") else {
            throw XCTSkip("systemd-journald or journalctl is not installed")
        }
        var started: Process?
        if !Self.journalListens() {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: journald)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            started = process
            let deadline = Date().addingTimeInterval(10)
            while !Self.journalListens() && Date() < deadline { usleep(50_000) }
        }
        defer {
            if let started {
                started.terminate()
                started.waitUntilExit()
            }
        }
        guard Self.journalListens() else { throw XCTSkip("systemd-journald did not start listening on /run/systemd/journal/socket") }

        let run = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        var logger = Logger(label: "rstpmd.test") { JournalLogHandler(label: $0, identifier: "rstpmd-test", destination: .journal) }
        logger[metadataKey: "line"] = "line-7"
        logger.notice("verdict for part 1.png\nsecond line", metadata: [
            "MESSAGE_ID": JournalEvent.verdict.messageID, "image.path": "/srv/in/part 1.png", "score": "0.75",
            "verdict": "defect", "model": "rstpm@2", "test.run": "\(run)",
        ])
        var entry: [String: Any]?
        let deadline = Date().addingTimeInterval(10)
        while entry == nil && Date() < deadline {
            entry = try Self.journalEntries(matching: "TEST_RUN=\(run)").first
            if entry == nil { usleep(100_000) }
        }
        let fields = try XCTUnwrap(entry, "the entry did not reach the journal")
        XCTAssertEqual(fields["MESSAGE"] as? String, "verdict for part 1.png\nsecond line")
        XCTAssertEqual(fields["MESSAGE_ID"] as? String, JournalEvent.verdict.rawValue)
        XCTAssertEqual(fields["PRIORITY"] as? String, "5")
        XCTAssertEqual(fields["SYSLOG_IDENTIFIER"] as? String, "rstpmd-test")
        XCTAssertEqual(fields["IMAGE_PATH"] as? String, "/srv/in/part 1.png")
        XCTAssertEqual(fields["LINE"] as? String, "line-7")
        XCTAssertEqual(fields["SCORE"] as? String, "0.75")
        XCTAssertEqual(fields["VERDICT"] as? String, "defect")
        XCTAssertEqual(fields["MODEL"] as? String, "rstpm@2")
        XCTAssertNotNil(fields["CODE_LINE"] as? String)
    }

    static func journalListens() -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in "/run/systemd/journal/socket".utf8.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    static func journalEntries(matching match: String) throws -> [[String: Any]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/journalctl")
        process.arguments = ["-o", "json", "--no-pager", "--all", match]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func testUnitFilesPassVerifyAndSecurity() throws {
        let root = TestPaths.repositoryRoot
        let binary = root.appendingPathComponent(".build/release/rstpmd").path
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else { throw XCTSkip("systemd-analyze is not installed") }
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("rstpmd is not built at \(binary)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("scripts/check-units.sh").path, binary]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("check-units: OK"), output)
    }
}
