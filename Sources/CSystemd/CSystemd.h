// libsystemd: sd-daemon (notify) and sd-journal (structured logging); D-Bus is spoken by ReplicaKit
// itself (System/DBus). Wrapped by ReplicaKit, which opens the library with dlopen(3) on first use instead of linking it: linking costs every
// process ~0.6 ms at start (libsystemd pulls in libgcrypt, liblzma, libzstd and liblz4), and most
// runs of a tool never call it. systemd loads its own optional libraries the same way.
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

// The functions Replica looks up, as pointer types checked against the real declarations at compile
// time, so a header change breaks the build instead of a call.
typedef int (*replica_sd_notify_fn)(int unset_environment, const char *state);
typedef int (*replica_sd_journal_sendv_fn)(const struct iovec *iov, int n);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_notify), replica_sd_notify_fn), "sd_notify changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_journal_sendv), replica_sd_journal_sendv_fn),
               "sd_journal_sendv changed");
