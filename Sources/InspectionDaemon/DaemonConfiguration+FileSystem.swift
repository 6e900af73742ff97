import ContinuousLearning
import Foundation
import SystemPackage
import Yams

// The configuration checks that look at the disk: folders, file systems, overlaps.
extension ConfigurationReader {
    /// Rules that need the disk: directories exist, the work directory shares the inbox's
    /// file system, the model bundle is there; and inboxes that are one directory by two names.
    /// Checked for every line, also those with other problems.
    mutating func checkFileSystem(_ configuration: DaemonConfiguration) {
        for (index, paths) in linePaths {
            let key = "lines[\(index)]"
            var inboxDevice: UInt64?
            for name in ["inbox", "outbox", "archive", "quarantine", "work"] {
                guard let directory = paths[name] else { continue }
                var status = stat()
                if stat(directory.string, &status) != 0 {
                    problem("\(key).\(name)", nil, "\(directory) does not exist (\(String(cString: strerror(errno)))); create it (systemd-tmpfiles --create) or fix the path")
                    continue
                }
                if status.st_mode & S_IFMT != S_IFDIR {
                    problem("\(key).\(name)", nil, "\(directory) is not a directory")
                    continue
                }
                if name == "inbox" { inboxDevice = UInt64(status.st_dev) }
                if name == "work", let inboxDevice, UInt64(status.st_dev) != inboxDevice {
                    problem("\(key).work", nil, "\(directory) is on another file system than the inbox \(paths["inbox"]!); the claim must be one atomic rename")
                }
            }
            var status = stat()
            if let model = paths["model"], stat(model.string, &status) != 0 {
                problem("\(key).model", nil, "model bundle \(model) does not exist (\(String(cString: strerror(errno))))")
            } else if let model = paths["model"], status.st_mode & S_IFMT != S_IFDIR {
                problem("\(key).model", nil, "\(model) is a file; point lines[].model at the bundle directory that holds manifest.json")
            } else if let model = paths["model"], learningLines.contains(index), !ModelStore.isStore(model) {
                problem("\(key).model", nil, "\(model) must be a model store (v0001/ and a `current` link to it) when learning is on; see docs/rstpmd.md")
            }
        }
        if let metrics = configuration.metricsFile {
            var status = stat()
            let directory = metrics.removingLastComponent()
            if stat(directory.string, &status) != 0 || status.st_mode & S_IFMT != S_IFDIR {
                problem("metrics_file", nil, "directory \(directory) does not exist")
            }
        }
        checkOverlaps(configuration)
    }

    /// A folder the daemon reads or writes, resolved on disk.
    private struct ResolvedFolder {
        var key: String
        /// The `lines[i]` index it belongs to.
        var line: Int
        var path: FilePath
        /// realpath(3): symbolic links and `..` resolved.
        var real: String
        /// "device:inode", equal for one directory under two names (bind mounts too).
        var identity: String
        var isInbox: Bool
    }

    /// Every folder of every line must be its own: an archive or outbox that is the inbox under
    /// another name (a symbolic link) makes the daemon inspect its own output forever, and two
    /// lines writing one outbox lose each other's verdicts. Compared by device and inode and by
    /// real path, so links, bind mounts and nesting are all caught; the metrics file must lie
    /// outside them all.
    private mutating func checkOverlaps(_ configuration: DaemonConfiguration) {
        func resolve(_ key: String, line: Int, _ path: FilePath, isInbox: Bool) -> ResolvedFolder? {
            var status = stat()
            guard stat(path.string, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, let real = realpath(path.string, nil) else { return nil }
            defer { free(real) }
            return ResolvedFolder(key: key, line: line, path: path, real: String(cString: real), identity: "\(status.st_dev):\(status.st_ino)", isInbox: isInbox)
        }
        var folders: [ResolvedFolder] = []
        for (index, paths) in linePaths {
            for name in ["inbox", "outbox", "archive", "quarantine", "work"] {
                if let path = paths[name], let folder = resolve("lines[\(index)].\(name)", line: index, path, isInbox: name == "inbox") { folders.append(folder) }
            }
        }
        for (line, index) in zip(configuration.lines, lineIndices) {
            guard let learning = line.learning else { continue }
            for (name, path) in [("accepted", learning.accepted), ("store", learning.trainingStore)] {
                if let folder = resolve("lines[\(index)].learning.\(name)", line: index, path, isInbox: false) { folders.append(folder) }
            }
        }
        func contains(_ outer: ResolvedFolder, _ inner: ResolvedFolder) -> Bool {
            inner.real.hasPrefix(outer.real == "/" ? "/" : outer.real + "/")
        }
        for (position, folder) in folders.enumerated() {
            for earlier in folders[..<position] {
                // checkRelations already reported equal spellings of two inboxes, or of a line's
                // inbox and another of its folders.
                let reported = folder.path == earlier.path && ((folder.isInbox && earlier.isInbox) || ((folder.isInbox || earlier.isInbox) && folder.line == earlier.line))
                if reported { continue }
                if folder.identity == earlier.identity {
                    problem(folder.key, nil, "\(folder.path) is the same directory as \(earlier.key) (\(earlier.path), real path \(folder.real)); every folder of every line must be its own")
                } else if contains(earlier, folder) || contains(folder, earlier) {
                    let (outer, inner) = contains(earlier, folder) ? (earlier, folder) : (folder, earlier)
                    problem(folder.key, nil, "\(inner.key) (\(inner.real)) lies inside \(outer.key) (\(outer.real)); every folder of every line must be its own")
                }
            }
        }
        if let metrics = configuration.metricsFile, let directory = resolve("metrics_file", line: -1, metrics.removingLastComponent(), isInbox: false) {
            for folder in folders where folder.identity == directory.identity || contains(folder, directory) {
                problem("metrics_file", nil, "\(metrics) lies inside \(folder.key) (\(folder.real)); keep it outside the lines' folders")
            }
        }
    }
}
