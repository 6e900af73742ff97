import Foundation
import RSTPM
import XCTest

/// Manifests record the rstpm that trained them; those written before the field existed still load.
final class ManifestVersionTests: XCTestCase {
    func testManifestWithoutTheVersionDecodesAndOneWithItKeepsIt() throws {
        let configuration = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(RSTPMConfiguration())) as? [String: Any])
        let old = try JSONSerialization.data(withJSONObject: HostileModelTests.craftedManifest(configuration: configuration))
        XCTAssertFalse(String(decoding: old, as: UTF8.self).contains("rstpmVersion"))
        let decoded = try JSONDecoder().decode(BundleManifest.self, from: old)
        XCTAssertNil(decoded.rstpmVersion)

        var recorded = decoded
        recorded.rstpmVersion = "0.1.0 (commit 0123456789ab)"
        let encoded = try JSONEncoder().encode(recorded)
        XCTAssertEqual(try JSONDecoder().decode(BundleManifest.self, from: encoded).rstpmVersion, "0.1.0 (commit 0123456789ab)")
    }
}
