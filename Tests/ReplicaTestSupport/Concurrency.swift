import Glibc
import Synchronization

/// Runs `background` over and over on its own OS thread while `body` runs, then stops it and
/// returns `body`'s result with how many times `background` ran. For race tests.
public func whileRepeating<T>(
    _ background: @escaping @Sendable () -> Void, _ body: () throws -> T
) throws -> (result: T, backgroundRuns: Int) {
    let state = RepeatState(background)
    var thread = pthread_t()
    let context = Unmanaged.passRetained(state).toOpaque()
    guard pthread_create(&thread, nil, { raw in
        let state = Unmanaged<RepeatState>.fromOpaque(raw!).takeRetainedValue()
        while !state.stop.load(ordering: .acquiring) {
            state.work()
            state.runs.add(1, ordering: .relaxed)
        }
        return nil
    }, context) == 0 else { fatalError("pthread_create failed") }
    defer {
        state.stop.store(true, ordering: .releasing)
        pthread_join(thread, nil)
    }
    let result = try body()
    return (result, state.runs.load(ordering: .relaxed))
}

private final class RepeatState: Sendable {
    let work: @Sendable () -> Void
    let stop = Atomic<Bool>(false)
    let runs = Atomic<Int>(0)
    init(_ work: @escaping @Sendable () -> Void) { self.work = work }
}
