import CKernels
import XCTest

/// The C kernel sets' row split for stride-2 convolutions (CKernels/deinterleave.c) against its
/// definition, on widths around and between the vector lengths.
final class DeinterleaveTests: XCTestCase {
    func testSplitsRowsIntoEvenAndOddColumnsOnEveryCSet() throws {
        let sets: [(String, UnsafePointer<rstpm_kernel_set>?)] = [("avx512", rstpm_avx512_kernels()), ("avx2", rstpm_avx2_kernels())]
        var ran = 0
        for (name, table) in sets {
            guard let split = table?.pointee.deinterleave else {
                print("kernel set \(name) skipped: this CPU lacks its instructions")
                continue
            }
            for width in [1, 2, 7, 15, 16, 17, 31, 32, 33, 47, 64, 65, 70, 257] {
                let row = (0..<width).map { Float($0) * 0.5 - 3 }
                // One guard float past each half: the split must not write beyond its columns.
                var even = [Float](repeating: .nan, count: (width + 1) / 2 + 1), odd = [Float](repeating: .nan, count: width / 2 + 1)
                split(row, width, &even, &odd)
                XCTAssertEqual(Array(even.prefix((width + 1) / 2)), stride(from: 0, to: width, by: 2).map { row[$0] }, "\(name) width \(width) even")
                XCTAssertEqual(Array(odd.prefix(width / 2)), stride(from: 1, to: width, by: 2).map { row[$0] }, "\(name) width \(width) odd")
                XCTAssertTrue(even.last!.isNaN && odd.last!.isNaN, "\(name) width \(width): wrote past its columns")
            }
            ran += 1
        }
        if ran == 0 { throw XCTSkip("this CPU runs no C kernel set") }
    }
}
