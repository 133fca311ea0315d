# Sourced by each scenario, which runs inside the booted container. Each check prints one TAP-style
# line, "ok - WHAT" or "not ok - WHAT" with what was seen; a scenario fails if any check failed.
set -uo pipefail
failures=0
unit=replica-sample.service
profile=/etc/replica/services/$unit.conf
store=/run/replica/store

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; shift; for line in "$@"; do echo "#   $line"; done; failures=$((failures + 1)); }

# check WHAT COMMAND...: passes when the command succeeds.
check() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then pass "$what"; else fail "$what" "command: $*" "output: ${out:0:600}"; fi
}

# equal WHAT EXPECTED ACTUAL
equal() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi
}

# contains WHAT NEEDLE HAYSTACK
contains() {
  if [[ "$3" == *"$2"* ]]; then pass "$1"; else fail "$1" "expected to contain: $2" "actual: ${3:0:600}"; fi
}

finish() {
  if ((failures)); then echo "# $failures check(s) failed"; exit 1; fi
  exit 0
}

main_pid() { systemctl show -P MainPID "$1"; }

# The pid of a machine's systemd, below its systemd-nspawn: of the unit UNIT's main process, or of
# the one recorded for machine NAME started from a shell (machine:NAME). Waits up to 5 s for it.
guest_init() {
  local pid found=
  for _ in $(seq 100); do
    case $1 in
      machine:*) pid=$(head -1 "/run/replica/machines/${1#machine:}.pid" 2>/dev/null) ;;
      *) pid=$(systemctl show -P MainPID "$1") ;;
    esac
    for child in $(cat /proc/$pid/task/*/children 2>/dev/null); do
      for inner in $child $(cat /proc/$child/task/*/children 2>/dev/null); do
        [ "$(cat /proc/$inner/comm 2>/dev/null)" = systemd ] && found=$inner
      done
    done
    [ -n "$found" ] && break
    sleep 0.05
  done
  echo "$found"
}

# Waits (up to 10 s) until the running sample daemon has written its report, and prints its path.
view() {
  local file=$store/replica-sample/view.txt pid
  for _ in $(seq 200); do
    pid=$(main_pid $unit)
    [ "$pid" != 0 ] && [ "$(sed -n 's/^pid=//p' $file 2>/dev/null)" = "$pid" ] && break
    sleep 0.05
  done
  echo "$file"
}

# waits until FILE exists (up to 10 s)
wait_for() { for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# The sample service as an operator sets it up: the unit, its profile, a config generation, then
# daemon-reload (replica-generator writes the drop-in). Idempotent.
install_sample() {
  mkdir -p /etc/replica/services
  cp /e2e/fixtures/replica-sample.service /etc/systemd/system/
  cp /e2e/fixtures/replica-sample.service.conf "$profile"
  if [ -z "$(replica-shift config $unit)" ]; then
    replica-shift config $unit --file /etc/sample/sample.conf=/e2e/fixtures/sample.conf.v1 >/dev/null
  fi
  if [ "${REPLICA_E2E_BREAK:-}" = drop-in ]; then
    # A later drop-in that resets every sandbox directive the generated one sets.
    mkdir -p /run/systemd/system/$unit.d
    printf '[Service]\nProtectSystem=no\nTemporaryFileSystem=\nBindPaths=\nBindReadOnlyPaths=\nInaccessiblePaths=\n' \
      >/run/systemd/system/$unit.d/zz-break.conf
  fi
  systemctl daemon-reload
}

# The drop-in replica-generator wrote for a unit.
generated() { cat "/run/systemd/generator/$1.d/replica.conf"; }

# A mount table with what a new namespace renumbers taken out (mount IDs, peer group numbers, and
# the anonymous device numbers of fresh instances such as the procfs each start mounts; the
# propagation kind stays), to compare two.

# The mounts of a process that the system (PID 1) does not have as they are: the sandbox's own
# (its tmpfs, binds, read-only copies), not mounts the host adds meanwhile, which propagate into it
# unchanged. Mount point, root, per-mount options, then type, source and filesystem options.
own_mounts() {
  local key='{ for (i = 7; $i != "-"; i++); line = $5 " " $4 " " $6; for (j = i + 1; j <= NF; j++) line = line " " $j; print line }'
  comm -23 <(awk "$key" "/proc/$1/mountinfo" | sort) <(awk "$key" /proc/1/mountinfo | sort)
}

mount_table() { awk '{ $1 = ""; $2 = ""; if ($3 ~ /^0:/) $3 = "0:anonymous"; print }' "/proc/$1/mountinfo" | sed -E 's/(shared|master|propagate_from):[0-9]+/\1/g'; }
