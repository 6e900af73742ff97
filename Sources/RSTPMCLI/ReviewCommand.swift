import ArgumentParser
import Foundation
import InspectionDaemon
import Logging
import Review
import SystemPackage

struct ReviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "review",
        abstract: "Serve the review station: people confirm rstpmd's verdicts in a browser, feeding accepted/ and defects/.",
        discussion: "See docs/review.md. Binds to localhost unless given a reviewer list.")

    @Option(help: "The rstpmd configuration whose lines are reviewed.")
    var config: String = DaemonConfiguration.defaultPath.string

    @Option(help: "Address and port to listen on (port 0: any free port).")
    var listen: String = "127.0.0.1:8470"

    @Option(help: "Folder of the append-only review logs (review-LINE.jsonl).")
    var stateDir: String = "/var/lib/rstpm-review"

    @Option(help: "Reviewer list: name:bcrypt-hash lines (`rstpm review --hash-password`, `htpasswd -nB`). Required to listen beyond localhost.")
    var reviewers: String?

    @Option(help: "Another Host header value to answer to (a reverse proxy's name), repeatable.")
    var allowHost: [String] = []

    @Flag(help: "Read a password from standard input, print its bcrypt hash for the reviewer list, and exit.")
    var hashPassword = false

    func run() throws {
        if hashPassword {
            guard let password = readLine(strippingNewline: true), !password.isEmpty else { throw ValidationError("no password on standard input") }
            print(ReviewerList.hash(password: password))
            return
        }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen \(listen): expected HOST:PORT, e.g. 127.0.0.1:8470")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let list = try reviewers.map { try ReviewerList(contentsOf: $0) }
        guard list != nil || ReviewServer.isLoopback(host) else {
            throw ValidationError("--listen \(listen) is reachable from other machines: pass --reviewers FILE, or listen on 127.0.0.1 behind a reverse proxy")
        }
        // Only the paths matter here; rstpmd checks the disk when it loads the file.
        let text: String
        do {
            text = try String(contentsOfFile: config, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read \(config): \(error.localizedDescription) (pass --config FILE)")
        }
        let configuration = try DaemonConfiguration.parse(yaml: text, file: FilePath(config), checkFileSystem: false)
        var logger = Logger(label: "rstpm.review")
        logger.logLevel = .warning
        let station = try ReviewStation(configuration: configuration, stateDirectory: FilePath(stateDir), reviewers: list,
                                        allowedHosts: ReviewServer.hostNames(listening: host, extra: allowHost))
        let finished = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        Task {
            do {
                try await ReviewServer.run(station, host: host, port: port, logger: logger) { bound in
                    print("rstpm review: \(configuration.lines.count) line(s) on http://\(host.contains(":") ? "[\(host)]" : host):\(bound)/")
                    fflush(stdout)
                }
            } catch {
                outcome.error = error
            }
            finished.signal()
        }
        finished.wait()
        if let error = outcome.error { throw error }
    }
}

/// The server task's failure, handed to the waiting command.
private final class Outcome: @unchecked Sendable {
    var error: (any Error)?
}
