import CReplicaShim
import Glibc
import ReplicaKit

extension Store {
    /// Sends to `target` every snapshot of subvolume `name` it does not hold yet, oldest first:
    /// each incrementally from the newest older snapshot the target has a copy of (matched by the
    /// copy's received uuid to our snapshot's uuid), full only when it has none — `btrfs send -p
    /// PARENT SNAPSHOT | btrfs receive TARGET/NAME` with the kernel's `BTRFS_IOC_SEND`. Copies left
    /// by an interrupted receive are removed first (by id). Holds the subvolume's lock (as snapshot
    /// runs do); a dry run takes none and sends nothing. Never throws: the report says what happened;
    /// the first snapshot that fails ends the run (the later ones would depend on it).
    public func send(_ name: String, to target: ReplicationTarget, dryRun: Bool = false, wait: Duration? = nil) -> ReplicationReport {
        if dryRun { return sendHoldingLock(name, to: target, dryRun: true) }
        do throws(ReplicaError) {
            let lock = try SubvolumeLock.acquire(name, in: self, wait: wait)
            defer { _ = lock.subvolume }  // held until the last snapshot is sent
            return sendHoldingLock(name, to: target, dryRun: false)
        } catch {
            var report = ReplicationReport(subvolume: name, target: target.description)
            report.error = error
            return report
        }
    }

    /// `send`, for a caller that holds the subvolume's lock already (a snapshot run).
    func sendHoldingLock(_ name: String, to target: ReplicationTarget, dryRun: Bool) -> ReplicationReport {
        var report = ReplicationReport(subvolume: name, target: target.description)
        do throws(ReplicaError) {
            let side = TargetSide(target: target, subvolume: name)
            let snapshots = try self.snapshots(of: name)
            let (copies, cleaned) = try side.prepare(dryRun: dryRun)
            report.cleaned = cleaned
            let plan = SendPlan(uuids: snapshots.map(\.info.uuid), held: Set(copies.filter(\.readOnly).compactMap(\.receivedUUID)))
            for step in plan.steps {
                switch step {
                case .alreadyThere(let index):
                    report.alreadyThere.append(snapshots[index].name.description)
                case .send(let index, let parent):
                    let parent = parent.map { snapshots[$0] }
                    var sent = ReplicationReport.Sent(name: snapshots[index].name.description, parent: parent?.name.description)
                    if !dryRun {
                        do throws(ReplicaError) { try side.receive(snapshots[index], parent: parent, from: self) } catch {
                            sent.error = error
                            report.sent.append(sent)
                            return report  // the later ones would be sent from this one
                        }
                    }
                    report.sent.append(sent)
                }
            }
        } catch {
            report.error = error
        }
        return report
    }

    /// Removes the copies interrupted receives left in `target`'s folder for `name`.
    public func cleanTarget(_ name: String, _ target: ReplicationTarget) throws(ReplicaError) -> [String] {
        try TargetSide(target: target, subvolume: name).prepare(dryRun: false).cleaned
    }

    /// Writes the send stream of `snapshot` (incremental from `parent`, full when nil) into `output`
    /// (`btrfs send [-p PARENT] SNAPSHOT > OUTPUT`, through the kernel's `BTRFS_IOC_SEND`), with
    /// SIGPIPE held back on this thread: a reader that goes away makes it fail with EPIPE instead
    /// of killing the process. Blocks until the whole stream is written.
    public func writeStream(of snapshot: Snapshot, parent: Snapshot?, to output: Int32) throws(ReplicaError) {
        guard snapshot.info.isReadOnly else {
            throw ReplicaError("send", [snapshot.name.description], errno: .EINVAL, hint: "is writable; only read-only snapshots are sent", reason: .refused)
        }
        let source = try directory("\(Store.snapshotsDirectory)/\(snapshot.name.subvolume)/\(snapshot.name)")
        var block = sigset_t(), previous = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &block, &previous)
        let result = replica_btrfs_send(source.rawValue, output, parent?.info.id ?? 0)
        let errno = Errno.current
        var pending = sigset_t()
        sigpending(&pending)
        if sigismember(&pending, SIGPIPE) == 1 {
            var none = timespec()
            _ = sigtimedwait(&block, nil, &none)
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        guard result == 0 else {
            throw ReplicaError("ioctl(BTRFS_IOC_SEND)", [snapshot.name.description], errno: errno,
                               hint: errno == .EPIPE ? "the receiving side stopped reading" : nil, reason: .system)
        }
    }
}

