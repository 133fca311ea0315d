// CReplicaShim: the few things Swift's Glibc module does not give Replica.
//
// Swift imports glibc without _GNU_SOURCE, so Linux-only calls and constants (unshare, setns,
// O_PATH, pipe2, renameat2 ...) are missing, raw syscalls (openat2, open_tree, move_mount,
// mount_setattr, fsopen ...) have no glibc wrapper usable from Swift (syscall(2) is variadic),
// ioctl(2) is variadic, and some kernel structs are easier to fill in C. Every function here is a
// thin, prefixed pass-through: it returns what the call returns and leaves errno as the call set it
// (-1 + errno). Constants are exported as `extern const` values compiled with the real headers, so
// no value is copied by hand.
#ifndef REPLICA_SHIM_H
#define REPLICA_SHIM_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>  // fgetxattr/fsetxattr: Glibc's module map leaves sys/xattr.h out

// MARK: namespaces (sched.h under _GNU_SOURCE)
extern const int replica_CLONE_NEWNS, replica_CLONE_NEWNET, replica_CLONE_NEWPID, replica_CLONE_NEWUTS,
    replica_CLONE_NEWIPC, replica_CLONE_NEWUSER, replica_CLONE_NEWCGROUP;
/// unshare(2): move the calling thread into new namespaces.
int replica_unshare(int flags);
/// setns(2): join the namespace referred to by fd.
int replica_setns(int fd, int nstype);

// MARK: files (fcntl.h / stdio.h under _GNU_SOURCE)
extern const int replica_O_PATH, replica_O_TMPFILE, replica_AT_EMPTY_PATH, replica_AT_RECURSIVE;
extern const unsigned int replica_RENAME_EXCHANGE, replica_RENAME_NOREPLACE;
/// pipe2(2) with O_CLOEXEC.
int replica_pipe_cloexec(int fds[2]);
/// renameat2(2): RENAME_EXCHANGE swaps two paths atomically, RENAME_NOREPLACE refuses to overwrite.
int replica_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// Filesystem magic numbers from linux/magic.h, for fstatfs f_type checks.
extern const int64_t replica_BTRFS_SUPER_MAGIC, replica_PROC_SUPER_MAGIC, replica_TMPFS_MAGIC, replica_OVERLAYFS_SUPER_MAGIC;
/// fstatfs(2), returning only f_type (the filesystem magic) in *type. struct statfs clashes with
/// the statfs function name in Swift's importer.
int replica_fstatfs_type(int fd, int64_t *type);
/// fstatfs(2): free and total bytes available to unprivileged users (f_bavail, f_blocks scaled by f_bsize).
int replica_fstatfs_space(int fd, uint64_t *avail_bytes, uint64_t *total_bytes, uint64_t *mount_flags);

// MARK: openat2(2) (Linux 5.6); no glibc wrapper
extern const uint64_t replica_RESOLVE_NO_XDEV, replica_RESOLVE_NO_MAGICLINKS, replica_RESOLVE_NO_SYMLINKS,
    replica_RESOLVE_BENEATH, replica_RESOLVE_IN_ROOT;
/// openat2(2) with a struct open_how built from its three fields.
int replica_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

// MARK: new mount API (Linux 5.2, mount_setattr 5.12); no usable glibc wrappers from Swift
extern const unsigned int replica_OPEN_TREE_CLONE, replica_OPEN_TREE_CLOEXEC, replica_MOVE_MOUNT_F_EMPTY_PATH, replica_MOVE_MOUNT_T_EMPTY_PATH,
    replica_FSOPEN_CLOEXEC, replica_FSMOUNT_CLOEXEC;
extern const uint64_t replica_MOUNT_ATTR_RDONLY, replica_MOUNT_ATTR_NOSUID, replica_MOUNT_ATTR_NODEV,
    replica_MOUNT_ATTR_NOEXEC, replica_MOUNT_ATTR_NOATIME, replica_MOUNT_ATTR_NODIRATIME;
