// libsystemd: sd-daemon (booted, notify) and sd-journal (structured logging). Wrapped by ReplicaKit,
// which opens the library with dlopen(3) on first use instead of linking it: linking costs every
// process ~0.6 ms at start (libsystemd pulls in libgcrypt, liblzma, libzstd and liblz4), and most
// runs of a tool never call it. systemd loads its own optional libraries the same way.
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

// The functions Replica looks up, as pointer types checked against the real declarations at compile
// time, so a header change breaks the build instead of a call.
typedef int (*replica_sd_booted_fn)(void);
typedef int (*replica_sd_notify_fn)(int unset_environment, const char *state);
typedef int (*replica_sd_journal_sendv_fn)(const struct iovec *iov, int n);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_booted), replica_sd_booted_fn), "sd_booted changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_notify), replica_sd_notify_fn), "sd_notify changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_journal_sendv), replica_sd_journal_sendv_fn),
               "sd_journal_sendv changed");

// sd-bus: the few calls that ask the service manager for a transient unit (a mount made by PID 1
// in the host's mount namespace, for a process that runs in a private one) and stop it again.
#include <systemd/sd-bus.h>
typedef int (*replica_sd_bus_open_system_fn)(sd_bus **ret);
typedef sd_bus *(*replica_sd_bus_flush_close_unref_fn)(sd_bus *bus);
typedef int (*replica_sd_bus_message_new_method_call_fn)(sd_bus *bus, sd_bus_message **m, const char *destination,
                                                         const char *path, const char *interface, const char *member);
typedef int (*replica_sd_bus_message_append_basic_fn)(sd_bus_message *m, char type, const void *p);
typedef int (*replica_sd_bus_message_open_container_fn)(sd_bus_message *m, char type, const char *contents);
typedef int (*replica_sd_bus_message_close_container_fn)(sd_bus_message *m);
typedef int (*replica_sd_bus_call_fn)(sd_bus *bus, sd_bus_message *m, uint64_t usec, sd_bus_error *ret_error,
                                      sd_bus_message **reply);
typedef sd_bus_message *(*replica_sd_bus_message_unref_fn)(sd_bus_message *m);
typedef void (*replica_sd_bus_error_free_fn)(sd_bus_error *e);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_open_system), replica_sd_bus_open_system_fn), "sd_bus_open_system changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_flush_close_unref), replica_sd_bus_flush_close_unref_fn),
               "sd_bus_flush_close_unref changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_new_method_call), replica_sd_bus_message_new_method_call_fn),
               "sd_bus_message_new_method_call changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_append_basic), replica_sd_bus_message_append_basic_fn),
               "sd_bus_message_append_basic changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_open_container), replica_sd_bus_message_open_container_fn),
               "sd_bus_message_open_container changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_close_container), replica_sd_bus_message_close_container_fn),
               "sd_bus_message_close_container changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_call), replica_sd_bus_call_fn), "sd_bus_call changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_unref), replica_sd_bus_message_unref_fn),
               "sd_bus_message_unref changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_error_free), replica_sd_bus_error_free_fn), "sd_bus_error_free changed");

// sd-bus: reading a unit's property (its ActiveState), under its object path.
typedef int (*replica_sd_bus_get_property_string_fn)(sd_bus *bus, const char *destination, const char *path,
                                                     const char *interface, const char *member, sd_bus_error *ret_error,
                                                     char **ret);
typedef int (*replica_sd_bus_path_encode_fn)(const char *prefix, const char *external_id, char **ret_path);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_get_property_string), replica_sd_bus_get_property_string_fn),
               "sd_bus_get_property_string changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_path_encode), replica_sd_bus_path_encode_fn),
               "sd_bus_path_encode changed");

// sd-bus: reading a reply (a unit's properties, GetAll) value by value.
typedef int (*replica_sd_bus_message_peek_type_fn)(sd_bus_message *m, char *type, const char **contents);
typedef int (*replica_sd_bus_message_enter_container_fn)(sd_bus_message *m, char type, const char *contents);
typedef int (*replica_sd_bus_message_exit_container_fn)(sd_bus_message *m);
typedef int (*replica_sd_bus_message_read_basic_fn)(sd_bus_message *m, char type, void *p);
typedef int (*replica_sd_bus_message_at_end_fn)(sd_bus_message *m, int complete);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_peek_type), replica_sd_bus_message_peek_type_fn),
               "sd_bus_message_peek_type changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_enter_container), replica_sd_bus_message_enter_container_fn),
               "sd_bus_message_enter_container changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_exit_container), replica_sd_bus_message_exit_container_fn),
               "sd_bus_message_exit_container changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_read_basic), replica_sd_bus_message_read_basic_fn),
               "sd_bus_message_read_basic changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_message_at_end), replica_sd_bus_message_at_end_fn),
               "sd_bus_message_at_end changed");

// sd-bus: a direct connection to PID 1's private socket (/run/systemd/private, root only), as
// systemctl makes when run as root: no bus daemon in between, no Hello.
typedef int (*replica_sd_bus_new_fn)(sd_bus **ret);
typedef int (*replica_sd_bus_set_address_fn)(sd_bus *bus, const char *address);
typedef int (*replica_sd_bus_start_fn)(sd_bus *bus);
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_new), replica_sd_bus_new_fn), "sd_bus_new changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_set_address), replica_sd_bus_set_address_fn), "sd_bus_set_address changed");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_bus_start), replica_sd_bus_start_fn), "sd_bus_start changed");
