import Foundation

/// Where tests find the repository, its committed fixtures, the shared data sets and the weights.
public enum TestPaths {
    /// The repository root, found from this source file's location.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Committed, versioned test fixtures (`Tests/Fixtures`).
    public static let fixtures: URL = repositoryRoot.appendingPathComponent("Tests/Fixtures")

    /// `../shared/datasets` beside the checkout, or `RSTPM_SHARED/datasets`.
    public static var sharedDatasets: URL {
        if let shared = ProcessInfo.processInfo.environment["RSTPM_SHARED"] {
            return URL(fileURLWithPath: shared).appendingPathComponent("datasets")
        }
        return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/datasets")
    }

    /// The default weights directory, resolved as the CLI resolves it:
    /// `RSTPM_WEIGHTS`, else `$XDG_DATA_HOME/rstpm/weights`, else `~/.local/share/rstpm/weights`.
    public static var weightsDirectory: URL {
        let environment = ProcessInfo.processInfo.environment
        if let weights = environment["RSTPM_WEIGHTS"] { return URL(fileURLWithPath: weights) }
        let dataHome = environment["XDG_DATA_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share")
        return dataHome.appendingPathComponent("rstpm/weights")
    }
}
