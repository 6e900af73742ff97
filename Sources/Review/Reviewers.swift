import Crypto
import Foundation
import HummingbirdBcrypt
import OperatorErrors

/// The optional reviewer list: one `name:bcrypt-hash` per line (`#` comments), the format of
/// `htpasswd -B` and of `rstpm review --hash-password`. bcrypt is deliberately slow, so a
/// password checked once is remembered (as its SHA-256, never in clear) for the process's life.
public final class ReviewerList: @unchecked Sendable {
    public let path: String
    let hashes: [String: String]
    private let lock = NSLock()
    private var verified: [String: String] = [:]

    public init(contentsOf path: String) throws {
        self.path = path
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw OperatorError(.unreadable, path: path, problem: "cannot read the reviewer list: \(error.localizedDescription)", hint: "pass --reviewers FILE of name:bcrypt-hash lines")
        }
        var hashes: [String: String] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  case let hash = String(line[line.index(after: colon)...]), hash.hasPrefix("$2")
            else {
                throw OperatorError(.malformed, path: "\(path):\(number + 1)", problem: "not a `name:bcrypt-hash` line",
                                  hint: "make hashes with `rstpm review --hash-password` or `htpasswd -nB NAME`")
            }
            hashes[String(line[..<colon])] = hash
        }
        guard !hashes.isEmpty else {
            throw OperatorError(.empty, path: path, problem: "the reviewer list names nobody", hint: "add name:bcrypt-hash lines")
        }
        self.hashes = hashes
    }

    /// Whether `password` is `name`'s.
    public func check(name: String, password: String) -> Bool {
        guard let hash = hashes[name] else { return false }
        let fingerprint = SHA256.hash(data: Data("\(name)\u{0}\(password)".utf8)).map { String(format: "%02x", $0) }.joined()
        if lock.withLock({ verified[name] == fingerprint }) { return true }
        guard Bcrypt.verify(password, hash: hash) else { return false }
        lock.withLock { verified[name] = fingerprint }
        return true
    }

    /// A bcrypt hash for a new entry.
    public static func hash(password: String, cost: UInt8 = 12) -> String {
        Bcrypt.hash(password, cost: cost)
    }
}