extern const unsigned int replica_FSCONFIG_SET_FLAG, replica_FSCONFIG_SET_STRING, replica_FSCONFIG_CMD_CREATE;
/// open_tree(2): an fd for a mount tree, detached copy with OPEN_TREE_CLONE.
int replica_open_tree(int dirfd, const char *path, unsigned int flags);
/// move_mount(2): attach a detached tree (or move a mount).
int replica_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path, unsigned int flags);
/// mount_setattr(2) with a struct mount_attr built from its fields; AT_RECURSIVE covers submounts.
int replica_mount_setattr(int dirfd, const char *path, unsigned int flags, uint64_t attr_set, uint64_t attr_clr,
                          uint64_t propagation);
/// fsopen(2): a filesystem context for fs_name ("btrfs", "tmpfs", "overlay" ...).
int replica_fsopen(const char *fs_name, unsigned int flags);
/// fsconfig(2): set one parameter of a filesystem context.
int replica_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux);
/// fsmount(2): turn a configured context into a detached mount.
int replica_fsmount(int fd, unsigned int flags, unsigned int attr_flags);

// MARK: loop devices (ioctl(2) is variadic)
/// ioctl(LOOP_CTL_GET_FREE) on /dev/loop-control: the number of a free loop device.
int replica_loop_get_free(int control_fd);
/// ioctl(LOOP_CONFIGURE) (Linux 5.8): bind backing_fd to the loop device in one call, with
/// LO_FLAGS_AUTOCLEAR when autoclear != 0 (the device detaches itself when its last user goes).
/// name is recorded as lo_file_name (truncated to 63 bytes), as losetup does.
int replica_loop_configure(int loop_fd, int backing_fd, const char *name, int autoclear, int read_only);
/// ioctl(LOOP_CLR_FD): detach a loop device.
int replica_loop_clear(int loop_fd);
/// ioctl(LOOP_SET_CAPACITY) (`losetup -c`): the loop device takes its backing file's new size.
int replica_loop_set_capacity(int loop_fd);
/// ioctl(BTRFS_IOC_QGROUP_LIMIT) on a descriptor inside a subvolume (`btrfs qgroup limit BYTES PATH`):
/// the referenced-bytes limit of that subvolume's own qgroup; 0 removes the limit. ENOTCONN when
/// quotas are off.
int replica_btrfs_qgroup_limit(int fd, uint64_t max_referenced);
/// ioctl(BTRFS_IOC_FS_INFO): the filesystem's uuid, 16 bytes, as /sys/fs/btrfs/UUID names it.
int replica_btrfs_fsid(int fd, uint8_t *fsid);
/// bind(2) of a socket to a filesystem path (`struct sockaddr_un`); ENAMETOOLONG when it does not fit.
int replica_bind_unix(int fd, const char *path);
/// connect(2) of a socket to a filesystem path (`struct sockaddr_un`); ENAMETOOLONG when it does not fit.
int replica_connect_unix(int fd, const char *path);
/// A tap device of this name in the calling thread's network namespace (`ip tuntap add NAME mode
/// tap`, not persistent): opens /dev/net/tun and sets it up with ioctl(TUNSETIFF, IFF_TAP |
/// IFF_NO_PI | IFF_VNET_HDR), returning the descriptor; the device goes when its last descriptor
/// closes. -1 and errno on failure (ENAMETOOLONG for a name longer than IFNAMSIZ-1).
int replica_tap_open(const char *name);
/// ioctl(BTRFS_IOC_SEND) on a read-only subvolume (`btrfs send [-p PARENT] SUBVOLUME`): writes its
/// send stream to out_fd; incremental from the subvolume with id parent_root (also the one clone
/// source), or full when it is 0. Blocks until the whole stream is written.
int replica_btrfs_send(int subvolume_fd, int out_fd, uint64_t parent_root);
/// ioctl(BTRFS_IOC_SET_RECEIVED_SUBVOL) (what `btrfs receive` does at a stream's end): records the
/// sender's uuid (16 bytes) and transaction on the subvolume; the kernel stamps the receive's own.
int replica_btrfs_set_received(int subvolume_fd, const uint8_t *uuid, uint64_t stransid);
/// ioctl(BTRFS_IOC_CLONE_RANGE): shares src_length bytes of src_fd at src_offset into dst_fd at
/// dst_offset (0: to the end of the source), as a send stream's clone command asks.
int replica_btrfs_clone_range(int dst_fd, int src_fd, uint64_t src_offset, uint64_t src_length, uint64_t dst_offset);
/// fallocate(2) (a _GNU_SOURCE declaration Glibc's module lacks).
int replica_fallocate(int fd, int mode, int64_t offset, int64_t length);
/// CRC-32C (Castagnoli) of len bytes continuing from crc, with no inversion before or after: the
/// checksum of a btrfs send stream's commands (seed 0). SSE4.2's crc32 instruction where the CPU has it.
uint32_t replica_crc32c(uint32_t crc, const void *data, size_t len);
/// ioctl(BTRFS_IOC_RESIZE) on a descriptor of the mounted filesystem (`btrfs filesystem resize SPEC`):
/// spec is "[devid:]bytes" or "[devid:]max".
int replica_btrfs_resize(int fd, const char *spec);
/// ioctl(FICLONE): reflink src into dst (btrfs, xfs).
int replica_ficlone(int dst_fd, int src_fd);
/// ioctl(FS_IOC_GETFLAGS) (`lsattr`): the inode flags of a regular file or directory.
int replica_get_inode_flags(int fd, uint32_t *flags);
/// ioctl(FS_IOC_SETFLAGS) (`chattr`): sets the inode flags of a regular file or directory.
int replica_set_inode_flags(int fd, uint32_t flags);
/// The `chattr` flags a copy keeps: a (append only), i (immutable), d (no dump), A (no atime),
/// S (sync), D (dirsync), C (no copy on write), c (compress), m (no compression). (T, e, E… are
/// allocation details of the source filesystem, not the data's.)
extern const uint32_t replica_kept_inode_flags;
/// FS_IMMUTABLE_FL | FS_APPEND_FL: flags after which nothing of the inode can change.
extern const uint32_t replica_sealing_inode_flags;
/// FS_IMMUTABLE_FL (`chattr +i`): not even root may change, link, rename or write it.
extern const uint32_t replica_immutable_inode_flag;
/// FS_NOCOW_FL: set on an empty file before its data, or the filesystem refuses it.
extern const uint32_t replica_nocow_inode_flag;
/// syncfs(2): flush the filesystem fd is on (a _GNU_SOURCE declaration Glibc's module lacks).
int replica_syncfs(int fd);
/// fcntl(F_SETLEASE) (_GNU_SOURCE): F_WRLCK takes a write lease, which the kernel grants only while no
/// other descriptor has the file open; F_UNLCK gives it up.
int replica_set_lease(int fd, int type);
/// lseek(fd, offset, SEEK_DATA or SEEK_HOLE): the next data (hole != 0: hole) at or after offset.
int64_t replica_seek_data(int fd, int64_t offset, int hole);

