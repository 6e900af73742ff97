import Foundation
import Imaging
import SystemPackage
import TestSupport
import XCTest

/// `rstpmd` killed with SIGKILL at random moments while a stream of images arrives: after every
/// kill each input is archived with a complete verdict or still pending, no output is torn, and
/// a last run finishes everything without losing or duplicating an input.
/// RSTPM_CRASH_KILLS (default 50) and RSTPM_CRASH_SEED change the run; bench/daemon.sh runs more.
final class CrashTests: XCTestCase {
    func testSIGKILLAtRandomMomentsLosesAndTearsNothing() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let environment = ProcessInfo.processInfo.environment
        let kills = Int(environment["RSTPM_CRASH_KILLS"] ?? "") ?? 50
        let seed = UInt64(environment["RSTPM_CRASH_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        var random = SplitMix64(state: seed)
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, settleSeconds: 0, batchSize: 2)

        // Small images keep every round short: 96x96 crops of the bottle test set.
        let sources = try ["good/000", "good/001", "broken_large/000", "contamination/001", "broken_small/002"].map { name -> Data in
            let image = try ImageDecoder.decode(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/\(name).png"))
            return try PNGEncoder.encode(Resize.bilinear(image, width: 96, height: 96))
        }
        var dropped: [String: Data] = [:]
        var killedBeforeReady = 0
        var killedMidWork = 0
        for round in 0..<kills {
            func dropRound() throws {
                for index in 0..<3 {
                    let name = "r\(round)-\(index).png"
                    let bytes = sources[Int(random.next() % UInt64(sources.count))]
                    try BinaryHarness.drop(bytes, as: name, into: folders)
                    dropped[name] = bytes
                }
            }
            let socket = try NotifySocket()
            if random.next() % 8 == 0 {
                // Now and then during start-up (model loading, recovery of work/).
                try dropRound()
                let daemon = try DaemonProcess(configuration: configuration, folders: folders, environment: ["NOTIFY_SOCKET": socket.path])
                usleep(useconds_t(random.next() % 300_000))
                killedBeforeReady += 1
                daemon.killHard()
            } else {
                // Images arrive while the daemon runs: the tiny model inspects a batch in a few
                // milliseconds, so images dropped before start-up would be done before a kill.
                let daemon = try DaemonProcess(configuration: configuration, folders: folders, environment: ["NOTIFY_SOCKET": socket.path])
                let ready = BinaryHarness.wait(seconds: 60) { socket.receiveAll().contains { $0.contains("READY=1") } }
                XCTAssertTrue(ready, "round \(round), seed \(seed): no READY=1\n\(daemon.output)")
                try dropRound()
                if random.next() % 2 == 0 {
                    // Aim at the inspection itself: wait for the claim, then kill somewhere in it.
                    let deadline = Date().addingTimeInterval(10)
                    while folders.list("work/test-host").isEmpty && Date() < deadline { usleep(500) }
                    usleep(useconds_t(random.next() % 20_000))
                } else {
                    usleep(useconds_t(random.next() % 200_000))
                }
                daemon.killHard()
            }
            if !folders.list("work/test-host").isEmpty { killedMidWork += 1 }
            try checkInvariants(folders, dropped: dropped, context: "after kill \(round + 1), seed \(seed)")
        }

        let (status, output) = try Tools.run(BinaryHarness.daemonBinary, [
            "--config", configuration.string, "--once", "--weights-dir", TestPaths.weightsDirectory.path,
        ])
        XCTAssertEqual(status, 0, output)
        try checkInvariants(folders, dropped: dropped, context: "after the last run, seed \(seed)")
        XCTAssertEqual(folders.list("inbox"), [])
        XCTAssertEqual(folders.list("work/test-host"), [])
        XCTAssertEqual(folders.list("quarantine"), [])
        // Every input archived exactly once, byte for byte.
        XCTAssertEqual(Set(folders.list("archive")), Set(dropped.keys))
        for (name, bytes) in dropped {
            XCTAssertEqual(try? Data(contentsOf: folders.root.appendingPathComponent("archive/\(name)")), bytes, name)
        }
        // The kills must land while inputs are being worked on, or the test proves nothing.
        XCTAssertGreaterThanOrEqual(killedMidWork, kills / 5, "only \(killedMidWork) of \(kills) kills left inputs in work/")
        print("crash test: \(kills) SIGKILLs (\(killedBeforeReady) during start-up, \(killedMidWork) with inputs in work/), \(dropped.count) inputs, seed \(seed)")
    }

    /// Every input is archived with a complete verdict and heatmap, or pending in the inbox or
    /// work directory; every output in the outbox parses or decodes.
    private func checkInvariants(_ folders: LineFolders, dropped: [String: Data], context: String) throws {
        let archive = Set(folders.list("archive")), inbox = Set(folders.list("inbox")), work = Set(folders.list("work/test-host"))
        for name in dropped.keys {
            if archive.contains(name) {
                let verdict = BinaryHarness.verdict(name, in: folders)
                XCTAssertNotNil(verdict, "\(name) archived without a verdict, \(context)")
                XCTAssertTrue(["ok", "defect"].contains(verdict?["verdict"] as? String), "\(name): \(verdict ?? [:]), \(context)")
                XCTAssertTrue(folders.exists("outbox/\(name).heatmap.png"), "\(name) archived without a heatmap, \(context)")
            } else {
                XCTAssertTrue(inbox.contains(name) || work.contains(name), "\(name) lost, \(context)")
            }
        }
        XCTAssertTrue(archive.isSubset(of: Set(dropped.keys)), "unexpected archive entries \(archive.subtracting(dropped.keys)), \(context)")
        // Completed outputs are whole; temporaries (.name.rstpmd.tmp) are never read by consumers.
        for name in folders.list("outbox") where !name.hasPrefix(".") {
            let url = folders.root.appendingPathComponent("outbox/\(name)")
            if name.hasSuffix(".json") {
                let data = try Data(contentsOf: url)
                XCTAssertNotNil(try? JSONSerialization.jsonObject(with: data), "torn \(name), \(context)")
            } else if name.hasSuffix(".heatmap.png") {
                XCTAssertNoThrow(try ImageDecoder.decode(contentsOf: url), "torn \(name), \(context)")
            }
        }
    }
}
