// See include/replica_shim.h for why each of these exists.
#define _GNU_SOURCE
#include "replica_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

const int replica_CLONE_NEWNS = CLONE_NEWNS, replica_CLONE_NEWNET = CLONE_NEWNET, replica_CLONE_NEWPID = CLONE_NEWPID,
          replica_CLONE_NEWUTS = CLONE_NEWUTS, replica_CLONE_NEWIPC = CLONE_NEWIPC,
          replica_CLONE_NEWUSER = CLONE_NEWUSER, replica_CLONE_NEWCGROUP = CLONE_NEWCGROUP;
const int replica_O_PATH = O_PATH, replica_O_TMPFILE = O_TMPFILE, replica_AT_EMPTY_PATH = AT_EMPTY_PATH,
          replica_AT_RECURSIVE = AT_RECURSIVE;
const short replica_POSIX_SPAWN_SETSID = POSIX_SPAWN_SETSID;
const unsigned int replica_RENAME_EXCHANGE = RENAME_EXCHANGE, replica_RENAME_NOREPLACE = RENAME_NOREPLACE;
const int64_t replica_BTRFS_SUPER_MAGIC = BTRFS_SUPER_MAGIC, replica_PROC_SUPER_MAGIC = PROC_SUPER_MAGIC,
              replica_TMPFS_MAGIC = TMPFS_MAGIC, replica_OVERLAYFS_SUPER_MAGIC = OVERLAYFS_SUPER_MAGIC;
const uint64_t replica_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV, replica_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS,
               replica_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS, replica_RESOLVE_BENEATH = RESOLVE_BENEATH,
               replica_RESOLVE_IN_ROOT = RESOLVE_IN_ROOT;
const unsigned int replica_OPEN_TREE_CLONE = OPEN_TREE_CLONE, replica_OPEN_TREE_CLOEXEC = OPEN_TREE_CLOEXEC,
                   replica_MOVE_MOUNT_F_EMPTY_PATH = MOVE_MOUNT_F_EMPTY_PATH,
                   replica_MOVE_MOUNT_T_EMPTY_PATH = MOVE_MOUNT_T_EMPTY_PATH, replica_FSOPEN_CLOEXEC = FSOPEN_CLOEXEC,
                   replica_FSMOUNT_CLOEXEC = FSMOUNT_CLOEXEC;
const uint64_t replica_MOUNT_ATTR_RDONLY = MOUNT_ATTR_RDONLY, replica_MOUNT_ATTR_NOSUID = MOUNT_ATTR_NOSUID,
               replica_MOUNT_ATTR_NODEV = MOUNT_ATTR_NODEV, replica_MOUNT_ATTR_NOEXEC = MOUNT_ATTR_NOEXEC,
               replica_MOUNT_ATTR_NOATIME = MOUNT_ATTR_NOATIME, replica_MOUNT_ATTR_NODIRATIME = MOUNT_ATTR_NODIRATIME;
const unsigned int replica_FSCONFIG_SET_FLAG = FSCONFIG_SET_FLAG, replica_FSCONFIG_SET_STRING = FSCONFIG_SET_STRING,
                   replica_FSCONFIG_CMD_CREATE = FSCONFIG_CMD_CREATE;

int replica_unshare(int flags) { return unshare(flags); }
int replica_setns(int fd, int nstype) { return setns(fd, nstype); }

int replica_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int replica_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
int replica_fstatfs_type(int fd, int64_t *type) {
    struct statfs s;
    int r = fstatfs(fd, &s);
    if (r == 0) *type = (int64_t)s.f_type;
    return r;
}
int replica_fstatfs_space(int fd, uint64_t *avail_bytes, uint64_t *total_bytes, uint64_t *mount_flags) {
    struct statfs s;
    int r = fstatfs(fd, &s);
    if (r == 0) {
        *avail_bytes = (uint64_t)s.f_bavail * (uint64_t)s.f_bsize;
        *total_bytes = (uint64_t)s.f_blocks * (uint64_t)s.f_bsize;
        *mount_flags = (uint64_t)s.f_flags;
    }
    return r;
}