// MARK: btrfs
/// What BTRFS_IOC_GET_SUBVOL_INFO reports, in fixed-size fields.
struct replica_subvolume_info {
    uint64_t id, parent_id, generation, changed_generation, flags;
    uint8_t uuid[16], parent_uuid[16], received_uuid[16];
    uint64_t otime_sec;
    uint32_t otime_nsec;
};
/// ioctl(BTRFS_IOC_GET_SUBVOL_INFO) (Linux 4.18) on a descriptor inside a subvolume: the same facts
/// btrfs_util_subvolume_info_fd(fd, 0) gives, in one ioctl where libbtrfsutil issues three as root
/// (an inode lookup and two tree searches). Listing 1,000 snapshots is dominated by this call.
int replica_btrfs_subvolume_info(int fd, struct replica_subvolume_info *info);
/// A subvolume whose entry is in a directory, by that entry's name.
struct replica_child_subvolume {
    struct replica_subvolume_info info;
    char name[256];
};
/// The subvolumes whose entries are in directory dir_fd (on btrfs), each with what
/// BTRFS_IOC_GET_SUBVOL_INFO reports, read by ioctl(BTRFS_IOC_TREE_SEARCH_V2): the directory's
/// DIR_INDEX items from its subvolume's tree, then their ROOT_ITEMs from the root tree (one walk over
/// each run of ids at most 8 apart, a search of one item for an id farther from its neighbours).
/// The cost follows the directory's entries, not the filesystem's subvolumes, where opening each entry
/// costs four calls and a path lookup (`btrfs subvolume list -o`, one folder). CAP_SYS_ADMIN only
/// (EPERM otherwise). Returns how many, their array malloc'd in *out (free it), or -1 with errno.
long replica_btrfs_child_subvolumes(int dir_fd, struct replica_child_subvolume **out);

