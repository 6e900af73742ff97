// DaemonSupport: what rstpmd's lines and its learning share below both of them: the
// file-system layer every file operation goes through (so tests can make the disk fail on
// purpose), and the journal events.
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// What lstat(2) says about a path; symbolic links are never followed.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case regular, directory, symbolicLink, other }
    public var kind: Kind
    public var size: Int64
    /// Modification time in nanoseconds since the epoch.
    public var modificationNanoseconds: Int64
    /// Status-change time (a rename sets it): the claim time of a file in the work directory.
    public var changeNanoseconds: Int64
    public var device: UInt64
    public var inode: UInt64

    public init(kind: Kind, size: Int64, modificationNanoseconds: Int64, changeNanoseconds: Int64, device: UInt64, inode: UInt64) {
        self.kind = kind
        self.size = size
        self.modificationNanoseconds = modificationNanoseconds
        self.changeNanoseconds = changeNanoseconds
        self.device = device
        self.inode = inode
    }
}

/// The one thin layer through which the daemon touches the file system. `SystemCalls` is the
/// real thing; tests wrap it to fail chosen calls with chosen errnos (ENOSPC, EIO) and prove
/// that no input is lost. Every method throws `Errno`.
public protocol Syscalls: AnyObject {
    func open(_ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions, permissions: FilePermissions?) throws -> FileDescriptor
    func read(_ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    func write(_ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws -> Int
    func fsync(_ descriptor: FileDescriptor) throws
    func close(_ descriptor: FileDescriptor) throws
    func rename(_ source: FilePath, to destination: FilePath) throws
    func unlink(_ path: FilePath) throws
    func mkdir(_ path: FilePath, permissions: FilePermissions) throws
    /// lstat(2); nil when the path does not exist.
    func lstat(_ path: FilePath) throws -> FileStatus?
    /// The entry names of a directory, without "." and "..".
    func listDirectory(_ path: FilePath) throws -> [String]
    /// The same, byte for byte: `listDirectory` decodes a name that is not UTF-8 with U+FFFD,
    /// a name no file has, while a component opens and renames the entry itself.
    func listDirectoryComponents(_ path: FilePath) throws -> [FilePath.Component]
    /// symlink(2): creates `path` pointing at `target` (the model store's `current`).
    func symbolicLink(_ path: FilePath, pointingTo target: FilePath) throws
    /// readlink(2); nil when the path does not exist.
    func readLink(_ path: FilePath) throws -> FilePath?
    /// link(2): a second name for a file (the training snapshot).
    func hardLink(_ source: FilePath, to destination: FilePath) throws
    /// rmdir(2) of an empty directory.
    func removeDirectory(_ path: FilePath) throws
    /// statvfs(3): the size of the file system that holds `path` and what is free on it.
    func fileSystemSpace(_ path: FilePath) throws -> FileSystemSpace
}

/// What statvfs(3) says about a file system, in bytes.
public struct FileSystemSpace: Sendable, Equatable {
    public var totalBytes: Int64
    /// Free to unprivileged users (f_bavail): what a daemon not running as root can still write.
    public var availableBytes: Int64
    /// The file system's id (f_fsid), to tell two folders on one file system.
    public var identifier: UInt64

    public init(totalBytes: Int64, availableBytes: Int64, identifier: UInt64) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
        self.identifier = identifier
    }
}

// Defaults, so that test doubles written before these calls existed still conform.
extension Syscalls {
    public func symbolicLink(_ path: FilePath, pointingTo target: FilePath) throws {
        let result = target.withPlatformString { to in path.withPlatformString { from in Glibc.symlink(to, from) } }
        if result != 0 { throw Errno(rawValue: errno) }
    }

    public func readLink(_ path: FilePath) throws -> FilePath? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = path.withPlatformString { Glibc.readlink($0, &buffer, buffer.count - 1) }
        if count < 0 {
            if errno == ENOENT { return nil }
            throw Errno(rawValue: errno)
        }
        buffer[count] = 0
        return FilePath(String(cString: buffer))
    }

