import Glibc
import Synchronization

/// Runs a closure on a new OS thread and waits for it. Namespace changes a thread makes to itself
/// (`unshare(CLONE_NEWNET)`, `setns`) end with that thread, so they never reach the caller's thread
/// or a pooled thread that would carry them into unrelated work.
public enum DedicatedThread {
    /// Runs `body` on a new thread (`pthread_create`), waits for it (`pthread_join`) and returns its
    /// result or rethrows its error.
    public static func run<Value: Sendable>(
        _ body: @escaping @Sendable () throws(ReplicaError) -> Value
    ) throws(ReplicaError) -> Value {
        try start(body).join()
    }

    /// Starts `body` on a new thread (`pthread_create`) and returns at once: the caller does other
    /// work meanwhile, then `join`s it.
    public static func start<Value: Sendable>(
        _ body: @escaping @Sendable () throws(ReplicaError) -> Value
    ) throws(ReplicaError) -> Running<Value> {
        let outcome = Outcome<Value>()
        let work = Work { outcome.result = Result { () throws(ReplicaError) -> Value in try body() } }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(work).toOpaque()
        let created = pthread_create(&thread, nil, { raw in
            Unmanaged<Work>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Work>.fromOpaque(context).release()
            throw ReplicaError("pthread_create", errno: Errno(rawValue: created))
        }
        return Running(thread: thread, outcome: outcome)
    }

    /// `body` applied to each of `items` by up to `threads` threads of their own, each taking the
    /// next item not yet taken (none when there is one item or one thread: the caller's thread does
    /// them all); the results in the items' order. Blocking work on many items, such as one
    /// snapshot ioctl each, then overlaps in the kernel.
    public static func map<Item: Sendable, Value: Sendable>(
        _ items: [Item], threads: Int, _ body: @escaping @Sendable (Item) -> Value
    ) -> [Value] {
        let count = min(threads, items.count)
        guard count > 1 else { return items.map(body) }
        let next = Atomic<Int>(0), results = Slots<Value>(count: items.count)
        let take: @Sendable () throws(ReplicaError) -> Void = {
            while case let index = next.wrappingAdd(1, ordering: .relaxed).oldValue, index < items.count {
                results.store(body(items[index]), at: index)
            }
        }
        // A thread that cannot be made leaves its share to the others, and to the caller's thread.
        let running = (1..<count).compactMap { _ in try? start(take) }
        try? take()
        for thread in running { _ = try? thread.join() }
        return results.values()
    }

    /// One slot per item, each written by the one thread that took the item and read after every
    /// thread is joined (`pthread_join` orders the two).
    private final class Slots<Value>: @unchecked Sendable {
        private let slots: UnsafeMutableBufferPointer<Value?>
        init(count: Int) { slots = .allocate(capacity: count); slots.initialize(repeating: nil) }
        func store(_ value: Value, at index: Int) { slots[index] = value }
        func values() -> [Value] { slots.map { $0! } }
        deinit { slots.deinitialize(); slots.deallocate() }
    }

    /// A closure running on a thread of its own, joined by one owner.
    public final class Running<Value: Sendable> {
        let thread: pthread_t
        let outcome: Outcome<Value>
        var joined = false

        init(thread: pthread_t, outcome: Outcome<Value>) { (self.thread, self.outcome) = (thread, outcome) }

        /// Waits for the thread (`pthread_join`, once; later calls return the same) and returns its
        /// result or rethrows its error.
        public func join() throws(ReplicaError) -> Value {
            if !joined {
                pthread_join(thread, nil)
                joined = true
            }
            guard let result = outcome.result else { throw ReplicaError("pthread_join", errno: .ECHILD) }
            return try result.get()
        }

        deinit { if !joined { pthread_join(thread, nil) } }
    }

    /// The thread's entry point, kept non-generic for the C callback.
    private final class Work: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Written by the thread, read after `pthread_join`, which orders the two; no other access exists.
    final class Outcome<Value>: @unchecked Sendable {
        var result: Result<Value, ReplicaError>?
    }
}
