import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Synchronization
import Testing

@Suite struct ChildProcessTests {
    @Test func returnsTheChildsResult() throws {
        let parent = getpid()
        let childPID = try ChildProcess.run { () throws(ReplicaError) -> Int in Int(getpid()) }
        #expect(childPID != Int(parent) && childPID > 0)
        #expect(try ChildProcess.run { () throws(ReplicaError) in "hello from the child" } == "hello from the child")
    }

    @Test func carriesTheChildsErrorBack() {
        let error = #expect(throws: ReplicaError.self) {
            _ = try ChildProcess.run { () throws(ReplicaError) -> Bool in
                throw ReplicaError("mount", ["/src", "/dst"], errno: .EPERM, hint: "a hint")
            }
        }
        #expect(error == ReplicaError("mount", ["/src", "/dst"], errno: .EPERM, hint: "a hint"))
    }

    @Test func aProfileErrorComesBackWithItsPlace() {
        let thrown = ProfileError(file: "web.service.conf", line: 3, key: "Preserve", reason: "a bad policy")
        let error = #expect(throws: ReplicaError.self) {
            _ = try ChildProcess.run { () throws(ReplicaError) -> Bool in throw thrown }
        }
        #expect(error == thrown && error?.description == "web.service.conf:3: Preserve=: a bad policy", "\(String(describing: error))")
    }

    /// A child that writes more than a pipe holds to standard error before anything to standard
    /// output: both read at once, it finishes (read one after the other, it never would). In a
    /// child process with a deadline, so a regression fails instead of hanging the suite.
    @Test func bothPipesAreReadAtOnce() throws {
        let counts = try ChildProcess.run(timeout: .seconds(30)) { () throws(ReplicaError) -> Int in
            var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
            _ = try syscall("pipe2") { replica_pipe_cloexec(&out) }
            _ = try syscall("pipe2") { replica_pipe_cloexec(&err) }
            let outReader = OwnedFD(adopting: out[0]), outWriter = OwnedFD(adopting: out[1])
            let errReader = OwnedFD(adopting: err[0]), errWriter = OwnedFD(adopting: err[1])
            let pid = try Command.spawn(["sh", "-c", "head -c 300000 /dev/zero >&2; echo done"],
                                        output: outWriter.rawValue, errors: errWriter.rawValue)
            _ = consume outWriter
            _ = consume errWriter
            let (output, errors) = try OwnedFD.readBoth(outReader, limit: 1 << 20, errReader, limit: 100_000)
            _ = try ExitStatus.wait(for: pid)
            return output.count * 1_000_000 + errors.count
        }
        #expect(counts == 5 * 1_000_000 + 100_000, "\"done\\n\" and the error output up to its limit (the rest drained)")
    }

    @Test func aChildThatDiesWithoutAResultIsReported() {
        let error = #expect(throws: ReplicaError.self) {
            _ = try ChildProcess.run { () throws(ReplicaError) -> Bool in
                kill(getpid(), SIGKILL)
                return true
            }
        }
        #expect(error?.errno == .ECHILD)
        #expect(error?.hint?.contains("killed by signal 9") == true)
    }

    @Test func aChildPastItsDeadlineIsKilled() {
        let start = ContinuousClock.now
        let error = #expect(throws: ReplicaError.self) {
            _ = try ChildProcess.run(timeout: .milliseconds(200)) { () throws(ReplicaError) -> Bool in
                sleep(30)
                return true
            }
        }
        #expect(error?.errno == .ETIMEDOUT)
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test(.requiresRoot)
    func namespaceWorkInTheChildDoesNotReachTheParent() throws {
        // Only what this test mounts is compared: the host may mount and unmount other things meanwhile.
        let ours = { () throws -> [MountInfoEntry] in try MountInfo.read().filter { $0.source == "replica-child" } }
        let before = try ours()
        let seen = try ChildProcess.run { () throws(ReplicaError) -> Bool in
            _ = try syscall("unshare(CLONE_NEWNS)") { replica_unshare(replica_CLONE_NEWNS) }
            _ = try syscall("mount(MS_SLAVE)", "/") { mount("", "/", nil, UInt(MS_SLAVE | MS_REC), nil) }
            _ = try syscall("mount", "/mnt") { mount("replica-child", "/mnt", "tmpfs", 0, nil) }
            return try MountInfo.read().contains { $0.source == "replica-child" }
        }
        #expect(seen, "the child should see its own mount")
        #expect(try ours() == before, "the child's mount reached the parent")
    }
}

@Suite struct DedicatedThreadTests {
    static func netNamespaceInode() throws -> UInt64 { try FileStatus.of("/proc/thread-self/ns/net").inode }

