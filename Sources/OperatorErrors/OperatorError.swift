// OperatorErrors: the one error type that reaches an operator, below every module that
// throws one.

/// An error an operator reads and acts on: what kind of failure it is, the file at fault, what
/// is wrong with it, and what to do about it, always printed as `path: problem (hint: hint)`.
/// Code and tests branch on `kind`, never on the text.
public struct OperatorError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, for the code that reacts to it (quarantine kinds, HTTP statuses, tests).
    public enum Kind: Sendable, Hashable {
        // Files and folders.
        /// A file, folder or named thing (a line, a model version, a review item) that does not exist.
        case notFound
        /// It exists but cannot be opened, read or listed (permissions, I/O error, not a regular file).
        case unreadable
        /// Something could not be created, written, renamed or encoded.
        case writeFailed
        /// A file with no bytes, or a folder or list without the entries it needs.
        case empty
        /// A file that ends before a structure it announces (it may still be being copied).
        case truncated
        /// A file that is present but damaged or inconsistent: bad structure, wrong hash, not
        /// the format its name or manifest promises.
        case malformed
        /// Valid, but in a format, version or feature this rstpm does not read.
        case unsupported
        /// A checkpoint whose pickle asks for code outside the whitelist.
        case unsafe

        // Images.
        /// An image whose header declares more pixels than the limit: its declared size.
        case imageTooLarge(width: Int, height: Int)
        /// Not enough memory to decode or hold it.
        case outOfMemory

        // Models and checkpoints.
        /// State (a checkpoint, a bundle's weights) without tensors the network needs.
        case missingTensors([String])
        /// State with tensors the network does not have.
        case unexpectedTensors([String])
        /// Tensors present under the right names with other shapes than the network's.
        case tensorShapesDiffer([String])
        /// Weights that are intact but not the ones asked for (another teacher, another model).
        case wrongWeights
        /// Training stopped because its loss stopped being finite.
        case trainingDiverged

        // Settings and requests.
        /// A setting, argument or request that is refused as given.
        case invalidInput
        /// Refused because of what is already there (it exists, it was answered, it changed).
        case conflict
        /// Refused to this caller (unknown host, missing CSRF token).
        case forbidden
        /// A program or service the step needs could not be run.
        case unavailable
    }

    public let kind: Kind
    /// The file or directory at fault, or the name an input in memory was given.
    public let path: String
    public let problem: String
    public let hint: String

    public init(_ kind: Kind, path: String, problem: String, hint: String) {
        self.kind = kind
        self.path = path
        self.problem = problem
        self.hint = hint
    }

    public var description: String { "\(path): \(problem) (hint: \(hint))" }
}
