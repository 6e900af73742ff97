import Foundation

extension Encodable {
    /// The daemon's on-disk JSON documents (verdicts, quarantine records, gate decisions):
    /// pretty, key-sorted, slashes as written, with a final newline, so that operators and diff
    /// tools read them line by line.
    public func documentJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // The documents hold only strings, numbers, dates as strings and optionals: they always encode.
        var bytes = Array(try! encoder.encode(self))
        bytes.append(0x0A)
        return bytes
    }
}
