import Foundation
import RSTPM
import XCTest

/// Teacher files, manifests and configurations an attacker or a careless operator leaves behind:
/// each is refused with an error naming the file and what is wrong, never a crash.
final class HostileModelTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testTeacherFileUnderAKnownNameIsHashedBeforeItIsParsed() throws {
        // A deep pickle under the teacher's name crashed rstpmd at start: it was parsed before
        // its SHA-256 was compared. Now the name's hash prefix is checked first.
        let weights = try temporaryDirectory()
        let deepPickle: [UInt8] = [0x80, 0x02, 0x4b, 0x01] + [UInt8](repeating: 0x85, count: 50_000) + [0x2e]
        for name in ["efficientnet-lite0-57934424.pth", "efficientnet-lite2-9656183e.pth"] {
            try Data(deepPickle).write(to: weights.appendingPathComponent(name))
        }
        XCTAssertThrowsError(try TeacherSet.pretrained(teacher1: "efficientnet-lite0", teacher2: "efficientnet-lite2", weightsDirectory: weights)) { error in
            guard let error = error as? RSTPMError else { return XCTFail("\(type(of: error)): \(error)") }
            XCTAssertTrue(error.path.hasSuffix("efficientnet-lite0-57934424.pth"), error.description)
            XCTAssertTrue(error.problem.contains("SHA-256") && error.problem.contains("57934424"), error.description)
        }
    }
}