int replica_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int replica_open_tree(int dirfd, const char *path, unsigned int flags) {
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}
int replica_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path, unsigned int flags) {
    return (int)syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags);
}
int replica_mount_setattr(int dirfd, const char *path, unsigned int flags, uint64_t attr_set, uint64_t attr_clr,
                          uint64_t propagation) {
    struct mount_attr attr = {.attr_set = attr_set, .attr_clr = attr_clr, .propagation = propagation};
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof attr);
}
int replica_fsopen(const char *fs_name, unsigned int flags) { return (int)syscall(SYS_fsopen, fs_name, flags); }
int replica_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux) {
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}
int replica_fsmount(int fd, unsigned int flags, unsigned int attr_flags) {
    return (int)syscall(SYS_fsmount, fd, flags, attr_flags);
}

int replica_loop_get_free(int control_fd) { return ioctl(control_fd, LOOP_CTL_GET_FREE); }
int replica_loop_configure(int loop_fd, int backing_fd, const char *name, int autoclear, int read_only) {
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)backing_fd;
    strncpy((char *)config.info.lo_file_name, name, LO_NAME_SIZE - 1);
    config.info.lo_flags = (autoclear ? LO_FLAGS_AUTOCLEAR : 0) | (read_only ? LO_FLAGS_READ_ONLY : 0);
    return ioctl(loop_fd, LOOP_CONFIGURE, &config);
}
int replica_loop_clear(int loop_fd) { return ioctl(loop_fd, LOOP_CLR_FD, 0); }
int replica_loop_set_capacity(int loop_fd) { return ioctl(loop_fd, LOOP_SET_CAPACITY, 0); }
int replica_btrfs_qgroup_limit(int fd, uint64_t max_referenced) {
    struct btrfs_ioctl_qgroup_limit_args args;
    memset(&args, 0, sizeof args);
    args.qgroupid = 0;  /* the subvolume fd is in */
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = max_referenced == 0 ? (uint64_t)-1 : max_referenced;
    return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &args);
}
int replica_get_inode_flags(int fd, uint32_t *flags) {
    int value = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &value) != 0) return -1;
    *flags = (uint32_t)value;
    return 0;
}
int replica_set_inode_flags(int fd, uint32_t flags) {
    int value = (int)flags;
    return ioctl(fd, FS_IOC_SETFLAGS, &value);
}
const uint32_t replica_kept_inode_flags = FS_APPEND_FL | FS_IMMUTABLE_FL | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    | FS_DIRSYNC_FL | FS_NOCOW_FL | FS_COMPR_FL | FS_NOCOMP_FL;
const uint32_t replica_sealing_inode_flags = FS_IMMUTABLE_FL | FS_APPEND_FL;
const uint32_t replica_nocow_inode_flag = FS_NOCOW_FL;
const uint32_t replica_immutable_inode_flag = FS_IMMUTABLE_FL;
int replica_btrfs_fsid(int fd, uint8_t *fsid) {
    struct btrfs_ioctl_fs_info_args args;
    memset(&args, 0, sizeof args);
    if (ioctl(fd, BTRFS_IOC_FS_INFO, &args) != 0) return -1;
    memcpy(fsid, args.fsid, BTRFS_FSID_SIZE);
    return 0;
}
static int replica_unix_address(const char *path, struct sockaddr_un *address, socklen_t *length) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(address->sun_path, path);
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    return 0;
}
int replica_bind_unix(int fd, const char *path) {
    struct sockaddr_un address;
    socklen_t length;
    if (replica_unix_address(path, &address, &length) != 0) return -1;
    return bind(fd, (struct sockaddr *)&address, length);
}
int replica_connect_unix(int fd, const char *path) {
    struct sockaddr_un address;
    socklen_t length;
    if (replica_unix_address(path, &address, &length) != 0) return -1;
    return connect(fd, (struct sockaddr *)&address, length);
}
int replica_btrfs_send(int subvolume_fd, int out_fd, uint64_t parent_root) {
    struct btrfs_ioctl_send_args args;
    __u64 sources[1] = { parent_root };
    memset(&args, 0, sizeof args);
    args.send_fd = out_fd;
    args.parent_root = parent_root;
    if (parent_root != 0) {
        args.clone_sources = sources;
        args.clone_sources_count = 1;
    }
    return ioctl(subvolume_fd, BTRFS_IOC_SEND, &args);
}
int replica_btrfs_set_received(int subvolume_fd, const uint8_t *uuid, uint64_t stransid) {
    struct btrfs_ioctl_received_subvol_args args;
    memset(&args, 0, sizeof args);
    memcpy(args.uuid, uuid, BTRFS_UUID_SIZE);
    args.stransid = stransid;
    return ioctl(subvolume_fd, BTRFS_IOC_SET_RECEIVED_SUBVOL, &args);
}
int replica_btrfs_clone_range(int dst_fd, int src_fd, uint64_t src_offset, uint64_t src_length, uint64_t dst_offset) {
    struct btrfs_ioctl_clone_range_args args = {
        .src_fd = src_fd, .src_offset = src_offset, .src_length = src_length, .dest_offset = dst_offset,
    };
    return ioctl(dst_fd, BTRFS_IOC_CLONE_RANGE, &args);
}

