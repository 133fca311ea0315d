import BenchmarkSupport
import Glibc
import ReplicaKit

/// The reference sandbox set up by a C program, compiled with the system's `cc -O2` when the bench
/// runs, timed the way the in-process figure is (on a fresh thread, unshare to the last mount,
/// median of 40), in two forms:
/// - `same`: the system calls `SandboxMounter` makes for `referencePlan`, in its order, read off
///   `strace -f replica-bench sandbox`: the namespace's identity checked, each source and target
///   resolved once with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` and checked with `fstat`,
///   `/proc/self/mountinfo` read and scanned for the API mounts that must stay read-only. What is
///   left between the two figures is the Swift around those calls. Keep it in step with the mounter.
/// - `bare`: the mounts alone — no checks, no mountinfo (so a read-only mount under /dev, /proc or
///   /sys would come out writable): the kernel's floor for this sandbox, unsafe as it stands.
struct SandboxInC {
    let dir: String, program: String

    /// Compiles the program into `dir`; nil when no C compiler is installed.
    init?(_ dir: String) throws {
        let source = "\(dir)/sandbox.c"
        (self.dir, program) = (dir, "\(dir)/sandbox-in-c")
        try OwnedFD.open(source, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600).writeAll(Array(sandboxInCSource.utf8))
        guard (try? Command.check(["cc", "-O2", "-o", program, source, "-lpthread"])) != nil else {
            print("replica-bench: no C compiler (cc): the sandbox's figure in C is left out")
            return nil
        }
    }

    /// The median nanoseconds of one block in `form` (`same` or `bare`).
    func run(_ form: String) throws -> Double {
        let printed = try Command.check([program, form, dir])
        guard let nanoseconds = Double(printed.trimmed) else { throw ReplicaError("sandbox in C", errno: .EINVAL, hint: printed) }
        return nanoseconds
    }
}

private let sandboxInCSource = #"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int same;

static long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }
static int setattr(int fd, const char *path, unsigned flags, unsigned long set, unsigned long clear, unsigned long propagation) {
    struct mount_attr attr = { .attr_set = set, .attr_clr = clear, .propagation = propagation };
    return syscall(SYS_mount_setattr, fd, path, flags, &attr, sizeof attr);
}
static int resolve(int root, const char *path) {
    struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS };
    return syscall(SYS_openat2, root, path, &how, sizeof how);
}
static void fail(const char *what) { perror(what); exit(1); }

/* The API mounts that are read-only, from mountinfo: field 5 the mount point, field 6 its options. */
static char readOnly[64][256];
static int readOnlyCount;
static void readMountInfo(void) {
    static char text[65536];
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC), length = 0, got;
    while ((got = read(fd, text + length, sizeof text - 1 - length)) > 0) length += got;
    close(fd);
    text[length] = 0;
    readOnlyCount = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n'), *field[6], *cursor = line;
        if (end) *end = 0;
        int count = 0;
        while (count < 6 && cursor) { field[count++] = cursor; cursor = strchr(cursor, ' '); if (cursor) *cursor++ = 0; }
        if (count == 6 && (!strncmp(field[4], "/dev", 4) || !strncmp(field[4], "/proc", 5) || !strncmp(field[4], "/sys", 4))
            && !strncmp(field[5], "ro", 2) && (field[5][2] == 0 || field[5][2] == ',') && readOnlyCount < 64)
            snprintf(readOnly[readOnlyCount++], 256, "%s", field[4]);
        if (!end) break;
        line = end + 1;
    }
}

static void *setUp(void *result) {
    char path[4096];
    struct stat st;
    const char *sources[3] = { "a", "b", "c" }, *targets[4] = { "view/a", "view/b", "view/c", "view/tmp" };
    int trees[4], opened[4];
    long began = now();
    if (syscall(SYS_unshare, CLONE_NEWNS)) fail("unshare");
    if (same) fstatat(AT_FDCWD, "/proc/thread-self/ns/mnt", &st, AT_SYMLINK_NOFOLLOW);
    if (setattr(AT_FDCWD, "/", AT_RECURSIVE, 0, 0, MS_SLAVE)) fail("rslave");
    int root = -1, host = -1;
    if (same) {
        fstatat(AT_FDCWD, "/proc/thread-self/ns/mnt", &st, AT_SYMLINK_NOFOLLOW);
        root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        host = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, sources[i]);
        if (same) {
            int source = resolve(host, path);
            fstat(source, &st);
            trees[i] = syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
            if (i < 2) setattr(trees[i], "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0, 0);
            close(source);
        } else {
            trees[i] = syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
            if (i < 2) setattr(trees[i], "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0, 0);
        }
        if (trees[i] < 0) fail("open_tree");
    }
    int context = syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    if (same) syscall(SYS_fsconfig, context, FSCONFIG_SET_STRING, "source", "replica-tmp", 0);
    syscall(SYS_fsconfig, context, FSCONFIG_SET_STRING, "mode", "1777", 0);
    syscall(SYS_fsconfig, context, FSCONFIG_SET_STRING, "size", "1048576", 0);
    if (syscall(SYS_fsconfig, context, FSCONFIG_CMD_CREATE, 0, 0, 0)) fail("fsconfig");
    trees[3] = syscall(SYS_fsmount, context, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    close(context);
    if (same) {
        for (int i = 0; i < 4; i++) { snprintf(path, sizeof path, "%s/%s", dir, targets[i]); opened[i] = resolve(root, path); }
        readMountInfo();
    }
    if (setattr(AT_FDCWD, "/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0, 0)) fail("read-only root");
    setattr(AT_FDCWD, "/dev", AT_RECURSIVE, 0, MOUNT_ATTR_RDONLY, 0);
    setattr(AT_FDCWD, "/proc", AT_RECURSIVE, 0, MOUNT_ATTR_RDONLY, 0);
    setattr(AT_FDCWD, "/sys", AT_RECURSIVE, 0, MOUNT_ATTR_RDONLY, 0);
    if (same) for (int i = 0; i < readOnlyCount; i++) setattr(AT_FDCWD, readOnly[i], 0, MOUNT_ATTR_RDONLY, 0, 0);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, targets[i]);
        int moved;
        if (same) {
            fstat(opened[i], &st);
            moved = syscall(SYS_move_mount, trees[i], "", opened[i], "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
            close(opened[i]);
        } else {
            moved = syscall(SYS_move_mount, trees[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH);
        }
        if (moved) fail("move_mount");
        close(trees[i]);
    }
    if (same) { close(host); close(root); }
    *(long *)result = now() - began;
    return NULL;
}

static int compare(const void *a, const void *b) { long x = *(const long *)a, y = *(const long *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    same = !strcmp(argv[1], "same");
    dir = argv[2];
    long took[40];
    for (int i = 0; i < 40; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, setUp, &took[i])) fail("pthread_create");
        pthread_join(thread, NULL);
    }
    qsort(took, 40, sizeof *took, compare);
    printf("%ld\n", took[20]);
    return 0;
}
"""#
