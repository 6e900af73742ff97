import Foundation
import TestSupport
import XCTest

/// docs/rstpmd.md's "The path of one image" names the functions an image passes through; each
/// `Type.method` there must be declared in a source file that declares or extends `Type`.
final class LinePathDocumentationTests: XCTestCase {
    func testEveryFunctionOnTheImagesPathExists() throws {
        let root = TestPaths.repositoryRoot
        let document = try String(contentsOf: root.appendingPathComponent("docs/rstpmd.md"), encoding: .utf8)
        let start = try XCTUnwrap(document.range(of: "### The path of one image"))
        let end = try XCTUnwrap(document.range(of: "\n5. ", range: start.upperBound..<document.endIndex))
        let section = document[start.lowerBound..<(document[end.upperBound...].range(of: "\n\n")?.lowerBound ?? document.endIndex)]
        let references = try Regex("`([A-Z][A-Za-z0-9]*)\\.([a-z][A-Za-z0-9]*)").matches(in: String(section))
        XCTAssertGreaterThan(references.count, 20)
        let sources = try swiftSources(under: root.appendingPathComponent("Sources")).map(Declarations.init)
        for (type, method) in references {
            let declaring = sources.filter { $0.types.contains(type) }
            XCTAssertFalse(declaring.isEmpty, "\(type) is declared nowhere in Sources/")
            XCTAssertTrue(declaring.contains { $0.functions.contains(method) },
                          "\(type).\(method) is named in docs/rstpmd.md but no file declaring \(type) has func \(method)")
        }
    }

    /// The types a file declares or extends and the functions it declares, by name.
    private struct Declarations {
        var types: Set<String> = []
        var functions: Set<String> = []

        init(_ text: String) {
            let typeKeywords: Set<Substring> = ["class", "struct", "enum", "protocol", "extension", "actor"]
            var previous: Substring = ""
            for word in text.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }) {
                if typeKeywords.contains(previous) { types.insert(String(word)) }
                if previous == "func" { functions.insert(String(word)) }
                previous = word
            }
        }
    }

    private func swiftSources(under directory: URL) throws -> [String] {
        let enumerator = try XCTUnwrap(FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil))
        return try enumerator.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }.map { try String(contentsOf: $0, encoding: .utf8) }
    }
}

private extension Regex<AnyRegexOutput> {
    func matches(in text: String) -> [(String, String)] {
        text.matches(of: self).compactMap { match in
            guard let type = match.output[1].substring, let method = match.output[2].substring else { return nil }
            return (String(type), String(method))
        }
    }
}