/// One target folder for one subvolume, on this host or through ssh.
struct TargetSide {
    let target: ReplicationTarget
    let subvolume: String

    /// The folder of this subvolume's copies: `TARGET/NAME`.
    var folder: String {
        switch target.location {
        case .local(let path), .ssh(_, _, _, let path): "\(path)/\(subvolume)"
        }
    }

    /// `ssh [-p PORT] [USER@]HOST -- replica-snap receive ARGUMENTS`, quoted for the remote shell.
    /// `$REPLICA_SSH` replaces `ssh` (split at spaces, e.g. `ssh -F /etc/replica/ssh_config`).
    func ssh(_ arguments: [String]) -> [String] {
        guard case .ssh(let user, let host, let port, _) = target.location else { return [] }
        let program = getenv("REPLICA_SSH").map { String(cString: $0).split(separator: " ").map(String.init) }.flatMap { $0.isEmpty ? nil : $0 }
        return (program ?? ["ssh"]) + ["-o", "BatchMode=yes"] + (port.map { ["-p", "\($0)"] } ?? []) + [(user.map { "\($0)@" } ?? "") + host, "--",
                RemoteCommand.quote(["replica-snap", "receive", "--json"] + arguments)]
    }

    /// The copies already there and the interrupted receives removed (none removed for a dry run).
    func prepare(dryRun: Bool) throws(ReplicaError) -> (copies: [TargetCopy], cleaned: [String]) {
        switch target.location {
        case .local:
            if dryRun, access(folder, F_OK) != 0 { return ([], []) }
            let fd = try Receiver.openFolder(folder)
            let cleaned = dryRun ? [] : try Receiver.clean(fd, path: folder)
            return (try Receiver.copies(in: fd, path: folder), cleaned)
        case .ssh:
            let answer = try remote(ssh((dryRun ? ["--list-only"] : ["--list"]) + [folder]))
            let copies = (answer["copies"]?.array ?? []).compactMap(TargetCopy.init(json:))
            return (copies, (answer["cleaned"]?.array ?? []).compactMap(\.string))
        }
    }

    /// Deletes these copies from the folder, each by its id once its name still leads to that id.
    func delete(_ copies: [TargetCopy]) throws(ReplicaError) -> [String] {
        guard !copies.isEmpty else { return [] }
        switch target.location {
        case .local:
            let fd = try Receiver.openFolder(folder)
            return try Receiver.delete(copies, in: fd, path: folder)
        case .ssh:
            let answer = try remote(ssh(copies.flatMap { ["--delete", $0.deletionRequest] } + [folder]))
            return (answer["deleted"]?.array ?? []).compactMap(\.string)
        }
    }

