import ArgumentParser
import ContinuousLearning
import DaemonSupport
import Foundation
import InspectionDaemon
import OperatorErrors
import SystemPackage

/// `rstpm setup-line NAME --model BUNDLE`: the folders of a new inspection line, owned and
/// moded for the daemon and its uploaders, and its stanza in rstpmd.yaml, checked by the
/// daemon's own parser before anything is written.
struct SetupLineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup-line",
        abstract: "Create an inspection line's folders and add its stanza to rstpmd's configuration.",
        discussion: """
            Creates ROOT/NAME/{inbox,work,outbox,archive,quarantine}: owned by the daemon's user and group, \
            the inbox group-writable and setgid so that uploaders in the group can drop images and the daemon \
            can read them. Appends the line to the configuration (or prints it with --print). An existing line \
            of that name, or existing folders, are left alone unless --force is given.
            """)

    @Argument(help: "The line's name (letters, digits, '-', '_', '.'), as in logs, verdicts and metrics.")
    var name: String

    @Option(name: .long, help: "The model bundle or model store the line inspects with.")
    var model: String

    @Option(name: .long, help: "The rstpmd configuration to add the line to.")
    var config: String = DaemonConfiguration.defaultPath.string

    @Option(name: .long, help: "The folder that holds the lines' folders; the unit lets rstpmd write below /srv/rstpmd only.")
    var root: String = SetupLinePlan.defaultRoot

    @Option(name: .long, help: "The user rstpmd runs as (the unit's User=).")
    var user: String = "rstpmd"

    @Option(name: .long, help: "The group of rstpmd and of the uploaders (the unit's Group=).")
    var group: String = "rstpmd"

    @Flag(name: .long, help: "Print the stanza instead of writing it into --config.")
    var print = false

    @Flag(name: .long, help: "Replace the line's stanza and reuse its existing folders, fixing their owners and modes.")
    var force = false

    func validate() throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }), !name.hasPrefix(".") else {
            throw ValidationError("NAME must be letters, digits, '-', '_' or '.' (not starting with '.'), got \"\(name)\"")
        }
    }

    func run() throws {
        let plan = SetupLinePlan(name: name, root: absolute(root), model: absolute(model), user: user, group: group)
        let configPath = FilePath(absolute(config))
        try plan.checkModel()
        let existing = try plan.readConfiguration(configPath)
        let text = try plan.configurationText(adding: existing, force: force, file: configPath)
        try plan.checkFolders(force: force)

        let report = try plan.createFolders()
        // The same parse and disk checks as `rstpmd --check-config`, for this line alone (other
        // lines' folders may live elsewhere).
        try plan.checkLineOnDisk()

        if print {
            Swift.print(plan.stanza, terminator: "")
            Swift.print("# Add the stanza above to the `lines:` list of \(configPath).")
        } else {
            try plan.write(text, to: configPath, existed: existing != nil)
            Swift.print("\(configPath): added line \(name); check it with: rstpmd --check-config \(configPath)")
        }
        for line in report { Swift.print(line) }
        Swift.print(plan.uploaderAdvice)
        if let advice = plan.weightsAdvice() { Swift.print(advice) }
        Swift.print("Then: rstpmd --check-config \(configPath) && systemctl reload rstpmd (or enable --now, the first time)")
    }

    private func absolute(_ path: String) -> String {
        let filePath = FilePath(path)
        if filePath.isAbsolute { return filePath.lexicallyNormalized().string }
        return FilePath(FileManager.default.currentDirectoryPath).pushing(filePath).lexicallyNormalized().string
    }
}

/// What setup-line does for one line, step by step.
struct SetupLinePlan {
    static let defaultRoot = "/srv/rstpmd"
    /// The unit's Environment=RSTPM_WEIGHTS.
    static let serviceWeights = "/var/lib/rstpmd/weights"

    var name: String
    var root: String
    var model: String
    var user: String
    var group: String

    /// Folder name -> mode. The inbox is group-writable for uploaders; setgid on the inbox and the
    /// outbox keeps new files in the daemon's group whoever writes them.
    static let folders: [(name: String, mode: mode_t)] = [
        ("inbox", 0o2770), ("work", 0o750), ("outbox", 0o2750), ("archive", 0o750), ("quarantine", 0o750),
    ]