int replica_fallocate(int fd, int mode, int64_t offset, int64_t length) { return fallocate(fd, mode, offset, length); }

static uint32_t crc32c_table[256];
static int crc32c_hardware;
// Probed at first use with one CPUID. Not __builtin_cpu_supports: that links libgcc's constructor,
// which runs a dozen CPUIDs at the start of every tool (each one a VM exit under a hypervisor).
static void crc32c_setup(void) {
#if defined(__x86_64__)
    unsigned eax, ebx, ecx, edx;
    crc32c_hardware = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2);
#endif
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[n] = c;
    }
}
#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len) {
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len > 0; p++, len--) c32 = __builtin_ia32_crc32qi(c32, *p);
    return c32;
}
#endif
uint32_t replica_crc32c(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc32c_setup);
#if defined(__x86_64__)
    if (crc32c_hardware) return crc32c_sse42(crc, p, len);
#endif
    for (; len > 0; p++, len--) crc = crc32c_table[(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return crc;
}
int replica_btrfs_resize(int fd, const char *spec) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof args);
    if (strlen(spec) >= sizeof args.name) { errno = ENAMETOOLONG; return -1; }
    strcpy(args.name, spec);
    return ioctl(fd, BTRFS_IOC_RESIZE, &args);
}
int replica_ficlone(int dst_fd, int src_fd) { return ioctl(dst_fd, FICLONE, src_fd); }
int replica_syncfs(int fd) { return syncfs(fd); }
int replica_set_lease(int fd, int type) { return fcntl(fd, F_SETLEASE, type); }
int64_t replica_seek_data(int fd, int64_t offset, int hole) { return lseek(fd, offset, hole ? SEEK_HOLE : SEEK_DATA); }

int replica_btrfs_subvolume_info(int fd, struct replica_subvolume_info *info) {
    struct btrfs_ioctl_get_subvol_info_args args;
    memset(&args, 0, sizeof args);
    // Only -1 is failure: the kernel can return 1 (a tree lookup's "not exact" status leaks out)
    // after filling args, and libbtrfsutil checks for -1 alone for the same reason.
    if (ioctl(fd, BTRFS_IOC_GET_SUBVOL_INFO, &args) == -1) return -1;
    {
        _Static_assert(sizeof args.uuid == 16 && sizeof args.parent_uuid == 16 && sizeof args.received_uuid == 16,
                       "btrfs uuids are 16 bytes");
        info->id = args.treeid;
        info->parent_id = args.parent_id;
        info->generation = args.generation;
        info->changed_generation = args.ctransid;
        info->flags = args.flags;
        memcpy(info->uuid, args.uuid, 16);
        memcpy(info->parent_uuid, args.parent_uuid, 16);
        memcpy(info->received_uuid, args.received_uuid, 16);
        info->otime_sec = args.otime.sec;
        info->otime_nsec = args.otime.nsec;
    }
    return 0;
}

