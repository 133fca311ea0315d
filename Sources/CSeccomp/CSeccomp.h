// libseccomp: syscall filters. Wrapped by ReplicaKit.
#include <seccomp.h>
