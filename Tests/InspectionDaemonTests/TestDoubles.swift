import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import XCTest

/// A deterministic inspector for tests: reads binary PGM (P5, 8-bit), uses pixel / 255 as the
/// anomaly map at half resolution (so region extraction must scale it back), the maximum as the
/// score, threshold 0.5 from "the model". Anything that is not P5 is a decode failure.
final class PGMInspector: Inspector {
    let modelIdentity = ModelIdentity(identifier: "pgm-test-double", version: "1")
    private let lock = NSLock()
    private(set) var inspectedNames: [String] = []
    private var inspectedBatchSizes: [Int] = []
    /// Called before each batch; a test may block here to simulate a hung inference.
    var beforeBatch: (() -> Void)?

    func inspect(prepared inputs: [InspectionInput]) -> [Result<InspectionOutcome, InspectionError>] {
        beforeBatch?()
        lock.lock(); inspectedNames += inputs.map(\.fileName); inspectedBatchSizes.append(inputs.count); lock.unlock()
        return inputs.map { input in
            guard let (width, height, pixels) = Self.decode(input.bytes) else {
                return .failure(.decodeFailure(message: "not a binary PGM"))
            }
            let mapWidth = max(width / 2, 1), mapHeight = max(height / 2, 1)
            var map = [Float](repeating: 0, count: mapWidth * mapHeight)
            for y in 0..<mapHeight {
                for x in 0..<mapWidth {
                    map[y * mapWidth + x] = Float(pixels[min(2 * y, height - 1) * width + min(2 * x, width - 1)]) / 255
                }
            }
            return .success(InspectionOutcome(
                score: map.max() ?? 0, threshold: 0.5, anomalyMap: map,
                mapWidth: mapWidth, mapHeight: mapHeight, imageWidth: width, imageHeight: height,
                heatmapPNG: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(input.fileName.utf8),
                timings: InspectionTimings(decodeMilliseconds: 0.1, inferMilliseconds: 0.2)))
        }
    }

    var names: [String] { lock.lock(); defer { lock.unlock() }; return inspectedNames }
    var batchSizes: [Int] { lock.lock(); defer { lock.unlock() }; return inspectedBatchSizes }

    static func decode(_ bytes: [UInt8]) -> (Int, Int, [UInt8])? {
        guard let text = String(bytes: bytes.prefix(64), encoding: .isoLatin1), text.hasPrefix("P5\n") else { return nil }
        let header = text.split(separator: "\n", maxSplits: 3, omittingEmptySubsequences: false)
        guard header.count >= 4 else { return nil }
        let size = header[1].split(separator: " ").compactMap { Int($0) }
        guard size.count == 2, header[2] == "255" else { return nil }
        let offset = header[0].utf8.count + header[1].utf8.count + header[2].utf8.count + 3
        guard bytes.count == offset + size[0] * size[1] else { return nil }
        return (size[0], size[1], Array(bytes[offset...]))
    }

    /// A PGM whose pixels are 0 except `hot` rectangles (x, y, width, height) at `value`.
    static func image(width: Int = 16, height: Int = 12, hot: [(Int, Int, Int, Int)] = [], value: UInt8 = 230) -> [UInt8] {
        var pixels = [UInt8](repeating: 10, count: width * height)
        for (x0, y0, w, h) in hot {
            for y in y0..<(y0 + h) { for x in x0..<(x0 + w) { pixels[y * width + x] = value } }
        }
        return Array("P5\n\(width) \(height)\n255\n".utf8) + pixels
    }
}

/// Wraps the real system calls and fails chosen ones with a chosen errno.
final class FaultySyscalls: Syscalls {
    enum Operation { case open, read, write, fsync, rename, unlink }
    struct Fault {
        var operation: Operation
        /// Fails only calls whose path (for fd calls, the path it was opened with; for rename,
        /// the destination) contains this.
        var pathContains: String
        var errno: Errno
        var remaining: Int
    }