// Calls visit(context, header, item) for each item of tree tree_id whose key lies between min and
// max (keys compare as (objectid, type, offset) tuples), one TREE_SEARCH_V2 per buffer of items
// (args, the caller's, with buffer_size bytes after it), at most limit items in all (one search
// for limit 1: the kernel stops at the first). Stops early when visit returns nonzero.
// Returns 0, or -1 with errno.
static int replica_tree_walk(int fd, struct btrfs_ioctl_search_args_v2 *args, size_t buffer_size, uint64_t tree_id,
                             struct btrfs_key min, struct btrfs_key max, uint32_t limit,
                             int (*visit)(void *, const struct btrfs_ioctl_search_header *, const uint8_t *),
                             void *context) {
    while (limit > 0) {
        memset(&args->key, 0, sizeof args->key);
        args->key.tree_id = tree_id;
        args->key.min_objectid = min.objectid;
        args->key.min_type = min.type;
        args->key.min_offset = min.offset;
        args->key.max_objectid = max.objectid;
        args->key.max_type = max.type;
        args->key.max_offset = max.offset;
        args->key.max_transid = UINT64_MAX;
        args->key.nr_items = limit;
        args->buf_size = buffer_size;
        if (ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args) == -1) return -1;
        if (args->key.nr_items == 0) break;
        if (limit != UINT32_MAX) limit -= args->key.nr_items;
        const uint8_t *cursor = (const uint8_t *)args->buf;
        struct btrfs_ioctl_search_header header;
        for (uint32_t i = 0; i < args->key.nr_items; i++) {
            memcpy(&header, cursor, sizeof header);
            cursor += sizeof header;
            if (visit(context, &header, cursor) != 0) return 0;
            cursor += header.len;
        }
        // Go on after the last key returned.
        min.objectid = header.objectid;
        min.type = (uint8_t)header.type;
        min.offset = header.offset;
        if (min.offset < UINT64_MAX) min.offset++;
        else if (min.type < UINT8_MAX) { min.type++; min.offset = 0; }
        else if (min.objectid < UINT64_MAX) { min.objectid++; min.type = 0; min.offset = 0; }
        else break;
        if (min.objectid > max.objectid || (min.objectid == max.objectid && (min.type > max.type ||
            (min.type == max.type && min.offset > max.offset)))) break;
    }
    return 0;
}

struct replica_children {
    struct replica_child_subvolume *items;
    size_t count, capacity, next;  // next: the first item whose ROOT_ITEM may still come
    int out_of_memory;
};

// A DIR_INDEX (directory, DIR_INDEX, index) item: one entry, {location, transid, data_len, name_len,
// type} and its name. An entry whose location is a ROOT_ITEM is a subvolume, the location's objectid its id.
static int replica_visit_dir_index(void *context, const struct btrfs_ioctl_search_header *header, const uint8_t *item) {
    struct replica_children *children = context;
    struct btrfs_dir_item entry;
    if (header->type != BTRFS_DIR_INDEX_KEY || header->len < sizeof entry) return 0;
    memcpy(&entry, item, sizeof entry);
    uint16_t length = le16toh(entry.name_len);
    if (entry.location.type != BTRFS_ROOT_ITEM_KEY || length > 255 || sizeof entry + length > header->len) return 0;
    if (children->count == children->capacity) {
        size_t capacity = children->capacity ? children->capacity * 2 : 64;
        struct replica_child_subvolume *grown = realloc(children->items, capacity * sizeof *grown);
        if (grown == NULL) {
            children->out_of_memory = 1;
            return 1;
        }
        children->items = grown;
        children->capacity = capacity;
    }
    struct replica_child_subvolume *child = &children->items[children->count++];
    memset(child, 0, sizeof *child);
    child->info.id = le64toh(entry.location.objectid);
    memcpy(child->name, item + sizeof entry, length);
    return 0;
}

