import RSTPM
import TestSupport
import XCTest

/// Each augmentation against PIL 8-bit output (scripts/fixtures/make_pseudo_fixtures.py).
final class PseudoAnomalyAugmentationTests: XCTestCase {
    private static let cases: [(name: String, augmentations: [TextureAugmentation])] = [
        ("posterize", [.posterize(bits: 1), .posterize(bits: 3), .posterize(bits: 5), .posterize(bits: 8)]),
        ("solarize", [.solarize(threshold: 32), .solarize(threshold: 100), .solarize(threshold: 128)]),
        ("equalize", [.equalize]),
        ("autocontrast", [.autocontrast(cutoffPercent: 0), .autocontrast(cutoffPercent: 5), .autocontrast(cutoffPercent: 20)]),
        ("brightness", [.brightness(factor: 0.5), .brightness(factor: 0.83), .brightness(factor: 1.37)]),
        ("color", [.color(factor: 0), .color(factor: 0.6), .color(factor: 2.7)]),
        ("sharpness", [.sharpness(factor: 0), .sharpness(factor: 0.4), .sharpness(factor: 1.9)]),
    ]

    func testMatchesPIL() throws {
        let fixture = try TensorFixture(named: "pseudo_augmentations.tensors")
        XCTAssertEqual(fixture.version, 1)
        let input = fixture["input"]
        let height = input.shape[1], width = input.shape[2]
        let image = PlanarImage(width: width, height: height, bytes: input.values.map { UInt8($0) })
        for (name, augmentations) in Self.cases {
            for (index, augmentation) in augmentations.enumerated() {
                let expected = fixture["\(name)_\(index)"].values
                let actual = augmentation.applied(to: image).values.map { $0 * 255 }
                let differences = zip(actual, expected).map { abs($0 - $1) }
                let mismatches = differences.filter { $0 > 0.01 }.count
                print("augmentation \(augmentation): \(mismatches) of \(expected.count) values differ from PIL, max \(differences.max()!) / 255")
                // Exact on 8-bit input; one level of slack for float summation order in the blends.
                XCTAssertLessThanOrEqual(differences.max()!, 1.01, "\(augmentation)")
                XCTAssertLessThanOrEqual(mismatches, expected.count / 100, "\(augmentation)")
            }
        }
    }

    func testAugmentationsChangeTheImage() throws {
        let fixture = try TensorFixture(named: "pseudo_augmentations.tensors")
        let input = fixture["input"]
        let image = PlanarImage(width: input.shape[2], height: input.shape[1], bytes: input.values.map { UInt8($0) })
        XCTAssertNotEqual(TextureAugmentation.equalize.applied(to: image), image)
        XCTAssertEqual(TextureAugmentation.posterize(bits: 8).applied(to: image), image)
        XCTAssertEqual(TextureAugmentation.brightness(factor: 1).applied(to: image), image)
    }

    func testRandomSequencesDrawDistinctKinds() {
        var random = SplitMix64(state: 17)
        var seen = Set<String>()
        for _ in 0..<200 {
            let sequence = TextureAugmentation.randomSequence(count: 3, using: &random)
            XCTAssertEqual(sequence.count, 3)
            XCTAssertEqual(Set(sequence.map { "\($0.kind)" }).count, 3)
            for augmentation in sequence {
                switch augmentation {
                case .posterize(let bits): XCTAssertTrue((1...8).contains(bits))
                case .solarize(let threshold): XCTAssertTrue((32...128).contains(threshold))
                case .autocontrast(let cutoff): XCTAssertTrue((0...20).contains(cutoff))
                case .sharpness(let factor): XCTAssertTrue((0...2).contains(factor))
                case .brightness(let factor): XCTAssertTrue((0.5...1.5).contains(factor))
                case .color(let factor): XCTAssertTrue((0...3).contains(factor))
                case .equalize: break
                }
            }
            seen.insert(sequence.map { "\($0.kind)" }.joined(separator: ","))
        }
        XCTAssertGreaterThan(seen.count, 100)  // 210 ordered triples exist
    }
}
