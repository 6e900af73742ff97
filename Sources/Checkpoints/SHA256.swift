import Crypto
import Foundation
import OperatorErrors
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 (FIPS 180-4) of a file, as lowercase hex; the file is read in 1 MiB chunks. Only a
/// regular file is hashed: opening a FIFO waits for a writer and a device such as /dev/zero never
/// ends, so a bundle or teacher file that is one hung the daemon's start and `--check-config`.
public func sha256Hex(of url: URL) throws -> String {
    // O_NONBLOCK keeps the open of a FIFO from waiting; reads of a regular file ignore it.
    let descriptor = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard descriptor >= 0 else {
        throw OperatorError(.unreadable, path: url.path, problem: "cannot open the file", hint: "check that the path exists and is readable")
    }
    let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    defer { try? handle.close() }
    var status = stat()
    guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
        throw OperatorError(.unreadable, path: url.path, problem: "not a regular file (a directory, FIFO or device)", hint: "point at the file itself")
    }
    var hasher = SHA256()
    while true {
        let chunk: Data
        do {
            guard let next = try handle.read(upToCount: 1 << 20), !next.isEmpty else { break }
            chunk = next
        } catch {
            throw OperatorError(.unreadable, path: url.path, problem: "read failed: \(error.localizedDescription)", hint: "check the disk and try again")
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
