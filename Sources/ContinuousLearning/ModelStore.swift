import DaemonSupport
import Foundation
import OperatorErrors
import SystemPackage

/// One numbered model bundle in a store: `<store>/v0003/` (weights.safetensors, manifest.json,
/// and gate.json when a gate decided about it).
public struct ModelVersion: Sendable, Equatable {
    /// `v0003`.
    public var name: String
    public var number: Int
    public var path: FilePath
    /// The gate's record, nil for a bundle put in by hand (the first one).
    public var gate: GateRecord?
}

/// A line's versioned model bundles: `<root>/v0001/`, `<root>/v0002/`, ... numbered without
/// gaps or reuse, and `<root>/current`, a relative symbolic link to the serving one. The link
/// is switched by creating a new link under a temporary name and renaming it over `current`,
/// so a reader sees the old or the new target, never a missing or dangling link.
public final class ModelStore {
    public let root: FilePath
    let files: FileOperations

    public static let currentLinkName = "current"
    static let candidateName = ".candidate"
    static let trashPrefix = ".trash-"

    public init(root: FilePath, syscalls: any Syscalls = SystemCalls()) {
        self.root = root
        self.files = FileOperations(syscalls: syscalls)
    }

    /// Whether `path` is a model store (has a `current` link) rather than a single bundle.
    public static func isStore(_ path: FilePath, syscalls: any Syscalls = SystemCalls()) -> Bool {
        (try? syscalls.lstat(path.appending(currentLinkName)))??.kind == .symbolicLink
    }

    /// Where the trainer writes the next candidate; kept across a crash so training can resume.
    public var candidatePath: FilePath { root.appending(Self.candidateName) }

    /// `v0003` for 3.
    public static func versionName(_ number: Int) -> String {
        let digits = String(number)
        return "v" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    static func versionNumber(_ name: String) -> Int? {
        guard name.hasPrefix("v"), name.count >= 5, let number = Int(name.dropFirst()), number > 0 else { return nil }
        return versionName(number) == name ? number : nil
    }

    /// Every version, oldest first.
    public func versions() throws -> [ModelVersion] {
        var versions: [ModelVersion] = []
        for name in try files.syscalls.listDirectory(root) {
            guard let number = Self.versionNumber(name), try files.syscalls.lstat(root.appending(name))?.kind == .directory else { continue }
            let path = root.appending(name)
            versions.append(ModelVersion(name: name, number: number, path: path, gate: try? GateRecord.read(from: path.appending(GateRecord.fileName), files: files)))
        }
        return versions.sorted { $0.number < $1.number }
    }

    /// The serving version, or nil when `current` is missing. Throws an `OperatorError` when it
    /// points at something that is not a version of this store.
    public func current() throws -> ModelVersion? {
        guard let target = try files.syscalls.readLink(root.appending(Self.currentLinkName)) else { return nil }
        let name = target.lastComponent?.string ?? ""
        guard target.components.count == 1, Self.versionNumber(name) != nil,
              let version = try versions().first(where: { $0.name == name })
        else {
            throw OperatorError(.malformed, path: root.string, problem: "`current` points at \(target), not at a version of this store",
                                  hint: "run `rstpm model rollback LINE VERSION` to point it at a version")
        }
        return version
    }

    /// Points `current` at `name` atomically (symlink to a temporary name, rename over
    /// `current`, directory fsync).
    public func activate(_ name: String) throws {
        guard Self.versionNumber(name) != nil, try files.syscalls.lstat(root.appending(name))?.kind == .directory else {
            throw OperatorError(.notFound, path: root.string, problem: "no version \(name)", hint: "`rstpm model list LINE` shows the versions")
        }
        let temporary = root.appending(".current.tmp")
        try? files.syscalls.unlink(temporary)
        try files.syscalls.symbolicLink(temporary, pointingTo: FilePath(name))
        do {
            try files.syscalls.rename(temporary, to: root.appending(Self.currentLinkName))
        } catch {
            try? files.syscalls.unlink(temporary)
            throw error
        }
        try files.syncDirectory(root)
    }

    /// Numbers the finished candidate: renames `.candidate` to the next version name. Numbers
    /// only grow: the newest version is never pruned.
    @discardableResult
    public func commitCandidate() throws -> ModelVersion {
        let number = (try versions().last?.number ?? 0) + 1
        let name = Self.versionName(number)
        try files.syscalls.rename(candidatePath, to: root.appending(name))
        try files.syncDirectory(root)
        guard let version = try versions().first(where: { $0.name == name }) else {
            throw OperatorError(.conflict, path: root.string, problem: "\(name) vanished after it was committed", hint: "check that nothing else writes to the store")
        }
        return version
    }

    /// Back to `version`, or without one to the newest version older than the current one that a
    /// gate accepted (or that no gate judged, like the first bundle). Returns the new current.
    @discardableResult
    public func rollback(to version: String? = nil) throws -> ModelVersion {
        let all = try versions()
        let target: ModelVersion?
        if let version {
            target = all.first { $0.name == version }
            if target == nil {
                throw OperatorError(.notFound, path: root.string, problem: "no version \(version); there are \(all.map(\.name).joined(separator: ", "))",
                                      hint: "`rstpm model list LINE` shows the versions")
            }
        } else {
            let currentNumber = try current()?.number ?? Int.max
            target = all.last { $0.number < currentNumber && ($0.gate?.decision ?? .accepted) == .accepted }
            if target == nil {
                throw OperatorError(.notFound, path: root.string, problem: "no accepted version older than the current one",
                                      hint: "name a version: `rstpm model rollback LINE VERSION`")
            }
        }
        try activate(target!.name)
        return target!
    }

    /// Removes all but the newest `keeping` versions, never the current one. Each is renamed to
    /// a trash name first, so a half-removed bundle is never offered as a version.
    @discardableResult
    public func prune(keeping: Int) throws -> [String] {
        let all = try versions()
        let currentName = try? current()?.name
        var removed: [String] = []
        for version in all.dropLast(max(keeping, 1)) where version.name != currentName {
            let trash = root.appending(Self.trashPrefix + version.name)
            try files.syscalls.rename(version.path, to: trash)
            removed.append(version.name)
        }
        if !removed.isEmpty { try files.syncDirectory(root) }
        try emptyTrash()
        return removed
    }

    /// Removes what a crash left half-deleted, and a stray temporary link.
    public func emptyTrash() throws {
        for name in try files.syscalls.listDirectory(root) where name.hasPrefix(Self.trashPrefix) {
            try files.removeTree(root.appending(name))
        }
        if try files.syscalls.lstat(root.appending(".current.tmp")) != nil { try files.syscalls.unlink(root.appending(".current.tmp")) }
    }

    /// Removes the candidate (after it was numbered or when starting afresh).
    public func discardCandidate() throws {
        let trash = root.appending(Self.trashPrefix + "candidate")
        if try files.syscalls.lstat(candidatePath) != nil {
            try files.syscalls.rename(candidatePath, to: trash)
        }
        try files.removeTree(trash)
    }
}