    let real = SystemCalls()
    private let lock = NSLock()
    private var faults: [Fault] = []
    private var openPaths: [Int32: String] = [:]
    private(set) var injected = 0

    func inject(_ operation: Operation, pathContains: String, errno: Errno, times: Int = .max) {
        lock.lock(); faults.append(Fault(operation: operation, pathContains: pathContains, errno: errno, remaining: times)); lock.unlock()
    }

    func clearFaults() { lock.lock(); faults = []; lock.unlock() }

    private func check(_ operation: Operation, _ path: String) throws {
        lock.lock(); defer { lock.unlock() }
        guard let index = faults.firstIndex(where: { $0.operation == operation && path.contains($0.pathContains) && $0.remaining > 0 }) else { return }
        faults[index].remaining -= 1
        injected += 1
        throw faults[index].errno
    }

    private func path(of descriptor: FileDescriptor) -> String {
        lock.lock(); defer { lock.unlock() }
        return openPaths[descriptor.rawValue] ?? ""
    }

    func open(_ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions, permissions: FilePermissions?) throws -> FileDescriptor {
        try check(.open, path.string)
        let descriptor = try real.open(path, mode, options: options, permissions: permissions)
        lock.lock(); openPaths[descriptor.rawValue] = path.string; lock.unlock()
        return descriptor
    }
    func read(_ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try check(.read, path(of: descriptor))
        return try real.read(descriptor, into: buffer)
    }
    func write(_ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws -> Int {
        try check(.write, path(of: descriptor))
        return try real.write(descriptor, buffer)
    }
    func fsync(_ descriptor: FileDescriptor) throws {
        try check(.fsync, path(of: descriptor))
        try real.fsync(descriptor)
    }
    func close(_ descriptor: FileDescriptor) throws {
        lock.lock(); openPaths[descriptor.rawValue] = nil; lock.unlock()
        try real.close(descriptor)
    }
    func rename(_ source: FilePath, to destination: FilePath) throws {
        try check(.rename, destination.string)
        try real.rename(source, to: destination)
    }
    func unlink(_ path: FilePath) throws {
        try check(.unlink, path.string)
        try real.unlink(path)
    }
    func mkdir(_ path: FilePath, permissions: FilePermissions) throws { try real.mkdir(path, permissions: permissions) }
    func lstat(_ path: FilePath) throws -> FileStatus? { try real.lstat(path) }
    func listDirectory(_ path: FilePath) throws -> [String] { try real.listDirectory(path) }
}

/// A temporary line: inbox, work, outbox, archive, quarantine and a fake model bundle.
struct LineFolders {
    let root: URL

    init(_ testName: String = #function) throws {
        let name = testName.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpmd-\(name)-\(UUID().uuidString.prefix(8))")
        for directory in ["inbox", "work", "outbox", "archive", "quarantine", "model", "metrics"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
    }

    func path(_ relative: String) -> FilePath { FilePath(root.appendingPathComponent(relative).path) }

    func configuration(name: String = "line-1", settleSeconds: Double = 0, batchSize: Int = 4, policy: ProcessedInputPolicy = .archive, threshold: Float? = nil) -> LineConfiguration {
        LineConfiguration(
            name: name, inbox: path("inbox"), outbox: path("outbox"), archive: path("archive"), quarantine: path("quarantine"),
            work: path("work"), modelBundle: path("model"), thresholdOverride: threshold, pollIntervalSeconds: 0.05,
            settleIntervalSeconds: settleSeconds, processedInputs: policy, batchSize: batchSize)
    }

    func write(_ bytes: [UInt8], to relative: String) throws {
        try Data(bytes).write(to: root.appendingPathComponent(relative))
    }

    func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(directory).path)) ?? []).sorted()
    }

    func exists(_ relative: String) -> Bool {
        FileManager.default.fileExists(atPath: root.appendingPathComponent(relative).path)
    }

    func json(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent(relative))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func remove() { try? FileManager.default.removeItem(at: root) }
}

