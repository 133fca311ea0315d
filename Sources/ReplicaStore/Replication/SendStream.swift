import CReplicaShim
import Glibc
import ReplicaKit

/// A btrfs send stream (what `btrfs send` writes, versions 1 and 2) read one command at a time from
/// a descriptor: the header, then commands of type-length-value attributes, each checked against its
/// CRC-32C before anything reads it. Nothing in it is trusted: a length past the command, a second
/// header, a path with `..`, a NUL or a leading `/` is a refusal naming the command, never acted on.
public struct SendStream: ~Copyable {
    /// `btrfs_send_cmd`: what a command asks for.
    public enum Command: UInt16, Sendable {
        /// `BTRFS_SEND_C_SUBVOL`: begin a new subvolume: a full stream.
        case subvolume = 1
        /// `BTRFS_SEND_C_SNAPSHOT`: begin a snapshot of a parent the target holds: an incremental stream.
        case snapshot = 2
        /// `BTRFS_SEND_C_MKFILE`: create a regular file.
        case makeFile = 3
        /// `BTRFS_SEND_C_MKDIR`: create a directory.
        case makeDirectory = 4
        /// `BTRFS_SEND_C_MKNOD`: create a device node.
        case makeNode = 5
        /// `BTRFS_SEND_C_MKFIFO`: create a FIFO.
        case makeFIFO = 6
        /// `BTRFS_SEND_C_MKSOCK`: create a socket file.
        case makeSocket = 7
        /// `BTRFS_SEND_C_SYMLINK`: create a symbolic link.
        case symlink = 8
        /// `BTRFS_SEND_C_RENAME`: rename a path.
        case rename = 9
        /// `BTRFS_SEND_C_LINK`: make a hard link.
        case link = 10
        /// `BTRFS_SEND_C_UNLINK`: remove a name.
        case unlink = 11
        /// `BTRFS_SEND_C_RMDIR`: remove a directory.
        case removeDirectory = 12
        /// `BTRFS_SEND_C_SET_XATTR`: set an extended attribute.
        case setXattr = 13
        /// `BTRFS_SEND_C_REMOVE_XATTR`: remove an extended attribute.
        case removeXattr = 14
        /// `BTRFS_SEND_C_WRITE`: write data at an offset.
        case write = 15
        /// `BTRFS_SEND_C_CLONE`: share a range of another file's data.
        case clone = 16
        /// `BTRFS_SEND_C_TRUNCATE`: set a file's size.
        case truncate = 17
        /// `BTRFS_SEND_C_CHMOD`: set the mode.
        case chmod = 18
        /// `BTRFS_SEND_C_CHOWN`: set the owner and group.
        case chown = 19
        /// `BTRFS_SEND_C_UTIMES`: set the access and modification times.
        case utimes = 20
        /// `BTRFS_SEND_C_END`: the end of the stream.
        case end = 21
        /// `BTRFS_SEND_C_UPDATE_EXTENT`: an extent changed (a stream without data).
        case updateExtent = 22
        /// `BTRFS_SEND_C_FALLOCATE`: allocate or punch a range (version 2).
        case fallocate = 23
        /// `BTRFS_SEND_C_FILEATTR`: inode flags (version 2; btrfs receive ignores them too).
        case fileAttributes = 24
        /// `BTRFS_SEND_C_ENCODED_WRITE`: compressed data as stored (version 2).
        case encodedWrite = 25
        /// `BTRFS_SEND_C_ENABLE_VERITY`: enable fs-verity (version 3).
        case enableVerity = 26
    }