    /// Sends one snapshot and waits until the target has verified it.
    func receive(_ snapshot: Snapshot, parent: Snapshot?, from store: borrowing Store) throws(ReplicaError) {
        var pipe: [Int32] = [-1, -1]
        _ = try syscall("pipe2") { replica_pipe_cloexec(&pipe) }
        let writer = OwnedFD(adopting: pipe[1])
        switch target.location {
        case .local:
            let pending = try Receiver.begin(from: OwnedFD(adopting: pipe[0]), into: folder, name: snapshot.name.description,
                                             sourceUUID: snapshot.info.uuid)
            var sendError: ReplicaError?
            do throws(ReplicaError) { try store.writeStream(of: snapshot, parent: parent, to: writer.rawValue) } catch { sendError = error }
            _ = consume writer
            let copy = try pending.finish()
            if let sendError { throw sendError }
            _ = copy
        case .ssh:
            let process: RemoteProcess
            do {
                let reader = OwnedFD(adopting: pipe[0])  // ssh's copy only, once it is started
                process = try startRemote(ssh(["--name", snapshot.name.description, "--uuid", snapshot.info.uuid, folder]),
                                          input: reader.rawValue)
            }
            var sendError: ReplicaError?
            do throws(ReplicaError) { try store.writeStream(of: snapshot, parent: parent, to: writer.rawValue) } catch { sendError = error }
            _ = consume writer  // the end of the stream
            let answer = try process.finish(target)
            if let sendError { throw sendError }
            guard let copy = answer["copy"].flatMap(TargetCopy.init(json:)), copy.isCopy(of: snapshot.info.uuid) else {
                throw ReplicaError("receive", ["\(target)/\(subvolume)/\(snapshot.name)"], errno: .EIO,
                                   hint: "the target did not confirm a read-only copy received from \(snapshot.info.uuid)", reason: .system)
            }
        }
    }

    /// Runs `replica-snap receive` on the other host and returns its JSON answer.
    func remote(_ command: [String]) throws(ReplicaError) -> JSON {
        try startRemote(command, input: nil).finish(target)
    }

    /// Starts `command` (ssh) with standard input from `input` (nil: none), its output and errors captured.
    func startRemote(_ command: [String], input: Int32?) throws(ReplicaError) -> RemoteProcess {
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        _ = try syscall("pipe2") { replica_pipe_cloexec(&out) }
        let outReader = OwnedFD(adopting: out[0])
        let outWriter = OwnedFD(adopting: out[1])
        _ = try syscall("pipe2") { replica_pipe_cloexec(&err) }
        let errReader = OwnedFD(adopting: err[0])
        let errWriter = OwnedFD(adopting: err[1])
        let pid = try Command.spawn(command, input: input, output: outWriter.rawValue, errors: errWriter.rawValue)
        _ = consume outWriter
        _ = consume errWriter
        return RemoteProcess(pid: pid, output: outReader, errors: errReader)
    }
}

/// `replica-snap receive` running on the other end of ssh.
struct RemoteProcess: ~Copyable {
    let pid: pid_t
    let output: OwnedFD
    let errors: OwnedFD

    /// Waits for it and returns the JSON it printed; its failure (or ssh's) as an error.
    consuming func finish(_ target: ReplicationTarget) throws(ReplicaError) -> JSON {
        let (printed, stderr) = (try? OwnedFD.readBoth(output, limit: 16 << 20, errors, limit: 64 << 10)) ?? ([], [])
        let said = String(decoding: stderr, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: "; ")
        let status = try ExitStatus.wait(for: pid)
        guard status.isSuccess, let answer = try? JSON.parse(String(decoding: printed, as: UTF8.self)) else {
            throw ReplicaError("ssh", [target.description], errno: .EIO,
                               hint: "\(status)\(said.isEmpty ? "" : ": \(said)")" + (status == .exited(255) ? " (ssh could not reach the host)" : ""),
                               reason: .system)
        }
        return answer
    }
}

extension TargetCopy {
    /// The copy as `replica-snap receive --json` describes it.
    init?(json: JSON) {
        guard let name = json["name"]?.string, case .int(let id)? = json["id"], case .bool(let readOnly)? = json["read_only"] else { return nil }
        self.init(name: name, id: UInt64(id), receivedUUID: json["received_uuid"]?.string, readOnly: readOnly)
    }

    /// The copy as `replica-snap receive --json` prints it.
    public var json: JSON {
        .object([("name", .string(name)), ("id", .int(Int64(id))), ("received_uuid", receivedUUID.map(JSON.string) ?? .null),
                 ("read_only", .bool(readOnly))])
    }
}
