/// What `--version` prints and verdicts and model manifests record: the release number plus the
/// git commit the binary was built from. The commit comes from the GitCommitPlugin's generated
/// `buildCommit`, nil where the build had no git checkout (a source tarball, no git installed).
public enum RSTPMBuild {
    /// The package version; scripts/package.sh names the .deb after it. Raise it per release.
    public static let version = "0.1.0"

    /// Abbreviated commit, with `-dirty` when tracked files differed from it; nil when unknown.
    public static let commit: String? = buildCommit

    /// `0.1.0 (commit 5ad2686abcde)` or `0.1.0 (commit unknown)`.
    public static var description: String {
        "\(version) (commit \(commit ?? "unknown"))"
    }
}