    /// `BTRFS_SEND_A_*`: the attributes commands carry.
    public enum Attribute: UInt16, Sendable {
        /// `BTRFS_SEND_A_UUID`: a subvolume's uuid.
        case uuid = 1
        /// `BTRFS_SEND_A_CTRANSID`: its transaction on the sender.
        case ctransid = 2
        /// `BTRFS_SEND_A_INO`: an inode number.
        case inode = 3
        /// `BTRFS_SEND_A_SIZE`: a size in bytes.
        case size = 4
        /// `BTRFS_SEND_A_MODE`: a file mode.
        case mode = 5
        /// `BTRFS_SEND_A_UID`: an owner.
        case uid = 6
        /// `BTRFS_SEND_A_GID`: a group.
        case gid = 7
        /// `BTRFS_SEND_A_RDEV`: a device number.
        case rdev = 8
        /// `BTRFS_SEND_A_CTIME`: the change time.
        case ctime = 9
        /// `BTRFS_SEND_A_MTIME`: the modification time.
        case mtime = 10
        /// `BTRFS_SEND_A_ATIME`: the access time.
        case atime = 11
        /// `BTRFS_SEND_A_OTIME`: the creation time.
        case otime = 12
        /// `BTRFS_SEND_A_XATTR_NAME`: an extended attribute's name.
        case xattrName = 13
        /// `BTRFS_SEND_A_XATTR_DATA`: its value.
        case xattrData = 14
        /// `BTRFS_SEND_A_PATH`: the path a command acts on.
        case path = 15
        /// `BTRFS_SEND_A_PATH_TO`: a rename's new path.
        case pathTo = 16
        /// `BTRFS_SEND_A_PATH_LINK`: a link's target or existing path.
        case pathLink = 17
        /// `BTRFS_SEND_A_FILE_OFFSET`: an offset in the file.
        case fileOffset = 18
        /// `BTRFS_SEND_A_DATA`: the data written.
        case data = 19
        /// `BTRFS_SEND_A_CLONE_UUID`: the uuid of a clone's source (or a snapshot's parent).
        case cloneUUID = 20
        /// `BTRFS_SEND_A_CLONE_CTRANSID`: that source's transaction.
        case cloneCtransid = 21
        /// `BTRFS_SEND_A_CLONE_PATH`: the clone source's path in it.
        case clonePath = 22
        /// `BTRFS_SEND_A_CLONE_OFFSET`: the offset in the clone source.
        case cloneOffset = 23
        /// `BTRFS_SEND_A_CLONE_LEN`: the length cloned (0: to the end).
        case cloneLength = 24
        /// `BTRFS_SEND_A_FALLOCATE_MODE`: fallocate's mode (version 2).
        case fallocateMode = 25
        /// `BTRFS_SEND_A_FILEATTR`: inode flags (version 2).
        case fileAttributes = 26
    }

    /// `btrfs-stream\0`, then the version (little-endian 32 bits).
    public static let magic: [UInt8] = Array("btrfs-stream".utf8) + [0]
    /// The size of a command's header: length (32 bits), command (16), CRC-32C (32).
    public static let commandHeaderSize = 10
    /// No command is larger: version 1 sends up to 64 KiB, version 2 up to 16 KiB + 128 KiB of compressed data.
    static let largestCommand = 1 << 20

    let fd: Int32
    /// The stream's version: 1 or 2.
    public let version: UInt32
    /// The current command, its header included; its attributes point into it.
    var buffer: [UInt8] = []
    var attributes: [(type: UInt16, range: Range<Int>)] = []
    /// The current command.
    public private(set) var command: Command = .end
    /// The current command's place in the stream (1 for the first), for messages.
    public private(set) var index = 0

    /// Reads and checks the stream's header from `fd`.
    public init(reading fd: Int32) throws(ReplicaError) {
        var header = [UInt8](repeating: 0, count: Self.magic.count + 4)
        guard try Self.read(fd, into: &header, 0..<header.count) == header.count else {
            throw Self.refusal("the stream ends before its header: it is empty or truncated")
        }
        guard Array(header[0..<Self.magic.count]) == Self.magic else { throw Self.refusal("it does not start with btrfs-stream: not a send stream") }
        let version = UInt32(Self.le(header, Self.magic.count, 4))
        guard version == 1 || version == 2 else {
            throw Self.refusal("it is version \(version) of the send stream format; this receiver reads versions 1 and 2")
        }
        (self.fd, self.version) = (fd, version)
    }

    /// Reads the next command; false at the end of the input, which may only come between commands.
    public mutating func next() throws(ReplicaError) -> Bool {
        index += 1
        if buffer.count < Self.commandHeaderSize { buffer = [UInt8](repeating: 0, count: 64 << 10) }
        let got = try Self.read(fd, into: &buffer, 0..<Self.commandHeaderSize)
        if got == 0 { return false }
        guard got == Self.commandHeaderSize else { throw refusal("the stream ends inside a command's header: it is truncated") }
        let length = Int(Self.le(buffer, 0, 4)), kind = UInt16(Self.le(buffer, 4, 2)), crc = UInt32(Self.le(buffer, 6, 4))
        guard length <= Self.largestCommand else { throw refusal("a command claims \(length) bytes: garbled") }
        guard let known = Command(rawValue: kind) else { throw refusal("unknown command \(kind): garbled, or a newer format") }
        let total = Self.commandHeaderSize + length
        if buffer.count < total { buffer += [UInt8](repeating: 0, count: total - buffer.count) }
        guard try Self.read(fd, into: &buffer, Self.commandHeaderSize..<total) == length else {
            throw refusal("the stream ends inside a \(known) command: it is truncated")
        }
        for offset in 6..<10 { buffer[offset] = 0 }
        guard Self.checksum(buffer[0..<total]) == crc else { throw refusal("a \(known) command's checksum does not match its bytes: garbled") }
        command = known
        attributes.removeAll(keepingCapacity: true)
        var offset = Self.commandHeaderSize
        while offset < total {
            guard offset + 2 <= total else { throw refusal("an attribute runs past its \(known) command: garbled") }
            let type = UInt16(Self.le(buffer, offset, 2))
            if version >= 2, type == Attribute.data.rawValue {  // version 2: data has no length and runs to the end
                attributes.append((type, offset + 2..<total))
                break
            }
            guard offset + 4 <= total else { throw refusal("an attribute runs past its \(known) command: garbled") }
            let size = Int(Self.le(buffer, offset + 2, 2))
            guard offset + 4 + size <= total else { throw refusal("an attribute runs past its \(known) command: garbled") }
            attributes.append((type, offset + 4..<offset + 4 + size))
            offset += 4 + size
        }
        return true
    }

