import Crypto
import DaemonSupport
import Foundation
import Hummingbird
import InspectionDaemon
import Logging
import OperatorErrors
import SystemPackage

/// What `rstpm review` serves: the lines of an rstpmd configuration, each with its desk.
public final class ReviewStation: @unchecked Sendable {
    public let desks: [ReviewDesk]
    public let reviewers: ReviewerList?
    /// Host header values the station answers to (DNS rebinding: a page of another site that
    /// resolves its own name to 127.0.0.1 must not reach the API).
    let allowedHosts: Set<String>
    /// Signs CSRF tokens; new at every start, so tokens die with the process.
    let csrfKey = SymmetricKey(size: .bits256)

    public init(configuration: DaemonConfiguration, stateDirectory: FilePath, reviewers: ReviewerList?, allowedHosts: Set<String>) throws {
        do {
            try FileOperations(syscalls: SystemCalls()).createDirectories(stateDirectory)
        } catch {
            throw OperatorError(.writeFailed, path: stateDirectory.string, problem: "cannot create the state directory: \(error)", hint: "pass --state-dir DIR, writable by this user")
        }
        desks = configuration.lines.map { ReviewDesk(line: $0, stateDirectory: stateDirectory) }
        self.reviewers = reviewers
        self.allowedHosts = allowedHosts
        for desk in desks { try desk.open() }
    }

    func desk(_ name: String) throws -> ReviewDesk {
        guard let desk = desks.first(where: { $0.line.name == name }) else {
            throw OperatorError(.notFound, path: name, problem: "no such line", hint: "the configuration has \(desks.map(\.line.name).joined(separator: ", "))")
        }
        return desk
    }

    /// The token a page must send in `X-CSRF-Token` with every write: an HMAC of the reviewer,
    /// readable only by a page of this origin (GET /api/session).
    func csrfToken(for reviewer: Reviewer?) -> String {
        let subject = reviewer.map { "user:\($0.name)" } ?? "anonymous"
        return Data(HMAC<SHA256>.authenticationCode(for: Data(subject.utf8), using: csrfKey)).map { String(format: "%02x", $0) }.joined()
    }

    func checkCSRF(_ token: String?, for reviewer: Reviewer?) -> Bool {
        guard let token, token.utf8.count == 64 else { return false }
        let expected = Array(csrfToken(for: reviewer).utf8)
        // Constant time: the difference of every byte is folded in.
        return zip(Array(token.utf8), expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// The request context: who is asking, once the guard has checked.
public struct ReviewContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The checked reviewer with a reviewer list; nil without one.
    var reviewer: Reviewer?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

/// Runs the review station with Hummingbird until SIGTERM or SIGINT.
public enum ReviewServer {
    /// Serves `station` on `host:port` (port 0: any free port). `onRunning` gets the bound
    /// port once connections are accepted.
    public static func run(_ station: ReviewStation, host: String, port: Int, logger: Logger, onRunning: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router(context: ReviewContext.self)
        router.add(middleware: GuardMiddleware(station: station))
        ReviewRoutes(station: station).register(on: router)
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) }, logger: logger)
        try await app.runService()
    }

    /// Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

/// Every request: Host check, reviewer check (HTTP basic against the reviewer list), CSRF on
/// every write, errors as JSON, and headers that keep the page in its own origin.
struct GuardMiddleware: RouterMiddleware {
    typealias Context = ReviewContext
    let station: ReviewStation

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await guarded(request, context: context, next: next)
        } catch let error as OperatorError where error.refusalStatus != nil {
            response = jsonError(error.refusalStatus!, error.problem, hint: error.hint)
        } catch let error as HTTPError {
            response = jsonError(error.status, error.body ?? error.status.reasonPhrase, hint: "")
        } catch {
            // A file the station could not read or write (EIO, ENOSPC, EACCES): nothing was confirmed.
            response = jsonError(.internalServerError, "\(error)", hint: "retry: an answer already in the review log is finished by the retry or at the next start")
        }
        response.headers[.contentSecurityPolicy] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[HTTPFields.Element.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPFields.Element.Name("Referrer-Policy")!] = "no-referrer"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }

    private func guarded(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authority = request.head.authority, station.allowedHosts.contains(Self.hostName(ofAuthority: authority)) else {
            throw OperatorError(.forbidden, path: request.head.authority ?? "(no Host)", problem: "unknown Host header",
                              hint: "open the station by the address it listens on, or start it with --allow-host NAME")
        }
        var context = context
        if let reviewers = station.reviewers {
            guard let (name, password) = Self.basicCredentials(request.headers[.authorization]), reviewers.check(name: name, password: password) else {
                var response = jsonError(.unauthorized, "log in as a reviewer", hint: "names and passwords are in the reviewer list")
                response.headers[.wwwAuthenticate] = "Basic realm=\"rstpm review\", charset=\"UTF-8\""
                return response
            }
            context.reviewer = Reviewer(name: name, authenticated: true)
        }
        if request.method != .get && request.method != .head {
            guard station.checkCSRF(request.headers[HTTPFields.Element.Name("X-CSRF-Token")!], for: context.reviewer) else {
                throw OperatorError(.forbidden, path: request.uri.path, problem: "missing or wrong CSRF token", hint: "reload the page")
            }
            guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
                throw OperatorError(.invalidInput, path: request.uri.path, problem: "writes take application/json", hint: "use the page")
            }
        }
        return try await next(request, context)
    }

    /// `host` of `host:port` or `[v6]:port`, lower-cased.
    static func hostName(ofAuthority authority: String) -> String {
        let lower = authority.lowercased()
        if lower.hasPrefix("["), let end = lower.firstIndex(of: "]") { return String(lower[...end]) }
        return String(lower.split(separator: ":", maxSplits: 1).first ?? "")
    }

    static func basicCredentials(_ header: String?) -> (String, String)? {
        guard let header, header.lowercased().hasPrefix("basic "),
              let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
              let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let bytes = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func jsonError(_ status: HTTPResponse.Status, _ problem: String, hint: String) -> Response {
    jsonResponse(["error": problem, "hint": hint], status: status)
}

extension ReviewServer {
    /// The Host header values to accept: the listening address and, on loopback, localhost's
    /// names (any port: only the name tells a rebinding page apart).
    public static func hostNames(listening host: String, extra: [String]) -> Set<String> {
        var names = Set(extra.map { $0.lowercased() })
        names.insert(host.contains(":") ? "[\(host.lowercased())]" : host.lowercased())
        if isLoopback(host) { names.formUnion(["localhost", "127.0.0.1", "[::1]"]) }
        return names
    }
}
