// libsystemd: sd-daemon (readiness, booted) and sd-journal (structured logging). Wrapped by ReplicaKit.
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
