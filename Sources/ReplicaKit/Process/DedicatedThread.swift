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
        pthread_join(thread, nil)
        guard let result = outcome.result else { throw ReplicaError("pthread_join", errno: .ECHILD) }
        return try result.get()
    }

    /// The thread's entry point, kept non-generic for the C callback.
    private final class Work: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Written by the thread, read after `pthread_join`, which orders the two; no other access exists.
    private final class Outcome<Value>: @unchecked Sendable {
        var result: Result<Value, ReplicaError>?
    }
}
