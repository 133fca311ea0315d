// libmnl: netlink sockets and message building. Wrapped by ReplicaNet.
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/veth.h>
