# Sourced by scripts/build-tools and scripts/package: the tools the package installs in /usr/bin
# (the generator, built with them, goes to /lib/systemd/system-generators).
tools=(replica-snap replica-run replica-shift replica-store replica-net replica-volume replica-machine)
