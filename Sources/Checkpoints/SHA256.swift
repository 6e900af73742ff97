import Crypto
import Foundation

/// SHA-256 (FIPS 180-4) of a file, as lowercase hex; the file is read in 1 MiB chunks.
public func sha256Hex(of url: URL) throws -> String {
    guard let handle = try? FileHandle(forReadingFrom: url) else {
        throw CheckpointError(kind: .unreadable, path: url.path, problem: "cannot open the file", hint: "check that the path exists and is readable")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    while true {
        let chunk: Data
        do {
            guard let next = try handle.read(upToCount: 1 << 20), !next.isEmpty else { break }
            chunk = next
        } catch {
            throw CheckpointError(kind: .unreadable, path: url.path, problem: "read failed: \(error.localizedDescription)", hint: "check the disk and try again")
        }
        hasher.update(data: chunk)
    }
    return hex(hasher.finalize())
}

/// SHA-256 of bytes in memory, as lowercase hex.
public func sha256Hex(of bytes: [UInt8]) -> String {
    hex(SHA256.hash(data: bytes))
}

private func hex(_ digest: SHA256.Digest) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(2 * SHA256.Digest.byteCount)
    for byte in digest { text += [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]] }
    return String(decoding: text, as: UTF8.self)
}