    /// Whether the input ends here (it is read: call it only after the end command).
    public func isAtEnd() throws(ReplicaError) -> Bool {
        var byte: [UInt8] = [0]
        return try Self.read(fd, into: &byte, 0..<1) == 0
    }

    /// The bytes of an attribute of the current command; refused when it is missing.
    public func bytes(_ attribute: Attribute) throws(ReplicaError) -> ArraySlice<UInt8> {
        guard let found = attributes.first(where: { $0.type == attribute.rawValue }) else {
            throw refusal("a \(command) command lacks its \(attribute) attribute: garbled")
        }
        return buffer[found.range]
    }

    /// Whether the current command carries an attribute.
    public func has(_ attribute: Attribute) -> Bool { attributes.contains { $0.type == attribute.rawValue } }

    /// An unsigned integer attribute (8, 16, 32 or 64 bits, little-endian).
    public func integer(_ attribute: Attribute) throws(ReplicaError) -> UInt64 {
        let value = try bytes(attribute)
        guard [1, 2, 4, 8].contains(value.count) else { throw refusal("a \(command) command's \(attribute) is \(value.count) bytes: garbled") }
        return Self.le(buffer, value.startIndex, value.count)
    }

    /// A uuid attribute (16 bytes).
    public func uuid(_ attribute: Attribute) throws(ReplicaError) -> [UInt8] {
        let value = try bytes(attribute)
        guard value.count == 16 else { throw refusal("a \(command) command's \(attribute) is \(value.count) bytes: garbled") }
        return Array(value)
    }

    /// A time attribute (64-bit seconds, 32-bit nanoseconds).
    public func time(_ attribute: Attribute) throws(ReplicaError) -> timespec {
        let value = try bytes(attribute)
        guard value.count == 12 else { throw refusal("a \(command) command's \(attribute) is \(value.count) bytes: garbled") }
        let nanoseconds = Self.le(buffer, value.startIndex + 8, 4)
        guard nanoseconds < 1_000_000_000 else { throw refusal("a \(command) command's \(attribute) has \(nanoseconds) ns: garbled") }
        return timespec(tv_sec: Int(Int64(bitPattern: Self.le(buffer, value.startIndex, 8))), tv_nsec: Int(nanoseconds))
    }

    /// A path inside the subvolume being received: relative, no empty, `.` or `..` component, no NUL;
    /// empty for the subvolume's root. The raw bytes: names need not be UTF-8.
    public func path(_ attribute: Attribute) throws(ReplicaError) -> [UInt8] {
        let value = Array(try bytes(attribute))
        if value.isEmpty { return value }
        guard value.count < PATH_MAX, !value.contains(0), value.first != UInt8(ascii: "/"),
              !value.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).contains(where: {
                  $0.isEmpty || $0.elementsEqual([UInt8(ascii: ".")]) || $0.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")])
              })
        else {
            throw refusal("a \(command) command names \"\(Self.shown(value))\": a path must stay inside the subvolume "
                          + "(relative, without . or .. or empty parts)")
        }
        return value
    }

    /// A command's CRC-32C as a send stream carries it (seed 0, no inversion), over its header with
    /// the checksum field zero and its attributes.
    public static func checksum(_ command: ArraySlice<UInt8>) -> UInt32 {
        command.withUnsafeBytes { replica_crc32c(0, $0.baseAddress, $0.count) }
    }

    /// The refusal of this stream at the current command.
    public func refusal(_ why: String) -> ReplicaError {
        ReplicaError("receive", ["command \(index)"], errno: .EBADMSG, hint: why, reason: .refused)
    }

    static func refusal(_ why: String) -> ReplicaError { ReplicaError("receive", errno: .EBADMSG, hint: why, reason: .refused) }

    /// A name for messages: the bytes as UTF-8, invalid ones replaced.
    public static func shown(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    /// A little-endian unsigned integer of `size` bytes at `offset`.
    static func le(_ bytes: [UInt8], _ offset: Int, _ size: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
        return value
    }

    /// Reads until `range` is filled or the input ends; returns how much was read.
    static func read(_ fd: Int32, into buffer: inout [UInt8], _ range: Range<Int>) throws(ReplicaError) -> Int {
        var done = 0
        while done < range.count {
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + range.lowerBound + done, range.count - done) }
            if got == 0 { break }
            if got < 0 {
                if errno == EINTR { continue }
                throw ReplicaError.current("read", ["the send stream"])
            }
            done += got
        }
        return done
    }
}
