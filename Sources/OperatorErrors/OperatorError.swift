// OperatorErrors: the one shape of an error that reaches an operator, below every module that
// throws one.

/// An error an operator reads and acts on: the file at fault, what is wrong with it, and what
/// to do about it, always printed as `path: problem (hint: hint)`.
public protocol OperatorError: Error, CustomStringConvertible {
    /// The file or directory at fault, or the name an input in memory was given.
    var path: String { get }
    var problem: String { get }
    var hint: String { get }
}

extension OperatorError {
    public var description: String { "\(path): \(problem) (hint: \(hint))" }
}