// A ROOT_ITEM (id, ROOT_ITEM, transid); items come in key order, as the children are sorted (by id).
static int replica_visit_root_item(void *context, const struct btrfs_ioctl_search_header *header, const uint8_t *item) {
    struct replica_children *children = context;
    if (header->type != BTRFS_ROOT_ITEM_KEY) return 0;
    while (children->next < children->count && children->items[children->next].info.id < header->objectid) children->next++;
    if (children->next == children->count || children->items[children->next].info.id != header->objectid) return 0;
    struct replica_subvolume_info *info = &children->items[children->next].info;
    struct btrfs_root_item root;
    memset(&root, 0, sizeof root);
    memcpy(&root, item, header->len < sizeof root ? header->len : sizeof root);
    info->generation = le64toh(root.generation);
    info->flags = le64toh(root.flags);
    // The uuids and times are valid only when generation_v2 matches (written by a kernel that knows them).
    if (header->len >= sizeof root && root.generation_v2 == root.generation) {
        memcpy(info->uuid, root.uuid, 16);
        memcpy(info->parent_uuid, root.parent_uuid, 16);
        memcpy(info->received_uuid, root.received_uuid, 16);
        info->changed_generation = le64toh(root.ctransid);
        info->otime_sec = le64toh(root.otime.sec);
        info->otime_nsec = le32toh(root.otime.nsec);
    }
    return 0;
}

static int replica_compare_child_ids(const void *a, const void *b) {
    uint64_t x = ((const struct replica_child_subvolume *)a)->info.id, y = ((const struct replica_child_subvolume *)b)->info.id;
    return x < y ? -1 : x > y;
}

long replica_btrfs_child_subvolumes(int dir_fd, struct replica_child_subvolume **out) {
    struct stat status;
    if (fstat(dir_fd, &status) == -1) return -1;
    struct btrfs_ioctl_ino_lookup_args lookup;
    memset(&lookup, 0, sizeof lookup);
    lookup.objectid = BTRFS_FIRST_FREE_OBJECTID;
    if (ioctl(dir_fd, BTRFS_IOC_INO_LOOKUP, &lookup) == -1) return -1;
    enum { buffer_size = 64 << 10 };
    struct btrfs_ioctl_search_args_v2 *args = malloc(sizeof *args + buffer_size);
    if (args == NULL) return -1;
    struct replica_children children = {0};
    // The directory's own entries, from its subvolume's tree: as many items as it has entries,
    // however many other subvolumes the filesystem holds.
    struct btrfs_key min = {status.st_ino, BTRFS_DIR_INDEX_KEY, 0}, max = {status.st_ino, BTRFS_DIR_INDEX_KEY, UINT64_MAX};
    int failed = replica_tree_walk(dir_fd, args, buffer_size, lookup.treeid, min, max, UINT32_MAX, replica_visit_dir_index, &children);
    if (children.out_of_memory) {
        errno = ENOMEM;
        failed = -1;
    }
    if (failed == 0 && children.count > 0) {
        qsort(children.items, children.count, sizeof *children.items, replica_compare_child_ids);
        for (size_t i = 0; i < children.count; i++) children.items[i].info.parent_id = lookup.treeid;
        // Ids close together (one subvolume's snapshots taken alone, or among a few others'): one
        // walk over their range, which also copies out the items of the other subvolumes between
        // them (about half a microsecond each). An id far from its neighbours (among many services
        // snapshotted in turn) gets a search of its own (a few microseconds), so the cost follows
        // this directory's entries, not the filesystem's subvolumes.
        enum { close_together = 8 };
        for (size_t start = 0, end; start < children.count && failed == 0; start = end) {
            for (end = start + 1; end < children.count && children.items[end].info.id - children.items[end - 1].info.id <= close_together; end++) {}
            uint64_t first = children.items[start].info.id, last = children.items[end - 1].info.id;
            struct btrfs_key from = {first, BTRFS_ROOT_ITEM_KEY, 0}, to = {last, BTRFS_ROOT_ITEM_KEY, UINT64_MAX};
            children.next = start;
            failed = replica_tree_walk(dir_fd, args, buffer_size, BTRFS_ROOT_TREE_OBJECTID, from, to,
                                       end - start == 1 ? 1 : UINT32_MAX, replica_visit_root_item, &children);
        }
    }
    int error = errno;
    free(args);
    if (failed != 0) {
        free(children.items);
        errno = error;
        return -1;
    }
    *out = children.items;
    return (long)children.count;
}