    var lineFolder: String { "\(root)/\(name)" }

    func folder(_ name: String) -> String { "\(lineFolder)/\(name)" }

    /// The `- name: ...` list item, indented for a top-level `lines:` list.
    var stanza: String {
        var text = "  - name: \(name)\n"
        for key in ["inbox", "work", "outbox", "archive", "quarantine"] {
            text += "    \(key): \(Self.yamlScalar(folder(key)))\n"
        }
        text += "    model: \(Self.yamlScalar(model))\n"
        text += "    processed_inputs: archive\n"
        return text
    }

    /// A path as a YAML scalar: plain when it is only safe characters, else double-quoted.
    static func yamlScalar(_ value: String) -> String {
        if value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/._-".contains($0)) }) { return value }
        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: escaped += String(format: "\\x%02X", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return "\"\(escaped)\""
    }

    func checkModel() throws {
        let path = FilePath(model)
        let isBundle = FileManager.default.fileExists(atPath: path.appending("manifest.json").string)
        guard isBundle || ModelStore.isStore(path) else {
            throw OperatorError(.invalidInput, path: model, problem: "is not a model bundle (no manifest.json) nor a model store",
                                 hint: "train one with `rstpm train --out DIR`, install it below /var/lib/rstpmd/models and pass --model DIR")
        }
    }

    /// The configuration's text, or nil when the file does not exist yet. A file the daemon
    /// would refuse is refused here too: appending to it would hide the problem.
    func readConfiguration(_ path: FilePath) throws -> String? {
        let text: String
        do {
            text = try String(contentsOfFile: path.string, encoding: .utf8)
        } catch CocoaError.fileReadNoSuchFile {
            return nil
        } catch {
            throw OperatorError(.unreadable, path: path.string, problem: "cannot read it (\(error.localizedDescription))",
                                 hint: "run as root (sudo rstpm setup-line ...), or use --print and add the stanza yourself")
        }
        do {
            _ = try DaemonConfiguration.parse(yaml: text, file: path, checkFileSystem: false)
        } catch let error as ConfigurationError {
            throw OperatorError(.malformed, path: path.string, problem: "has problems already:\n\(error)", hint: "fix them first (rstpmd --check-config \(path))")
        }
        return text
    }

    /// The configuration with this line appended, or with its old stanza replaced under
    /// `force`; parsed by the daemon's parser before it is used.
    func configurationText(adding existing: String?, force: Bool, file: FilePath) throws -> String {
        var text: String
        if let existing {
            var lines = existing.components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            let items = Self.listItems(in: lines)
            guard !items.isEmpty else {
                throw OperatorError(.unsupported, path: file.string, problem: "has no block list `lines:` with `- name:` items to add to",
                                     hint: "add the stanza by hand (--print shows it)")
            }
            if let old = items.first(where: { $0.name == name }) {
                guard force else {
                    throw OperatorError(.conflict, path: file.string, problem: "already has a line \"\(name)\" (lines \(old.range.lowerBound + 1)-\(old.range.upperBound))",
                                         hint: "choose another name, or pass --force to replace its stanza")
                }
                // Comments closing the old item (the example's `learning:` notes) stay.
                var end = old.range.upperBound
                while end > old.range.lowerBound + 1, lines[end - 1].trimmingCharacters(in: .whitespaces).hasPrefix("#") { end -= 1 }
                lines.replaceSubrange(old.range.lowerBound..<end, with: Self.indented(stanza, column: old.dashColumn))
            } else {
                let last = items[items.count - 1]
                lines.insert(contentsOf: Self.indented(stanza, column: last.dashColumn), at: last.range.upperBound)
            }
            text = lines.joined(separator: "\n") + "\n"
        } else {
            text = "# rstpmd configuration, started by rstpm setup-line. Check it with: rstpmd --check-config \(file)\n"
                + "metrics_file: /var/lib/rstpmd/metrics/rstpmd.prom\n\nlines:\n" + stanza
        }
        do {
            let parsed = try DaemonConfiguration.parse(yaml: text, file: file, checkFileSystem: false)
            guard parsed.lines.contains(where: { $0.name == name && $0.inbox == FilePath(folder("inbox")) && $0.modelBundle == FilePath(model) }) else {
                throw OperatorError(.unsupported, path: file.string, problem: "the line did not land in `lines:` as written", hint: "add the stanza by hand (--print shows it)")
            }
        } catch let error as ConfigurationError {
            throw OperatorError(.conflict, path: file.string, problem: "would not be valid with the new line:\n\(error)", hint: "fix the conflicting line, or choose another NAME or --root")
        }
        return text
    }

    /// One `- name:` item of the top-level `lines:` block list: its text lines and its dash's column.
    struct ListItem {
        var name: String
        var range: Range<Int>
        var dashColumn: Int
    }

    /// The items of the top-level `lines:` list: each from its dash to the next item, the next
    /// top-level key, or the end, less trailing blank lines.
    static func listItems(in lines: [String]) -> [ListItem] {
        guard let start = lines.firstIndex(where: { $0.hasPrefix("lines:") }) else { return [] }
        var end = lines.count
        for index in (start + 1)..<lines.count {
            if let first = lines[index].first, first != " ", first != "#", first != "-" { end = index; break }
        }
        var items: [ListItem] = []
        for index in (start + 1)..<end {
            let line = lines[index]
            let column = line.prefix(while: { $0 == " " }).count
            let rest = line.dropFirst(column)
            guard rest.hasPrefix("- ") else { continue }
            if let previous = items.indices.last { items[previous].range = items[previous].range.lowerBound..<index }
            var itemName = ""
            let body = rest.dropFirst(2).trimmingCharacters(in: .whitespaces)
            if body.hasPrefix("name:") {
                let value = body.dropFirst(5).split(separator: "#", maxSplits: 1).first ?? ""
                itemName = value.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            }
            items.append(ListItem(name: itemName, range: index..<end, dashColumn: column))
        }
        if let last = items.indices.last {
            var upper = items[last].range.upperBound
            while upper > items[last].range.lowerBound + 1, lines[upper - 1].trimmingCharacters(in: .whitespaces).isEmpty { upper -= 1 }
            items[last].range = items[last].range.lowerBound..<upper
        }
        return items
    }

    /// The stanza's lines with its dash moved to `column`.
    static func indented(_ stanza: String, column: Int) -> [String] {
        let shift = column - 2
        return stanza.split(separator: "\n").map { line in
            shift >= 0 ? String(repeating: " ", count: shift) + line : String(line.dropFirst(min(-shift, 2)))
        }
    }

    func checkFolders(force: Bool) throws {
        let present = ([lineFolder] + Self.folders.map { folder($0.name) }).filter { FileManager.default.fileExists(atPath: $0) }
        guard present.isEmpty || force else {
            throw OperatorError(.conflict, path: present[0], problem: "exists already (\(present.count) of the line's folders do)",
                                 hint: "choose another NAME or --root, or pass --force to reuse them (their owners and modes are then set again)")
        }
    }

    /// Creates the folders and sets their owners and modes; returns what it did or could not do.
    func createFolders() throws -> [String] {
        let operations = FileOperations(syscalls: SystemCalls())
        let userID = getpwnam(user)?.pointee.pw_uid
        let groupID = getgrnam(group)?.pointee.gr_gid
        let isRoot = geteuid() == 0
        var report: [String] = []
        var fixes: [String] = []
        // A --root made here is the daemon's too: it must be able to pass through it.
        let madeRoot = FileManager.default.fileExists(atPath: root) ? [] : [(path: root, mode: mode_t(0o750))]
        let all = madeRoot + [(path: lineFolder, mode: mode_t(0o750))] + Self.folders.map { (path: folder($0.name), mode: $0.mode) }
        for entry in all {
            let path = entry.path
            do {
                try operations.createDirectories(FilePath(path))
                // Owner first: chown clears the setgid bit.
                let owner: uid_t = isRoot ? (userID ?? geteuid()) : geteuid()
                let ownerGroup: gid_t = groupID.map { isRoot || Self.isMember(of: $0) ? $0 : getegid() } ?? getegid()
                if chown(path, owner, ownerGroup) != 0 { throw Errno(rawValue: errno) }
                if chmod(path, entry.mode) != 0 { throw Errno(rawValue: errno) }
            } catch {
                throw OperatorError(.writeFailed, path: path, problem: "cannot create it or set its owner and mode (\(error))",
                                     hint: "run as root (sudo rstpm setup-line ...) or choose a --root you can write")
            }
            var status = stat()
            _ = stat(path, &status)
            let mode = String(status.st_mode & 0o7777, radix: 8)
            let ownerName = getpwuid(status.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(status.st_uid)"
            let groupName = getgrgid(status.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(status.st_gid)"
            report.append("  \(path)  \(mode) \(ownerName):\(groupName)")
            if status.st_mode & 0o7777 != entry.mode { fixes.append("chmod \(String(entry.mode, radix: 8)) \(path)") }
        }
        var notes: [String] = []
        if groupID == nil { notes.append("the group \(group) does not exist (it is made by the package: systemd-sysusers rstpmd.conf)") }
        if userID == nil && isRoot { notes.append("the user \(user) does not exist (systemd-sysusers rstpmd.conf)") }
        if !isRoot { notes.append("not running as root, so the folders belong to you, not to \(user):\(group)") }
        if !notes.isEmpty || !fixes.isEmpty {
            report.append("Not done: " + notes.joined(separator: "; ") + ". To fix, as root:")
            if !madeRoot.isEmpty { report.append("  chown \(user):\(group) \(root)") }
            report.append("  chown -R \(user):\(group) \(lineFolder)")
            for entry in all { report.append("  chmod \(String(entry.mode, radix: 8)) \(entry.path)") }
        }
        return ["Folders:"] + report
    }

    private static func isMember(of group: gid_t) -> Bool {
        if getegid() == group { return true }
        let count = getgroups(0, nil)
        guard count > 0 else { return false }
        var groups = [gid_t](repeating: 0, count: Int(count))
        return getgroups(count, &groups) > 0 && groups.contains(group)
    }

    /// The daemon's disk checks for this line alone: folders, one file system for inbox and work, the model.
    func checkLineOnDisk() throws {
        do {
            _ = try DaemonConfiguration.parse(yaml: "lines:\n" + stanza, file: FilePath(lineFolder))
        } catch let error as ConfigurationError {
            throw OperatorError(.invalidInput, path: lineFolder, problem: "rstpmd would refuse the line:\n\(error.problems.map { "  \($0)" }.joined(separator: "\n"))",
                                 hint: "fix the folders or the model; the configuration was not changed")
        }
    }

    /// Writes the new configuration durably, keeping the old file's owner and mode.
    func write(_ text: String, to path: FilePath, existed: Bool) throws {
        var previous = stat()
        let hadStatus = existed && stat(path.string, &previous) == 0
        do {
            // The daemon's user reads the configuration: a folder made here is world-readable, like /etc/rstpmd.
            try FileManager.default.createDirectory(atPath: path.removingLastComponent().string, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            try FileOperations(syscalls: SystemCalls()).writeDurably(Array(text.utf8), to: path)
        } catch {
            throw OperatorError(.writeFailed, path: path.string, problem: "cannot write it (\(error)); the folders were made",
                                 hint: "run as root, or rerun with --print --force and add the stanza yourself")
        }
        if hadStatus {
            _ = chown(path.string, previous.st_uid, previous.st_gid)
            _ = chmod(path.string, previous.st_mode & 0o7777)
        }
    }

    var uploaderAdvice: String {
        """
        Uploaders: give each uploading account the group \(group) (usermod -aG \(group) ACCOUNT; \
        log in again), and let them write files readable by the group (umask 002 or 007). The inbox \
        \(folder("inbox")) is setgid, so images dropped there belong to \(group) and rstpmd can read \
        and move them. Verdicts appear in \(folder("outbox")). For SMB and NFS shares see "Uploaders" \
        in /usr/share/doc/rstpm/rstpmd.md.
        """
    }

    /// The teachers the service needs, when its weights folder is still empty.
    func weightsAdvice() -> String? {
        let present = (try? FileManager.default.contentsOfDirectory(atPath: Self.serviceWeights))?.contains { !$0.hasPrefix(".") } ?? false
        if present { return nil }
        return "Teacher weights: \(Self.serviceWeights) is empty; as root: rstpm weights fetch --dir \(Self.serviceWeights)"
    }
}
