// libcap: capability sets. Wrapped by ReplicaKit.
#include <sys/capability.h>
