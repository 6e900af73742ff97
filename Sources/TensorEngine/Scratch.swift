import Foundation

/// Reusable scratch memory (im2col columns, gathered gradients), so that large temporary
/// buffers are not page-faulted in again on every forward. Thread-safe: each caller gets a
/// buffer of its own for the duration of the closure.
enum ScratchPool {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [UnsafeMutableBufferPointer<Float>] = []
    private static let keptBuffers = 4

    static func withBuffer<Result>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> Result) -> Result {
        let buffer = take(count: max(1, count))
        defer { giveBack(buffer) }
        return body(buffer.baseAddress!)
    }

    private static func take(count: Int) -> UnsafeMutableBufferPointer<Float> {
        lock.lock()
        defer { lock.unlock() }
        if let index = free.firstIndex(where: { $0.count >= count }) {
            return free.remove(at: index)
        }
        return UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
    }

    private static func giveBack(_ buffer: UnsafeMutableBufferPointer<Float>) {
        lock.lock()
        defer { lock.unlock() }
        free.append(buffer)
        if free.count > keptBuffers {
            // Keep the largest buffers: they are the expensive ones to fault in again.
            free.sort { $0.count > $1.count }
            free.removeLast().deallocate()
        }
    }
}