let second: Int64 = 1_000_000_000

/// The file system as a process sees it when it is SIGKILLed after `crashAfter` changing calls:
/// that many go through, and nothing after them reaches the disk.
final class CrashingSyscalls: Syscalls {
    let real = SystemCalls()
    let crashAfter: Int
    // The pipeline's two queues both call in.
    private let lock = NSLock()
    private var calls = 0

    init(crashAfter: Int) { self.crashAfter = crashAfter }

    var changingCalls: Int { lock.lock(); defer { lock.unlock() }; return calls }
    var crashed: Bool { changingCalls > crashAfter }

    private func step() throws {
        lock.lock(); calls += 1; lock.unlock()
        if crashed { throw Errno.ioError }
    }

    func open(_ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions, permissions: FilePermissions?) throws -> FileDescriptor {
        if mode != .readOnly { try step() } else if crashed { throw Errno.ioError }
        return try real.open(path, mode, options: options, permissions: permissions)
    }
    func read(_ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if crashed { throw Errno.ioError }
        return try real.read(descriptor, into: buffer)
    }
    func write(_ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws -> Int {
        try step()
        return try real.write(descriptor, buffer)
    }
    func fsync(_ descriptor: FileDescriptor) throws { try step(); try real.fsync(descriptor) }
    func close(_ descriptor: FileDescriptor) throws { try real.close(descriptor) }
    func rename(_ source: FilePath, to destination: FilePath) throws { try step(); try real.rename(source, to: destination) }
    func unlink(_ path: FilePath) throws { try step(); try real.unlink(path) }
    func mkdir(_ path: FilePath, permissions: FilePermissions) throws { try real.mkdir(path, permissions: permissions) }
    func lstat(_ path: FilePath) throws -> FileStatus? {
        if crashed { throw Errno.ioError }
        return try real.lstat(path)
    }
    func listDirectory(_ path: FilePath) throws -> [String] {
        if crashed { throw Errno.ioError }
        return try real.listDirectory(path)
    }
    func listDirectoryComponents(_ path: FilePath) throws -> [FilePath.Component] {
        if crashed { throw Errno.ioError }
        return try real.listDirectoryComponents(path)
    }
}

/// Holds the first write into an outbox until `release` is signalled, or 30 s pass: a pipeline
/// that inspects the next batch only after the previous one's outputs would wait that long.
final class StallingSyscalls: Syscalls {
    let real = SystemCalls()
    let release = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stalled = false
    private var released = false

    /// Whether the stalled write was released before the 30 s ran out.
    var releasedInTime: Bool { lock.lock(); defer { lock.unlock() }; return released }

    func open(_ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions, permissions: FilePermissions?) throws -> FileDescriptor {
        if mode != .readOnly && path.string.contains("/outbox/") {
            lock.lock(); let first = !stalled; stalled = true; lock.unlock()
            if first {
                let inTime = release.wait(timeout: .now() + 30) == .success
                lock.lock(); released = inTime; lock.unlock()
            }
        }
        return try real.open(path, mode, options: options, permissions: permissions)
    }
    func read(_ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try real.read(descriptor, into: buffer) }
    func write(_ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws -> Int { try real.write(descriptor, buffer) }
    func fsync(_ descriptor: FileDescriptor) throws { try real.fsync(descriptor) }
    func close(_ descriptor: FileDescriptor) throws { try real.close(descriptor) }
    func rename(_ source: FilePath, to destination: FilePath) throws { try real.rename(source, to: destination) }
    func unlink(_ path: FilePath) throws { try real.unlink(path) }
    func mkdir(_ path: FilePath, permissions: FilePermissions) throws { try real.mkdir(path, permissions: permissions) }
    func lstat(_ path: FilePath) throws -> FileStatus? { try real.lstat(path) }
    func listDirectory(_ path: FilePath) throws -> [String] { try real.listDirectory(path) }
}
