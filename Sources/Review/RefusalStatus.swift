import Hummingbird
import OperatorErrors

extension OperatorError {
    /// The HTTP status the station answers a refused request with; nil for a failure of the
    /// station itself (a file it could not read or write), which is a 500.
    var refusalStatus: HTTPResponse.Status? {
        switch kind {
        case .invalidInput: return .badRequest
        case .forbidden: return .forbidden
        case .notFound: return .notFound
        case .conflict: return .conflict
        case .unavailable: return .serviceUnavailable
        default: return nil
        }
    }
}
