import Foundation
import Glibc

/// `rstpm review` (the review station) running on a free port of 127.0.0.1, for tests that
/// answer through its API as a browser would.
public final class ReviewStation {
    public let process = Process()
    public private(set) var port = 0
    private let output = Pipe()

    public init(binary: URL, configuration: String, stateDirectory: String, arguments: [String] = []) throws {
        process.executableURL = binary
        process.arguments = ["review", "--config", configuration, "--listen", "127.0.0.1:0", "--state-dir", stateDirectory] + arguments
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

    public func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill() } }
}

public struct StationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

/// One HTTP/1.1 exchange over a plain socket, byte for byte as written: URLSession would
/// normalise `..` and encoded slashes that the traversal tests must send as they are.
public struct RawHTTP {
    public struct Reply {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public func json() throws -> [String: Any] {
            guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { throw StationError(message: "not a JSON object: \(text)") }
            return object
        }
        public func jsonArray() throws -> [[String: Any]] {
            guard let array = try JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]] else { throw StationError(message: "not a JSON array: \(text)") }
            return array
        }
    }

    public let port: Int
    public var host = "127.0.0.1"

    public init(port: Int, host: String = "127.0.0.1") {
        self.port = port
        self.host = host
    }

    public func send(_ method: String, _ target: String, headers: [String: String] = [:], body: [UInt8] = []) throws -> Reply {
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
    public func csrf(headers: [String: String] = [:]) throws -> String {
        let session = try send("GET", "/api/session", headers: headers)
        guard let token = try session.json()["csrf"] as? String else { throw StationError(message: "no csrf token: \(session.text)") }
        return token
    }

    /// POSTs an answer with the session's token.
    public func answer(_ item: String, _ answer: String, line: String = "line-1", requestID: String = UUID().uuidString, token: String,
                       label: String? = nil, extraHeaders: [String: String] = [:]) throws -> Reply {
        var body: [String: String] = ["answer": answer, "request_id": requestID, "reviewer": "tester"]
        if let label { body["label"] = label }
        return try send("POST", "/api/lines/\(line)/items/\(Self.encode(item))/\(answer == "undo" ? "undo" : "answer")",
                        headers: ["Content-Type": "application/json", "X-CSRF-Token": token].merging(extraHeaders) { $1 },
                        body: Array(try JSONSerialization.data(withJSONObject: body)))
    }

    public static func encode(_ item: String) -> String {
        item.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? item
    }
}
