import OperatorErrors

/// Why the review station refuses an operator's setting or a request; the HTTP layer maps
/// `status` onto the response, the CLI prints `description`.
public struct ReviewError: OperatorError, Sendable {
    public enum Status: Int, Sendable {
        case badRequest = 400
        case forbidden = 403
        case notFound = 404
        case conflict = 409
        case unavailable = 503
    }

    public var path: String
    public var problem: String
    public var hint: String
    public var status: Status

    public init(path: String, problem: String, hint: String, status: Status = .badRequest) {
        self.path = path
        self.problem = problem
        self.hint = hint
        self.status = status
    }
}
