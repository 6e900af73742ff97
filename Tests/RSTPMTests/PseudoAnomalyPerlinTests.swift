import SeededRandom
import RSTPM
import XCTest

final class PseudoAnomalyPerlinTests: XCTestCase {
    func testMostMasksHoldBothValues() {
        var random = SplitMix64(state: 3)
        let draws = 200
        var mixed = 0, coverage: Float = 0
        for _ in 0..<draws {
            let mask = PerlinNoise.mask(width: 96, height: 64, using: &random)
            XCTAssertEqual(mask.count, 96 * 64)
            let ones = mask.reduce(0, +)
            if ones > 0 && ones < Float(mask.count) { mixed += 1 }
            coverage += ones / Float(mask.count)
        }
        print("perlin: \(mixed)/\(draws) masks hold both values; mean coverage \(coverage / Float(draws))")
        XCTAssertGreaterThan(mixed, draws * 6 / 10)
        // DRAEM's unrotated masks cover 5.7% on average (numpy, 400 draws); rotation cuts corners away.
        XCTAssertTrue((0.02...0.1).contains(coverage / Float(draws)), "mean coverage \(coverage / Float(draws))")
    }

    /// Without rotation the noise should cover what DRAEM's `rand_perlin_2d_np` covers: 5.7% above
    /// 0.5 at 64x96 with a, b uniform in 0...5 (numpy, 400 draws; per-draw spread is large).
    func testUnrotatedCoverageMatchesDRAEM() {
        var random = SplitMix64(state: 21)
        let draws = 400
        var coverage: Float = 0
        for _ in 0..<draws {
            let a = Int.random(in: PerlinNoise.scaleExponents, using: &random)
            let b = Int.random(in: PerlinNoise.scaleExponents, using: &random)
            let mask = PerlinNoise.mask(width: 96, height: 64, cellsAlongWidth: 1 << b, cellsAlongHeight: 1 << a,
                                        degrees: 0, using: &random)
            coverage += mask.reduce(0, +) / Float(mask.count)
        }
        print("perlin: unrotated mean coverage \(coverage / Float(draws)) (DRAEM numpy: 0.057)")
        XCTAssertEqual(coverage / Float(draws), 0.057, accuracy: 0.012)
    }

    /// Boundaries between 0 and 1 along rows and columns grow with the lattice scale on that axis.
    func testScaleRespondsToExponents() {
        func transitions(cellsAlongWidth: Int, cellsAlongHeight: Int) -> (alongWidth: Int, alongHeight: Int) {
            var random = SplitMix64(state: 11)
            let width = 128, height = 128
            var alongWidth = 0, alongHeight = 0
            for _ in 0..<20 {
                let mask = PerlinNoise.mask(width: width, height: height, cellsAlongWidth: cellsAlongWidth,
                                            cellsAlongHeight: cellsAlongHeight, degrees: 0, using: &random)
                for y in 0..<height {
                    for x in 1..<width where mask[y * width + x] != mask[y * width + x - 1] { alongWidth += 1 }
                }
                for y in 1..<height {
                    for x in 0..<width where mask[y * width + x] != mask[(y - 1) * width + x] { alongHeight += 1 }
                }
            }
            return (alongWidth, alongHeight)
        }
        let coarse = transitions(cellsAlongWidth: 2, cellsAlongHeight: 2)
        let fineWidth = transitions(cellsAlongWidth: 16, cellsAlongHeight: 2)
        let fine = transitions(cellsAlongWidth: 16, cellsAlongHeight: 16)
        print("perlin transitions (along width, along height): 2x2 \(coarse), 16 wide x 2 high \(fineWidth), 16x16 \(fine)")
        XCTAssertGreaterThan(fineWidth.alongWidth, 3 * coarse.alongWidth)
        XCTAssertGreaterThan(fineWidth.alongWidth, 3 * fineWidth.alongHeight)
        XCTAssertGreaterThan(fine.alongHeight, 3 * coarse.alongHeight)
    }

    func testNoiseIsSmoothAndZeroAtLatticePoints() {
        var random = SplitMix64(state: 5)
        let width = 96, height = 40  // not powers of two, not divisible by the lattice
        let noise = PerlinNoise.noise(width: width, height: height, cellsAlongWidth: 3, cellsAlongHeight: 4, using: &random)
        XCTAssertEqual(noise[0], 0)  // gradient noise vanishes on lattice points
        XCTAssertTrue(noise.allSatisfy { abs($0) <= 1.0001 })
        var largestStep: Float = 0
        for y in 0..<height {
            for x in 1..<width { largestStep = max(largestStep, abs(noise[y * width + x] - noise[y * width + x - 1])) }
        }
        XCTAssertLessThan(largestStep, 0.2)
        XCTAssertGreaterThan(noise.map(abs).max()!, 0.2)
    }

    func testRotationTurnsAboutTheCentreWithZeroBorder() {
        // A single bright column left of centre rotated by 90 degrees becomes a row.
        let size = 9
        var field = [Float](repeating: 0, count: size * size)
        for y in 0..<size { field[y * size + 2] = 1 }
        let turned = PerlinNoise.rotated(field, width: size, height: size, degrees: 90)
        let brightRows = (0..<size).filter { y in (0..<size).allSatisfy { turned[y * size + $0] > 0.99 } }
        XCTAssertEqual(brightRows.count, 1)
        XCTAssertTrue(brightRows == [2] || brightRows == [6], "column 2 should become row 2 or 6, got \(brightRows)")
        // 45 degrees on a constant field: corners come from outside and read 0.
        let ones = PerlinNoise.rotated([Float](repeating: 1, count: size * size), width: size, height: size, degrees: 45)
        XCTAssertEqual(ones[0], 0)
        XCTAssertEqual(ones[4 * size + 4], 1, accuracy: 1e-6)
    }
}
