import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// docs/rstpmd.md promises that a bad reload is refused and the running lines stay; a manifest
/// whose values crashed the range check itself (SIGFPE) broke that promise.
final class ManifestReloadTests: XCTestCase {
    func testReloadOntoACraftedManifestIsRefusedAndTheLinesKeepRunning() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let bundle = folders.root.appendingPathComponent("bundle")
        try FileManager.default.copyItem(at: try BinaryHarness.tinyModel(), to: bundle)
        let configuration = try BinaryHarness.writeConfiguration(folders, model: bundle)
        let (logger, store) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: configuration, modelLoader: { line in
            try RSTPMInspector(bundle: line.modelBundle, weightsDirectory: TestPaths.weightsDirectory)
        }, logger: logger)
        try service.load()
        let running = service.lines.map(ObjectIdentifier.init)

        let manifestURL = bundle.appendingPathComponent("manifest.json")
        let manifest = try String(contentsOf: manifestURL, encoding: .utf8)
        for (field, value) in [("discriminatorDownscale", "0"), ("discriminatorLevels", "64"), ("inputWidth", "100000")] {
            let crafted = manifest.replacingOccurrences(of: #""\#(field)" : \d+"#, with: "\"\(field)\" : \(value)", options: .regularExpression)
            XCTAssertNotEqual(crafted, manifest, field)
            try crafted.write(to: manifestURL, atomically: true, encoding: .utf8)
            service.reload()
            XCTAssertEqual(service.lines.map(ObjectIdentifier.init), running, "\(field) \(value): the running lines must stay")
            let failure = store.entries.last { $0.2["MESSAGE_ID"] == JournalEvent.reloadFailed.messageID }
            XCTAssertTrue(failure.map { "\($0)".contains(field) } ?? false, "\(field): \(String(describing: failure))")
        }
    }
}
