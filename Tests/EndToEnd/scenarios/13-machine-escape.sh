# A machine is a boundary. The guest's own systemd runs an escape probe (fixtures/escape-probe)
# before it is READY, in forks started every way — from a shell, by replica-machine@.service, in a
# set — and every attempt is refused: device nodes, the kernel's settings (as mounted, through a
# fresh procfs, after a remount), sysfs, modules, a user namespace of its own, the processes
# outside. Positive control: the same probe in a fork started with --private-users=no is allowed
# through, so the probe can tell. For comparison: a plain `systemd-nspawn -U` boot. Each fork has
# a user range of its own, is registered with systemd-machined (machinectl, systemctl -M) and gets
# the limits it was given on the scope or unit systemd runs it in.
. /e2e/lib.sh
store=/run/replica/store
# The host process the guests try to reach: a sleep named escape-probe-target.
bash -c 'exec -a escape-probe-target sleep 600' &
target=$!
# The host disk the guests try to read and mount: the runner's probe disk (an ext4 image on a loop
# device of its own, holding host-secret).
disk=$(cat /var/lib/replica-e2e/probe-disk)
# Lays the probe into a machine's root, enabled, with the target's pid and the disk.
lay_probe() {
  install -D -m 0755 /e2e/fixtures/escape-probe "$1/usr/local/sbin/escape-probe"
  printf '[Unit]\nDefaultDependencies=no\nAfter=local-fs.target\nBefore=multi-user.target\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/escape-probe\n' \
    > "$1/etc/systemd/system/escape-probe.service"
  mkdir -p "$1/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/escape-probe.service "$1/etc/systemd/system/multi-user.target.wants/escape-probe.service"
  echo "$target" > "$1/etc/escape-probe.pid"
  echo "$disk" > "$1/etc/escape-probe.dev"
  rm -f "$1/var/lib/escape-probe.txt"
}
# The probe's report for a machine root: waits for it (the probe runs before READY).
report() { wait_for "$1/var/lib/escape-probe.txt" && cat "$1/var/lib/escape-probe.txt"; }
# Every attempt refused, and the report whole (a probe that stopped half-way proves nothing).
all_refused() {
  local text; text=$(report "$1")
  [ "$(echo "$text" | grep -c '^refused ')" = 15 ] && ! echo "$text" | grep -q '^allowed '
}

check "the template imports" replica-machine template import debian12 /var/lib/replica-e2e/template

# From a shell: a scope systemd makes, registered with machined, limits as its properties.
check "s1 forks with limits" replica-machine fork s1 --template debian12 --memory-max 512M --tasks-max 2048 --cpu-weight 50
lay_probe $store/machines/s1
check "s1 starts from a shell" replica-machine start s1
echo "# escape probe, started from a shell:"
report $store/machines/s1 | sed "s/^/#   /"
check "every escape from s1 is refused (15 attempts)" all_refused $store/machines/s1
users=$(replica-machine list --json | tr -d '\n ' | sed -n 's/.*"name":"s1"[^}]*"users":"\([0-9]*\)".*/\1/p')
check "s1's root is host uid $users, not 0" bash -c "[ -n '$users' ] && [ '$users' -ge 524288 ] && grep -q \"uid_map 0 $users 65536\" $store/machines/s1/var/lib/escape-probe.txt"
check "machinectl lists s1" bash -c "machinectl list --no-legend | grep -q '^s1 '"
# Through machined's way into the guest (its bus in the guest's namespaces); up to 5 s.
for _ in $(seq 50); do
  state=$(systemctl -M s1 is-system-running 2>&1)
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
check "systemctl -M s1 reaches the guest's systemd ($state)" bash -c "[ '$state' = running ] || [ '$state' = degraded ]"
check "journalctl -M s1 reads its journal" bash -c "journalctl -M s1 -q --no-pager -n 50 | grep -q escape-probe"
equal "its scope has the memory limit" 536870912 "$(systemctl show -P MemoryMax machine-s1.scope)"
equal "and the tasks limit" 2048 "$(systemctl show -P TasksMax machine-s1.scope)"
equal "and the CPU weight" 50 "$(systemctl show -P CPUWeight machine-s1.scope)"
equal "and a closed device policy" closed "$(systemctl show -P DevicePolicy machine-s1.scope)"
check "replica-machine list shows its range and limits" bash -c "replica-machine list | grep '^s1 ' | grep -q \"$users:65536 .*MemoryMax=512M TasksMax=2048 CPUWeight=50\""
kill -0 $target
check "the host's target process still runs, unstopped" bash -c "grep -q '^State:.*S' /proc/$target/status"

