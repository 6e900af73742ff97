import Foundation

/// The model that serves a line, and the one waiting to replace it: a model swap (a promotion
/// or a rollback in the line's model store) is handed in from any queue and taken by the line
/// between batches, so the running batch finishes with the model it started with.
public final class ServingModel {
    private let lock = NSLock()
    private var serving: AnyInspector
    private var pending: AnyInspector?
    /// Counts the swaps taken, so that a batch prepared before a swap is known.
    private var swaps = 0

    public init(_ inspector: AnyInspector) {
        serving = inspector
    }

    /// Serves `inspector` from the next batch on. Callable from any queue.
    public func replace(with inspector: AnyInspector) {
        lock.lock(); pending = inspector; lock.unlock()
    }

    /// The model that serves now, and its generation.
    public var current: (inspector: AnyInspector, generation: Int) {
        lock.lock(); defer { lock.unlock() }
        return (serving, swaps)
    }

    /// The identity of the model that serves the next batch.
    public var nextIdentity: ModelIdentity {
        lock.lock(); defer { lock.unlock() }
        return (pending ?? serving).modelIdentity
    }

    public var hasPending: Bool {
        lock.lock(); defer { lock.unlock() }
        return pending != nil
    }

    /// Makes the waiting model the serving one; returns it with the identity of the one it
    /// replaced, or nil when none waited. Call between batches.
    public func takePending() -> (new: AnyInspector, old: ModelIdentity)? {
        lock.lock(); defer { lock.unlock() }
        guard let next = pending else { return nil }
        let old = serving.modelIdentity
        serving = next
        pending = nil
        swaps += 1
        return (next, old)
    }
}
