import Glibc

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
