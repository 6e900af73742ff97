import ContinuousLearning
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// A line's folders with verdicts written as rstpmd writes them (archived input, heatmap,
/// verdict), an rstpmd.yaml with a learning block, and the real `rstpm review` on a free port.
final class ReviewFixture {
    let root: URL
    let secret = "TOP-SECRET-\(UUID().uuidString)"

    init(_ testName: String = #function) throws {
        let name = testName.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-review-\(name)-\(UUID().uuidString.prefix(8))")
        for folder in ["inbox", "work", "outbox", "archive", "quarantine", "accepted", "defects", "training", "originals", "state", "models/v0001", "control"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try write(Array(#"{"quality":"good"}"#.utf8), to: "models/v0001/manifest.json")
        try FileManager.default.createSymbolicLink(atPath: path("models/current"), withDestinationPath: "v0001")
        // Outside every line's folders: what traversal tries to reach.
        try write(Array(secret.utf8), to: "secret.txt")
        try writeTrainer()
        try write(Array("""
        instance: test
        lines:
          - name: line-1
            inbox: \(path("inbox"))
            work: \(path("work"))
            outbox: \(path("outbox"))
            archive: \(path("archive"))
            quarantine: \(path("quarantine"))
            model: \(path("models"))
            learning:
              accepted: \(path("accepted"))
              defects: \(path("defects"))
              store: \(path("training"))
              originals: \(path("originals"))
              trainer: ["\(path("trainer.sh"))", "--data", "{data}", "--out", "{out}"]
              min_new_images: 50
              capacity: 100
              held_out_share: 0.2

        """.utf8), to: "rstpmd.yaml")
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    func write(_ bytes: [UInt8], to relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func read(_ relative: String) -> [UInt8]? { (try? Data(contentsOf: root.appendingPathComponent(relative))).map(Array.init) }

    func list(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(folder))) ?? []).sorted()
    }

    /// A distinct 8x8 gray PNG per index.
    static func image(_ index: Int) -> [UInt8] {
        PNGBuilder.build(width: 8, height: 8, colour: 0, pixels: (0..<64).map { UInt8(truncatingIfNeeded: $0 * 3 + index * 7) },
                         filters: [UInt8](repeating: 0, count: 8), extra: [("tEXt", Array("index\u{0}\(index)".utf8))])
    }

    /// Writes `name` into the archive and its heatmap and verdict into the outbox.
    @discardableResult
    func addVerdict(_ name: String, index: Int, decision: Verdict.Decision, score: Float?, threshold: Float = 0.5,
                    decidedAt: String = "2026-12-01T10:00:00.000Z", regions: [AnomalyRegion] = []) throws -> Verdict {
        let bytes = Self.image(index)
        try write(bytes, to: "archive/\(name)")
        let heatmap = decision == .error ? nil : name + ".heatmap.png"
        if let heatmap { try write(Self.image(10_000 + index), to: "outbox/\(heatmap)") }
        let verdict = Verdict(
            file: name, sha256: sha256Hex(bytes), size: .init(bytes: bytes.count, width: 8, height: 8), receivedAt: decidedAt, decidedAt: decidedAt,
            line: "line-1", instance: "test", model: ModelIdentity(identifier: "rstpm-test", version: "v0001"), verdict: decision, score: score,
            threshold: decision == .error ? nil : .init(value: threshold, source: .model), regions: regions, regionsTruncated: false, heatmap: heatmap,
            timingsMilliseconds: .init(decode: 1, infer: 1, heatmap: 1, write: 1), error: nil)
        try write(verdict.encoded(), to: "outbox/\(name).json")
        return verdict
    }

    /// The trainer double: records its arguments and the images of its snapshot, writes a bundle.
    private func writeTrainer() throws {
        let script = """
        #!/bin/sh
        while [ $# -gt 0 ]; do
          case "$1" in
            --data) data="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            *) shift ;;
          esac
        done
        mkdir -p "$out"
        ls "$data" > '\(path("control/trained-on"))'
        printf '{"quality":"good","images":%s}\\n' "$(ls "$data" | wc -l)" > "$out/manifest.json"
        printf 'weights' > "$out/weights.safetensors"
        """
        try write(Array(script.utf8), to: "trainer.sh")
        chmod(path("trainer.sh"), 0o755)
    }
}

/// `rstpm review` running on a free port of 127.0.0.1.
final class StationProcess {
    let process = Process()
    private(set) var port = 0
    private let output = Pipe()

    init(_ fixture: ReviewFixture, arguments: [String] = []) throws {
        guard let binary = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built: run swift build -c release") }
        process.executableURL = binary
        process.arguments = ["review", "--config", fixture.path("rstpmd.yaml"), "--listen", "127.0.0.1:0", "--state-dir", fixture.path("state")] + arguments
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // The first line names the bound port.
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !text.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let range = text.range(of: #"127\.0\.0\.1:(\d+)/"#, options: .regularExpression),
              let port = Int(text[range].dropFirst("127.0.0.1:".count).dropLast()) else {
            process.terminate()
            throw StationError(message: "rstpm review did not start: \(text)")
        }
        self.port = port
        // Keep draining so that the station never blocks on a full pipe.
        let handle = output.fileHandleForReading
        DispatchQueue.global().async { while !handle.availableData.isEmpty {} }
    }

    func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill() } }
}

struct StationError: Error, CustomStringConvertible { var message: String; var description: String { message } }

/// One HTTP/1.1 exchange over a plain socket, byte for byte as written: URLSession would
/// normalise `..` and encoded slashes that the traversal tests must send as they are.
struct RawHTTP {
    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> [String: Any] { try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], text) }
        func jsonArray() throws -> [[String: Any]] { try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]], text) }
    }

    let port: Int
    var host = "127.0.0.1"

    func send(_ method: String, _ target: String, headers: [String: String] = [:], body: [UInt8] = []) throws -> Reply {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(headers["Host"] ?? "\(host):\(port)")\r\nConnection: close\r\n"
        for (key, value) in headers where key != "Host" { head += "\(key): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw StationError(message: "socket: \(errno)") }
        defer { close(socket) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw StationError(message: "connect: \(errno)") }
        let request = Array(head.utf8) + body
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw StationError(message: "send: \(errno)") }
            sent += count
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Until the server closes, or the body its Content-Length announces is in (chromedriver
        // keeps the connection open whatever the request says).
        while !Self.isComplete(reply) {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { break }
            reply += buffer[0..<count]
        }
        guard let split = reply.indices.first(where: { reply[$0...].starts(with: [13, 10, 13, 10]) }) else {
            throw StationError(message: "no HTTP reply (\(reply.count) bytes)")
        }
        let lines = String(decoding: reply[..<split], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") { fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        var content = Array(reply[(split + 4)...])
        if fields["transfer-encoding"] == "chunked" { content = Self.unchunk(content) }
        return Reply(status: status, headers: fields, body: content)
    }

    static func isComplete(_ reply: [UInt8]) -> Bool {
        guard let split = reply.indices.first(where: { reply[$0...].starts(with: [13, 10, 13, 10]) }) else { return false }
        let head = String(decoding: reply[..<split], as: UTF8.self).lowercased()
        guard let line = head.components(separatedBy: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else { return false }
        return reply.count - (split + 4) >= length
    }

    static func unchunk(_ bytes: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        var index = 0
        while index < bytes.count, let end = bytes[index...].indices.first(where: { bytes[$0...].starts(with: [13, 10]) }),
              let size = Int(String(decoding: bytes[index..<end], as: UTF8.self), radix: 16), size > 0 {
            result += bytes[(end + 2)..<min(end + 2 + size, bytes.count)]
            index = end + 2 + size + 2
        }
        return result
    }

    /// The CSRF token of an anonymous session.
    func csrf(headers: [String: String] = [:]) throws -> String {
        try XCTUnwrap(try send("GET", "/api/session", headers: headers).json()["csrf"] as? String)
    }

    /// POSTs an answer with the session's token.
    func answer(_ item: String, _ answer: String, requestID: String = UUID().uuidString, token: String, label: String? = nil,
                extraHeaders: [String: String] = [:]) throws -> Reply {
        var body: [String: String] = ["answer": answer, "request_id": requestID, "reviewer": "tester"]
        if let label { body["label"] = label }
        return try send("POST", "/api/lines/line-1/items/\(Self.encode(item))/\(answer == "undo" ? "undo" : "answer")",
                        headers: ["Content-Type": "application/json", "X-CSRF-Token": token].merging(extraHeaders) { $1 },
                        body: Array(try JSONSerialization.data(withJSONObject: body)))
    }

    static func encode(_ item: String) -> String {
        item.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? item
    }
}

/// The review log's records.
func reviewLog(_ fixture: ReviewFixture) -> [[String: Any]] {
    guard let bytes = fixture.read("state/review-line-1.jsonl") else { return [] }
    return bytes.split(separator: 10).compactMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
}

/// Gate scores for the learning test: every bundle is "good".
final class FixedEvaluator: CandidateEvaluator {
    func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores {
        BundleScores(scores: images.map { $0.string.contains("/defects/") ? 0.9 : 0.1 }, threshold: 0.5)
    }
}
