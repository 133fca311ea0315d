# What systemd applies is what the profile says, with systemd as the oracle: replica-shift prepare
# (the unit's ExecStartPre=+) asks PID 1 for the unit's properties and refuses a start where one
# differs; a drop-in edited by hand to drop the state bind is refused, naming BindPaths. Then the
# differential: 200 profiles generated from the grammar (random valid values, paths with blanks,
# quotes, %, non-ASCII, names with : and \x2d) are loaded into this systemd together, and for each
# `replica-shift verify` compares every property systemd reports with the plan: 0 differences.
# Then the check's cost at each start, and a start whose system bus only queues (before dbus.service).
. /e2e/lib.sh
unit=replica-check.service
# An operator's drop-in resetting the unit's binds (its state bind with them): what the check catches.
edit_by_hand() {
  mkdir -p /etc/systemd/system/$1.d
  printf '[Service]\nBindPaths=\n' >/etc/systemd/system/$1.d/zz-hand-edit.conf
  systemctl daemon-reload
}
undo_edit() { rm -r /etc/systemd/system/$1.d; systemctl daemon-reload; }
mkdir -p /etc/replica/services /srv/check
printf '[Service]\nType=oneshot\nExecStart=/bin/sh -c "echo ran >/var/lib/replica-check/ran"\n' >/etc/systemd/system/$unit
printf '[State]\nPath=/var/lib/replica-check\n[Sandbox]\nHardening=service\nUser=root\nReadOnlyPaths=/srv/check\n' \
  >/etc/replica/services/$unit.conf
systemctl daemon-reload
check "the checked unit starts" systemctl start $unit
equal "... its process ran on its subvolume" "ran" "$(cat $store/replica-check/ran 2>&1)"
check "replica-shift verify finds no difference" replica-shift verify $unit

edit_by_hand $unit
check "with the state bind dropped by hand, the start is refused" sh -c "! systemctl start $unit"
contains "... the journal names the property" "BindPaths is [] where the profile gives" "$(journalctl -q -o cat -n 20 -u $unit)"
undo_edit $unit
check "the control: without the edit it starts again" systemctl start $unit

