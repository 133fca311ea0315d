// libmnl: netlink sockets and message building. Wrapped by ReplicaNet, which opens the library with
// dlopen(3) on first use instead of linking it: Debian ships no static libmnl, and a linked one would
// keep replica-net from being one static executable like the other tools. iproute2 depends on
// libmnl0, so every host that runs Replica has it.
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/veth.h>

// The functions Replica looks up, as pointer types checked against the real declarations at compile
// time, so a header change breaks the build instead of a call.
typedef struct nlmsghdr *(*replica_mnl_nlmsg_put_header_fn)(void *buf);
typedef void *(*replica_mnl_nlmsg_put_extra_header_fn)(struct nlmsghdr *nlh, size_t size);
typedef void (*replica_mnl_attr_put_fn)(struct nlmsghdr *nlh, uint16_t type, size_t len, const void *data);
typedef void (*replica_mnl_attr_put_str_fn)(struct nlmsghdr *nlh, uint16_t type, const char *data);
typedef void (*replica_mnl_attr_put_u8_fn)(struct nlmsghdr *nlh, uint16_t type, uint8_t data);
typedef void (*replica_mnl_attr_put_u32_fn)(struct nlmsghdr *nlh, uint16_t type, uint32_t data);
typedef struct nlattr *(*replica_mnl_attr_nest_start_fn)(struct nlmsghdr *nlh, uint16_t type);
typedef void (*replica_mnl_attr_nest_end_fn)(struct nlmsghdr *nlh, struct nlattr *start);
typedef struct mnl_socket *(*replica_mnl_socket_fdopen_fn)(int fd);
typedef int (*replica_mnl_socket_bind_fn)(struct mnl_socket *nl, unsigned int groups, pid_t pid);
typedef int (*replica_mnl_socket_close_fn)(struct mnl_socket *nl);
typedef unsigned int (*replica_mnl_socket_get_portid_fn)(const struct mnl_socket *nl);
typedef ssize_t (*replica_mnl_socket_sendto_fn)(const struct mnl_socket *nl, const void *req, size_t siz);
typedef ssize_t (*replica_mnl_socket_recvfrom_fn)(const struct mnl_socket *nl, void *buf, size_t siz);

#define REPLICA_MNL_CHECK(name) \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&name), replica_##name##_fn), #name " changed")
REPLICA_MNL_CHECK(mnl_nlmsg_put_header);
REPLICA_MNL_CHECK(mnl_nlmsg_put_extra_header);
REPLICA_MNL_CHECK(mnl_attr_put);
REPLICA_MNL_CHECK(mnl_attr_put_str);
REPLICA_MNL_CHECK(mnl_attr_put_u8);
REPLICA_MNL_CHECK(mnl_attr_put_u32);
REPLICA_MNL_CHECK(mnl_attr_nest_start);
REPLICA_MNL_CHECK(mnl_attr_nest_end);
REPLICA_MNL_CHECK(mnl_socket_fdopen);
REPLICA_MNL_CHECK(mnl_socket_bind);
REPLICA_MNL_CHECK(mnl_socket_close);
REPLICA_MNL_CHECK(mnl_socket_get_portid);
REPLICA_MNL_CHECK(mnl_socket_sendto);
REPLICA_MNL_CHECK(mnl_socket_recvfrom);
_Static_assert(__builtin_types_compatible_p(__typeof__(&mnl_attr_put_strz), replica_mnl_attr_put_str_fn),
               "mnl_attr_put_strz changed");