# By its unit: --keep-unit in replica-machine@.service, limits set on the unit at runtime.
check "u1 forks" replica-machine fork u1 --template debian12 --tasks-max 1024
lay_probe $store/machines/u1
check "replica-machine@u1 starts" systemctl start replica-machine@u1.service
echo "# escape probe, started by replica-machine@u1.service:"
report $store/machines/u1 | sed "s/^/#   /"
check "every escape from u1 is refused" all_refused $store/machines/u1
check "u1 and s1 have ranges of their own" bash -c "! grep -q \"uid_map 0 $users \" $store/machines/u1/var/lib/escape-probe.txt"
check "machinectl shows u1 run by its unit" bash -c "machinectl show u1 -p Unit | grep -q 'Unit=replica-machine@u1.service'"
equal "its unit has the tasks limit" 1024 "$(systemctl show -P TasksMax replica-machine@u1.service)"
equal "its unit's device policy is closed" closed "$(systemctl show -P DevicePolicy replica-machine@u1.service)"
check "it stops" systemctl stop replica-machine@u1.service

# In a set: forked with the set's limits and started with it.
mkdir -p /etc/replica/sets
printf '[Set]\nMachine=e1:debian12\nMemoryMax=768M\n' > /etc/replica/sets/escape.conf
check "e1 forks as a machine of the set" replica-machine fork e1 --set escape
lay_probe $store/machines/e1
check "the set starts" replica-machine set start escape
echo "# escape probe, started in a set:"
report $store/machines/e1 | sed "s/^/#   /"
check "every escape from e1 is refused" all_refused $store/machines/e1
equal "its scope has the set's memory limit" 805306368 "$(systemctl show -P MemoryMax machine-e1.scope)"
check "the set stops" replica-machine set stop escape

# Positive control: the explicit opt-out. Its root is the host's, and the probe gets through.
check "c1 forks with --private-users=no" replica-machine fork c1 --template debian12 --private-users=no
lay_probe $store/machines/c1
check "c1 starts" replica-machine start c1
echo "# escape probe, control (--private-users=no):"
report $store/machines/c1 | sed 's/^/#   /'
check "the control's root is the host's root" grep -q "uid_map 0 0 4294967295" $store/machines/c1/var/lib/escape-probe.txt
check "the control made a block device node" grep -q "^allowed mknod-block" $store/machines/c1/var/lib/escape-probe.txt
check "the control read the host's disk ($disk) through it" grep -q "^allowed read-block-device" $store/machines/c1/var/lib/escape-probe.txt
check "the control mounted it and read a host file on it" grep -q "^allowed mount-block-device" $store/machines/c1/var/lib/escape-probe.txt
check "the control mounted a fresh procfs and wrote through it" grep -q "^allowed fresh-procfs-vm-swappiness" $store/machines/c1/var/lib/escape-probe.txt
check "c1 stops" replica-machine stop c1

# For comparison: a plain systemd-nspawn -U boot of a snapshot of the template.
btrfs -q subvolume snapshot $store/templates/debian12 $store/plain-u
: > $store/plain-u/etc/machine-id
lay_probe $store/plain-u
systemd-nspawn --quiet --boot -U --register=no --private-network -D $store/plain-u --machine=plain-u --console=passive >/dev/null 2>&1 &
plain=$!
echo "# escape probe, plain systemd-nspawn -U:"
report $store/plain-u | sed 's/^/#   /'
check "under plain systemd-nspawn -U the same attempts are refused" bash -c "[ \$(grep -c '^refused ' $store/plain-u/var/lib/escape-probe.txt) = 15 ]"
kill -TERM $plain; wait $plain 2>/dev/null
btrfs -q subvolume delete $store/plain-u

# Where systemd runs but machined does not: the machine starts the same, unregistered, in a scope
# systemd-nspawn asks for itself (its device policy closed, its limits on it).
systemctl mask --runtime --now systemd-machined.service >/dev/null 2>&1
check "n1 forks" replica-machine fork n1 --template debian12 --tasks-max 512
check "n1 starts without machined" replica-machine start n1
# The guest's processes are in the scope (systemd-nspawn puts its child there): the child's cgroup.
child=$(cat /proc/$(cat /run/replica/machines/n1.pid)/task/*/children | awk '{print $1}')
scope=$(awk -F: '$2 == "" || $2 == "name=systemd" { n = split($3, part, "/"); for (i = 1; i <= n; i++) if (part[i] ~ /\.scope$/) { print part[i]; exit } }' /proc/$child/cgroup)
check "it is in a scope of its own ($scope)" bash -c "[ -n '$scope' ] && systemctl show -P ActiveState '$scope' | grep -q active"
check "machined knows nothing of it" bash -c "! machinectl list --no-legend 2>/dev/null | grep -q '^n1 '"
equal "the scope's device policy is closed" closed "$(systemctl show -P DevicePolicy "$scope")"
equal "the scope has its tasks limit" 512 "$(systemctl show -P TasksMax "$scope")"
check "n1 stops" replica-machine stop n1
systemctl unmask --runtime systemd-machined.service >/dev/null 2>&1

for machine in s1 u1 e1 c1 n1; do
  replica-machine stop $machine >/dev/null 2>&1
  check "$machine is removed" replica-machine remove $machine
done
check "no machine is left registered" bash -c "[ -z \"\$(machinectl list --no-legend)\" ]"
kill $target
rm -f /etc/replica/sets/escape.conf
check "the template is removed" replica-machine template remove debian12
finish