    public func hardLink(_ source: FilePath, to destination: FilePath) throws {
        let result = source.withPlatformString { from in destination.withPlatformString { to in Glibc.link(from, to) } }
        if result != 0 { throw Errno(rawValue: errno) }
    }

    public func removeDirectory(_ path: FilePath) throws {
        if path.withPlatformString({ Glibc.rmdir($0) }) != 0 { throw Errno(rawValue: errno) }
    }

    public func fileSystemSpace(_ path: FilePath) throws -> FileSystemSpace {
        // statvfs(3) shares its name with its struct, which Swift cannot call; fstatvfs on the
        // opened folder says the same (every watched path is a folder).
        let descriptor = path.withPlatformString { Glibc.open($0, O_RDONLY | O_CLOEXEC | O_DIRECTORY) }
        if descriptor < 0 { throw Errno(rawValue: errno) }
        defer { Glibc.close(descriptor) }
        var status = Glibc.statvfs()
        if fstatvfs(descriptor, &status) != 0 { throw Errno(rawValue: errno) }
        let unit = Int64(status.f_frsize)
        return FileSystemSpace(totalBytes: Int64(status.f_blocks) * unit, availableBytes: Int64(status.f_bavail) * unit, identifier: UInt64(status.f_fsid))
    }

    public func listDirectoryComponents(_ path: FilePath) throws -> [FilePath.Component] {
        guard let directory = path.withPlatformString({ opendir($0) }) else { throw Errno(rawValue: errno) }
        defer { closedir(directory) }
        var components: [FilePath.Component] = []
        while let entry = readdir(directory) {
            let component = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                FilePath.Component(platformString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if let component, component.kind == .regular { components.append(component) }
        }
        return components
    }
}

/// The real system calls, through swift-system where it has them and Glibc where it does not.
public final class SystemCalls: Syscalls {
    public init() {}

    public func open(_ path: FilePath, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions, permissions: FilePermissions?) throws -> FileDescriptor {
        try FileDescriptor.open(path, mode, options: options, permissions: permissions, retryOnInterrupt: true)
    }

    public func read(_ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try descriptor.read(into: buffer, retryOnInterrupt: true)
    }

    public func write(_ descriptor: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws -> Int {
        try descriptor.write(buffer, retryOnInterrupt: true)
    }

    public func fsync(_ descriptor: FileDescriptor) throws {
        if Glibc.fsync(descriptor.rawValue) != 0 { throw Errno(rawValue: errno) }
    }

    public func close(_ descriptor: FileDescriptor) throws {
        try descriptor.close()
    }

    public func rename(_ source: FilePath, to destination: FilePath) throws {
        let result = source.withPlatformString { from in destination.withPlatformString { to in Glibc.rename(from, to) } }
        if result != 0 { throw Errno(rawValue: errno) }
    }

    public func unlink(_ path: FilePath) throws {
        if path.withPlatformString({ Glibc.unlink($0) }) != 0 { throw Errno(rawValue: errno) }
    }

    public func mkdir(_ path: FilePath, permissions: FilePermissions) throws {
        if path.withPlatformString({ Glibc.mkdir($0, permissions.rawValue) }) != 0 { throw Errno(rawValue: errno) }
    }

    public func lstat(_ path: FilePath) throws -> FileStatus? {
        var status = stat()
        if path.withPlatformString({ Glibc.lstat($0, &status) }) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw Errno(rawValue: errno)
        }
        let kind: FileStatus.Kind
        switch status.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        return FileStatus(
            kind: kind, size: Int64(status.st_size),
            modificationNanoseconds: Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec),
            changeNanoseconds: Int64(status.st_ctim.tv_sec) * 1_000_000_000 + Int64(status.st_ctim.tv_nsec),
            device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }

    public func listDirectory(_ path: FilePath) throws -> [String] {
        guard let directory = path.withPlatformString({ opendir($0) }) else { throw Errno(rawValue: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// `name + suffix` when that fits in a file name (255 bytes), else as much of `name` as fits
/// (whole characters), `~`, 16 hex digits of a hash of the whole name, and `suffix`. Names
/// derived from an input's name (its verdict, heatmap, temporary files) can then always be
/// created, whatever the input is called, and two long names that share a start stay apart.
public func fittingFileName(_ name: String, suffix: String) -> String {
    let limit = 255
    if name.utf8.count + suffix.utf8.count <= limit { return name + suffix }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a: spreads names, no secret to keep
    for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
    let digits = String(hash, radix: 16)
    let tag = "~" + String(repeating: "0", count: 16 - digits.count) + digits
    let room = limit - suffix.utf8.count - tag.utf8.count
    var kept = 0
    var end = name.startIndex
    for character in name {
        let size = character.utf8.count
        if kept + size > room { break }
        kept += size
        end = name.index(after: end)
    }
    return String(name[..<end]) + tag + suffix
}

/// Durable file operations composed from `Syscalls`.
public struct FileOperations {
    public let syscalls: any Syscalls

    public init(syscalls: any Syscalls) {
        self.syscalls = syscalls
    }

    /// Reads a whole regular file without following a symbolic link (O_NOFOLLOW), refusing
    /// more than `maximumBytes`.
    public func readFile(_ path: FilePath, maximumBytes: Int) throws -> [UInt8] {
        let descriptor = try syscalls.open(path, .readOnly, options: [.noFollow, .closeOnExec], permissions: nil)
        defer { try? syscalls.close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try chunk.withUnsafeMutableBytes { try syscalls.read(descriptor, into: $0) }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maximumBytes { throw Errno.fileTooLarge }
        }
        return bytes
    }

    /// Writes `bytes` so that a reader sees either the old file or the whole new one, and a
    /// power cut after return keeps it: a temporary name in the same directory, fsync, rename,
    /// fsync of the directory. The temporary file is removed if any step fails.
    public func writeDurably(_ bytes: [UInt8], to path: FilePath) throws {
        let temporary = path.removingLastComponent().appending(fittingFileName(".\(path.lastComponent?.string ?? "out")", suffix: ".rstpmd.tmp"))
        do {
            let descriptor = try syscalls.open(temporary, .writeOnly, options: [.create, .truncate, .closeOnExec, .noFollow], permissions: [.ownerReadWrite, .groupRead, .otherRead])
            do {
                var offset = 0
                try bytes.withUnsafeBytes { raw in
                    while offset < raw.count {
                        let written = try syscalls.write(descriptor, UnsafeRawBufferPointer(rebasing: raw[offset...]))
                        if written <= 0 { throw Errno.ioError }
                        offset += written
                    }
                }
                try syscalls.fsync(descriptor)
                try syscalls.close(descriptor)
            } catch {
                try? syscalls.close(descriptor)
                throw error
            }
            try syscalls.rename(temporary, to: path)
        } catch {
            try? syscalls.unlink(temporary)
            throw error
        }
        try syncDirectory(path.removingLastComponent())
    }

    /// Makes a rename or unlink in `directory` survive a power cut.
    public func syncDirectory(_ directory: FilePath) throws {
        let descriptor = try syscalls.open(directory, .readOnly, options: [.directory, .closeOnExec], permissions: nil)
        defer { try? syscalls.close(descriptor) }
        try syscalls.fsync(descriptor)
    }

    /// Removes a directory tree without following symbolic links in it. Not atomic: callers
    /// first rename the tree to a name nothing else reads.
    public func removeTree(_ path: FilePath) throws {
        guard let status = try syscalls.lstat(path) else { return }
        if status.kind != .directory {
            try syscalls.unlink(path)
            return
        }
        for name in try syscalls.listDirectory(path) { try removeTree(path.appending(name)) }
        try syscalls.removeDirectory(path)
    }

    /// Creates a directory and its missing parents.
    public func createDirectories(_ path: FilePath) throws {
        if let status = try syscalls.lstat(path) {
            if status.kind == .directory { return }
            throw Errno.notDirectory
        }
        let parent = path.removingLastComponent()
        if parent != path && !parent.isEmpty { try createDirectories(parent) }
        do {
            try syscalls.mkdir(path, permissions: [.ownerReadWriteExecute, .groupReadExecute])
        } catch Errno.fileExists {
            return
        }
    }
}