// MARK: processes
/// POSIX_SPAWN_SETSID (glibc 2.26, a GNU extension): the child starts a session of its own (setsid).
extern const short replica_POSIX_SPAWN_SETSID;

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): close every fd >= from in the child.
int replica_spawn_addclosefrom(void *file_actions, int from);
/// The calling thread's id, gettid(2).
pid_t replica_gettid(void);

/// accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): a non-blocking, close-on-exec client
/// socket in one call; glibc declares accept4 only under _GNU_SOURCE, which Swift's Glibc lacks.
int replica_accept_nonblocking(int fd);

/// Blocks SIGTERM and SIGINT for the calling thread (and threads it starts) and returns a
/// close-on-exec signalfd(2) that becomes readable when one arrives: a clean stop for a poll loop,
/// without a signal handler. signalfd is not in Swift's Glibc module.
int replica_termination_signalfd(void);
/// The signals a supervisor passes on — SIGTERM, SIGINT, SIGHUP — and SIGCHLD, blocked in the
/// calling thread and read from the returned close-on-exec signalfd(2) instead.
int replica_supervisor_signalfd(void);
/// Unblocks what replica_supervisor_signalfd blocked (a forked child's first step, before exec);
/// returns 0, or -1 with errno.
int replica_unblock_supervisor_signals(void);
/// prctl(PR_SET_PDEATHSIG): signal this process when its parent dies.
int replica_set_parent_death_signal(int signal);

// MARK: confinement (prctl(2) is variadic; seccomp(2) has no glibc wrapper)
/// prctl(PR_CAPBSET_DROP, cap): remove a capability from the bounding set.
int replica_capbset_drop(int cap);
/// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap).
int replica_ambient_raise(int cap);
/// prctl(PR_SET_KEEPCAPS, on): keep permitted capabilities across setuid from root.
int replica_set_keepcaps(int on);
/// prctl(PR_SET_NO_NEW_PRIVS, 1).
int replica_set_no_new_privs(void);
/// seccomp(SECCOMP_SET_MODE_FILTER, 0, {count, filter}): load a compiled classic BPF program of
/// `count` 8-byte instructions.
int replica_seccomp_load_bpf(const void *filter, unsigned short count);
/// prctl(PR_GET_SECCOMP): 0 when the calling thread runs under no seccomp filter, 2 when under one.
int replica_seccomp_mode(void);
/// The seccomp filters of process `pid`, oldest first (the order they were loaded in): each as
/// its instruction count (a native `uint32_t`) then its 8-byte instructions, into `buffer`.
/// PTRACE_SEIZE + PTRACE_INTERRUPT, PTRACE_SECCOMP_GET_FILTER for each, PTRACE_DETACH; the caller
/// needs CAP_SYS_ADMIN and no filter of its own. Returns the bytes written, or -1 with errno
/// (ENOSPC: more than `capacity`).
long replica_seccomp_filters_of(pid_t pid, void *buffer, size_t capacity);
/// memfd_create(name, MFD_CLOEXEC).
int replica_memfd_cloexec(const char *name);
/// strerrorname_np(3): the symbolic name of an errno value ("EPERM"), or NULL.
const char *replica_errno_name(int number);
/// syscall(nr, a0 … a5): a raw call, for the probe and tests (the variadic syscall(2) is not callable).
long replica_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

#endif