// Returns an error number (0 on success), as the posix_spawn family does.
int replica_spawn_addclosefrom(void *file_actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)file_actions, from);
}
pid_t replica_gettid(void) { return gettid(); }

int replica_accept_nonblocking(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

// pthread_sigmask returns its error instead of setting errno; every shim call reports -1 + errno.
static int replica_sigmask(int how, const sigset_t *set) {
    int error = pthread_sigmask(how, set, NULL);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return 0;
}
int replica_termination_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return replica_sigmask(SIG_BLOCK, &set) == 0 ? signalfd(-1, &set, SFD_CLOEXEC) : -1;
}
static void replica_supervisor_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
}
int replica_supervisor_signalfd(void) {
    sigset_t set;
    replica_supervisor_set(&set);
    return replica_sigmask(SIG_BLOCK, &set) == 0 ? signalfd(-1, &set, SFD_CLOEXEC) : -1;
}
int replica_unblock_supervisor_signals(void) {
    sigset_t set;
    replica_supervisor_set(&set);
    return replica_sigmask(SIG_UNBLOCK, &set);
}
int replica_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0); }

int replica_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0); }
int replica_ambient_raise(int cap) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)cap, 0, 0); }
int replica_set_keepcaps(int on) { return prctl(PR_SET_KEEPCAPS, (unsigned long)on, 0, 0, 0); }
int replica_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int replica_seccomp_load_bpf(const void *filter, unsigned short count) {
    struct sock_fprog program = { .len = count, .filter = (struct sock_filter *)filter };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);
}
int replica_seccomp_mode(void) { return prctl(PR_GET_SECCOMP, 0, 0, 0, 0); }
long replica_seccomp_filters_of(pid_t pid, void *buffer, size_t capacity) {
    if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) != 0) return -1;
    long result = -1;
    int status;
    if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) != 0 || waitpid(pid, &status, __WALL) != pid) goto detach;
    long counts[64];
    int filters = 0;
    for (; filters < 64; filters++) {  /* index 0 is the oldest (kernel/seccomp.c, get_nth_filter) */
        counts[filters] = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)(long)filters, NULL);
        if (counts[filters] < 0) {
            if (errno != ENOENT) goto detach;
            break;
        }
    }
    size_t used = 0;
    for (int index = 0; index < filters; index++) {
        size_t length = (size_t)counts[index] * sizeof(struct sock_filter);
        if (used + sizeof(uint32_t) + length > capacity) { errno = ENOSPC; goto detach; }
        uint32_t count = (uint32_t)counts[index];
        memcpy((char *)buffer + used, &count, sizeof count);
        used += sizeof count;
        if (ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)(long)index, (char *)buffer + used) != counts[index]) goto detach;
        used += length;
    }
    result = (long)used;
detach:;
    int saved = errno;
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    errno = saved;
    return result;
}
int replica_memfd_cloexec(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
const char *replica_errno_name(int number) { return strerrorname_np(number); }
long replica_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
    return syscall(nr, a0, a1, a2, a3, a4, a5);
}

int replica_tap_open(const char *name) {
    if (strlen(name) >= IFNAMSIZ) { errno = ENAMETOOLONG; return -1; }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) < 0) { int saved = errno; close(fd); errno = saved; return -1; }
    return fd;
}