    @Test func returnsTheValueAndTheError() throws {
        #expect(try DedicatedThread.run { () throws(ReplicaError) in 42 } == 42)
        #expect(throws: ReplicaError("x", errno: .EIO)) {
            try DedicatedThread.run { () throws(ReplicaError) -> Int in throw ReplicaError("x", errno: .EIO) }
        }
    }

    @Test func mapGivesEveryResultInTheItemsOrder() {
        let items = Array(0..<1_000)
        #expect(DedicatedThread.map(items, threads: 8) { $0 * 2 } == items.map { $0 * 2 })
        #expect(DedicatedThread.map([Int](), threads: 8) { $0 } == [])
    }

    /// Each of `items` waits, up to `patience`, until all have begun: only threads working at once
    /// all see the others begin.
    static func allBeganTogether(threads: Int, patience: Duration) -> [Bool] {
        let begun = Atomic<Int>(0)
        return DedicatedThread.map(Array(0..<4), threads: threads) { _ in
            begun.add(1, ordering: .relaxed)
            let deadline = ContinuousClock.now + patience
            while begun.load(ordering: .relaxed) < 4, ContinuousClock.now < deadline { usleep(1_000) }
            return begun.load(ordering: .relaxed) == 4
        }
    }

    @Test func mapWorksOnItemsAtOnceAndOneThreadIsTheCallers() {
        #expect(Self.allBeganTogether(threads: 4, patience: .seconds(10)) == [true, true, true, true])
        // The control: one thread works through them in turn, so the first waits in vain.
        #expect(Self.allBeganTogether(threads: 1, patience: .milliseconds(20)).first == false)
        let caller = pthread_self()
        #expect(DedicatedThread.map([1, 2], threads: 1) { _ in pthread_self() } == [caller, caller])
    }

    @Test(.requiresRoot)
    func aNamespaceEnteredOnTheThreadStaysThere() throws {
        let mine = try Self.netNamespaceInode()
        let theirs = try DedicatedThread.run { () throws(ReplicaError) -> UInt64 in
            _ = try syscall("unshare(CLONE_NEWNET)") { replica_unshare(replica_CLONE_NEWNET) }
            return try FileStatus.of("/proc/thread-self/ns/net").inode
        }
        #expect(theirs != mine)
        #expect(try Self.netNamespaceInode() == mine)
    }
}

@Suite struct CommandTests {
    @Test func reportsStatusAndOutput() throws {
        #expect(try Command.run(["true"]).status == .exited(0))
        #expect(try Command.run(["false"]).status == .exited(1))
        #expect(try Command.run(["sh", "-c", "echo out; echo err >&2"]).output == "out\nerr\n")
        #expect(try Command.run(["sh", "-c", "kill -9 $$"]).status == .signaled(9))
    }

    @Test func aMissingProgramSaysHowToFixIt() {
        let error = #expect(throws: ReplicaError.self) { _ = try Command.run(["replica-no-such-program"]) }
        #expect(error?.errno == .ENOENT)
        #expect(error?.hint == "install it or add it to PATH")
    }

    @Test func checkQuotesTheOutputOfAFailure() {
        let error = #expect(throws: ReplicaError.self) { try Command.check(["sh", "-c", "echo broken; exit 3"]) }
        #expect(error?.hint == "exited with status 3: broken")
    }

    @Test func theChildGetsNoneOfOurDescriptors() throws {
        // A descriptor without close-on-exec, at a number `ls` will not use for itself.
        let null = try OwnedFD.open("/dev/null", O_RDONLY)
        let leaky = fcntl(null.rawValue, F_DUPFD, 300)
        defer { close(leaky) }
        #expect(leaky >= 300)
        let listing = try Command.check(["ls", "/proc/self/fd"]).split(separator: "\n")
        #expect(!listing.contains(Substring(String(leaky))), "fds in the child: \(listing)")
    }
}

@Suite struct SystemLibraryTests {
    @Test func libcapSeesCapSysAdminExactlyWhenRoot() throws {
        #expect(try Capabilities.current().has(.sysAdmin) == (geteuid() == 0))
    }

    @Test func libseccompReportsItsVersionAndTheKernelAPI() {
        #expect(Seccomp.libraryVersion.hasPrefix("2."))
        #expect(Seccomp.apiLevel >= 1)
    }

    @Test func libsystemdAnswers() {
        // Under CI the host may or may not be booted with systemd; either answer must be consistent.
        #expect(Systemd.isBooted == (access("/run/systemd/system", F_OK) == 0))
    }
}