# The differential suite.
RANDOM=2026
# One of the arguments, in $picked: never in a subshell, which would reseed RANDOM (bash 5.1+), so
# the same 200 profiles are made on every run.
pick() { local options=("$@"); picked=${options[RANDOM % ${#options[@]}]}; }
# say PREFIX OPTION...: the line PREFIX followed by one of the options.
say() { local prefix=$1; shift; pick "$@"; echo "$prefix$picked"; }
count=200
for i in $(seq $count); do
  name=replica-diff-$i
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >/etc/systemd/system/$name.service
  {
    echo "[State]"
    case $((RANDOM % 3)) in
      0) echo "Path=/srv/diff/$i/state" ;;
      1) echo "Path=/srv/diff/$i/a-data /srv/diff/$i/b@x+y~z" ;;
      2) pick a b c; echo "Path=/srv/diff/$i/st"; echo "[Snapshots]"; echo "Subvolume=diff:$i.$picked@x-y" ;;
    esac
    echo "[Sandbox]"
    if ((RANDOM % 2)); then pick nobody root daemon; echo "Hardening=service"; echo "User=$picked"; fi
    say ProtectSystem= strict full yes no
    say ProtectHome= yes read-only no
    say PrivateTmp= yes no
    ((RANDOM % 2)) && say ReadOnlyPaths= '"/srv/diff/with space"' /srv/diff/100% '-/srv/diff/é' '"/srv/diff/q'\''uote"' '"/srv/diff/d\"q"'
    ((RANDOM % 2)) && say "ReadWritePaths=-/srv/diff/$i/rw /srv/diff/" x%h y%h
    ((RANDOM % 2)) && echo "InaccessiblePaths=/srv/diff/$i/hidden"
    ((RANDOM % 2)) && say "BindReadOnlyPaths=/etc/hostname:/srv/diff/$i/host -/srv/diff/$i/src:/srv/diff/$i/dst:" rbind norbind
    if ((RANDOM % 2)); then
      pick 700 750 1777; mode=$picked; pick 1M 64K 2G; size=$picked
      say "TemporaryFileSystem=/srv/diff/$i/tmp:mode=0$mode,size=$size" '' ,noexec ,ro
    fi
    ((RANDOM % 2)) && echo "RuntimeDirectory=diff-$i diff-$i/sub"
    ((RANDOM % 3)) || echo "LogsDirectory=diff-$i"
    ((RANDOM % 3)) || echo "CacheDirectory=diff-$i"
    ((RANDOM % 2)) && say UMask= 0022 0027 0077 0002
    ((RANDOM % 2)) && say CapabilityBoundingSet= 'CAP_NET_BIND_SERVICE CAP_CHOWN' '~CAP_SYS_ADMIN CAP_SYS_MODULE' ''
    ((RANDOM % 3)) || echo "AmbientCapabilities=CAP_NET_BIND_SERVICE"
    ((RANDOM % 2)) && say NoNewPrivileges= yes no
    ((RANDOM % 2)) && say RestrictAddressFamilies= 'AF_UNIX AF_INET' '~AF_PACKET AF_NETLINK' none 'AF_INET6 AF_UNIX AF_NETLINK'
    ((RANDOM % 2)) && say RestrictNamespaces= yes 'uts ipc' 'net' no
    ((RANDOM % 3)) || say SystemCallFilter= @system-service '~@privileged @resources' '~mount:EPERM'
    ((RANDOM % 3)) || say SystemCallErrorNumber= EPERM EACCES
    for key in LockPersonality MemoryDenyWriteExecute RestrictRealtime RestrictSUIDSGID ProtectKernelTunables ProtectKernelModules \
               ProtectKernelLogs ProtectControlGroups ProtectClock ProtectHostname PrivateDevices; do
      ((RANDOM % 4)) || say "$key=" yes no
    done
  } >/etc/replica/services/$name.service.conf
done
systemctl daemon-reload
refused=0 differing=0 compared=0
for i in $(seq $count); do
  name=replica-diff-$i
  if grep -q "replica-shift refuse" /run/systemd/generator/$name.service.d/replica.conf; then
    refused=$((refused + 1)); echo "# refused: $name: $(replica-shift drop-in $name 2>&1 | head -1)"; continue
  fi
  compared=$((compared + 1))
  out=$(replica-shift verify $name 2>&1) || { differing=$((differing + 1)); echo "# $name: $out"; }
done
echo "# differential: $count profiles, $compared compared property by property, $refused refused by the generator, $differing differing"
equal "no generated profile was refused (each is valid)" 0 "$refused"
equal "systemd applies every property as planned, for all $count" "0 of $count" "$differing of $compared"

# The check's cost, as prepare pays it at each start (a figure, not a check): prepare of a running
# unit given its $INVOCATION_ID (the check runs: PID 1 is asked, the answer compared) against the
# same prepare without it (no check), alternating, 200 runs each, same run.
cost=replica-check-cost.service
printf '[Service]\nExecStart=/bin/sleep infinity\n' >/etc/systemd/system/$cost
printf '[State]\nPath=/var/lib/replica-check-cost\n[Sandbox]\nHardening=service\nUser=root\n' >/etc/replica/services/$cost.conf
systemctl daemon-reload
check "the measured unit runs" systemctl start $cost
invocation=$(systemctl show -P InvocationID $cost)
microseconds() { echo "${EPOCHREALTIME/./}"; }
with=0 without=0
for _ in $(seq 200); do
  start=$(microseconds); INVOCATION_ID=$invocation replica-shift prepare $cost >/dev/null; end=$(microseconds)
  with=$((with + end - start))
  start=$(microseconds); replica-shift prepare $cost >/dev/null; end=$(microseconds)
  without=$((without + end - start))
done
echo "# check cost: prepare $((with / 200)) µs with the check, $((without / 200)) µs without: $(((with - without) / 200)) µs per start"
edit_by_hand $cost
check "... the measured prepare is the checking one: with the bind dropped by hand it refuses" \
  sh -c "! INVOCATION_ID=$invocation replica-shift prepare $cost"
check "... and without the invocation id (no check) it does not" replica-shift prepare $cost
undo_edit $cost
systemctl stop $cost

# The check asks through dbus-daemon. A unit started before dbus.service finds its socket only
# queueing; the check then asks PID 1's private socket after 250 ms: the start is neither stuck nor
# unchecked. A socket nobody accepts on stands in for dbus.socket before dbus.service.
systemctl stop dbus.service dbus.socket
systemd-socket-activate -l /run/dbus/system_bus_socket sleep 600 >/dev/null 2>&1 &
queue=$!
for _ in $(seq 100); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.05; done
start=$(microseconds)
check "with the system bus only queueing, the checked unit starts" systemctl start $unit
echo "# the start took $((($(microseconds) - start) / 1000)) ms (250 ms of it waiting for the system bus)"
edit_by_hand $unit
check "... and with the state bind dropped by hand it is refused" sh -c "! systemctl start $unit"
contains "... naming the property" "BindPaths is [] where the profile gives" "$(journalctl -q -o cat -n 20 -u $unit)"
undo_edit $unit
kill $queue; wait $queue 2>/dev/null || true
rm -f /run/dbus/system_bus_socket
systemctl start dbus.socket dbus.service
check "... dbus is back" systemctl is-active --quiet dbus.service

rm -f /etc/systemd/system/replica-diff-*.service /etc/replica/services/replica-diff-*.conf /etc/systemd/system/$unit \
  /etc/replica/services/$unit.conf /etc/systemd/system/$cost /etc/replica/services/$cost.conf
systemctl daemon-reload
finish
