// libbtrfsutil: subvolumes and snapshots. Wrapped by ReplicaStore.
#include <btrfsutil.h>
