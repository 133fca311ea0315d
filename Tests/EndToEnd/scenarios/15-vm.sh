# Virtual machines under a booted systemd, from the guests' own side. A set of two containers and
# one q35 VM starts together, ready when all are; the VM's own systemd prints what it sees of
# itself on its console before READY (its hostname, its machine id, its TPM's endorsement key, its
# own name as its set's resolver answers it); a
# container of the set reaches the VM by its name over the bridge, IPv4 and IPv6. A second VM,
# started by replica-machine@.service (Type=notify), is active once its guest is READY, runs in its
# unit's cgroup, and its TPM is its own. A browser's websocket reaches the first VM's display
# through a socket unit that starts the proxy on the first connection. Stopped and removed,
# nothing is left: no process, tap, socket, unit, link or namespace. (Each VM boot here is QEMU's
# emulation: tens of seconds.)
. /e2e/lib.sh
in_machine() { local name=$1; shift; nsenter --target "$(guest_init "machine:$name")" --all -- "$@"; }
# The probe's line on a VM's console (waits up to 4 min for it); one field of it.
# (The guest's systemd writes its status to the same console: the line may follow its escapes.)
probe_of() { for _ in $(seq 1200); do grep -a -o -m1 'e2e-probe: hostname=.*' "/run/replica/machines/$1.log" 2>/dev/null && return; sleep 0.2; done; }
# A value ends where the guest's systemd may have written its status escapes right after it.
field() { tr ' ' '\n' | sed -n "s/^$1=\([[:alnum:].-]*\).*/\1/p"; }
listed() { replica-machine list --json | python3 -c "import json, sys; print([m['$2'] for m in json.load(sys.stdin)['machines'] if m['name'] == '$1'][0])"; }

links_before=$(ip -o link | awk -F': ' '{ print $2 }' | sort)
netns_before=$(ip netns | sort)
btrfs subvolume sync "$store" >/dev/null   # the space of earlier scenarios' templates, freed first

check "the VM template imports (booted once to check it)" replica-machine template import --vm guest /var/lib/replica-e2e/vm-template
# The same small root as a container's template (its kernel unused): the 2 GiB store holds both.
check "the container template imports" replica-machine template import base /var/lib/replica-e2e/vm-template
mkdir -p /etc/replica/sets
printf '[Set]\nMachine=c1:base c2:base v1:guest\nBridge=br-mix\nSubnet=10.93.0.0/24\nZone=e2e\n' >/etc/replica/sets/mix.conf
check "set mix starts: two containers and a VM, ready when all are" replica-machine set start mix --wait 400
equal "v1 is a VM" vm "$(listed v1 kind)"
equal "c1 is a container" container "$(listed c1 kind)"
p1=$(probe_of v1)
equal "the VM's guest sees its name as its hostname" v1 "$(field hostname <<<"$p1")"
equal "its machine id is the one chosen at fork" "$(listed v1 machine_id)" "$(field machine-id <<<"$p1")"
tpm1=$(field tpm <<<"$p1")
check "it has a TPM with an endorsement key ($tpm1)" test -n "$tpm1" -a "$tpm1" != none
v1_address=$(in_machine c1 getent ahostsv4 v1.mix.e2e | head -1 | cut -d' ' -f1)
contains "c1 resolves v1.mix.e2e to an address of the set's subnet" "10.93.0." "$v1_address"
equal "v1's resolver is its set's: its own name, the set's domain searched, resolves to the same" "$v1_address" "$(field name <<<"$p1")"
# Up to three tries: the emulated guest's answer can take longer than one try allows (CI saw none
# in 5 s once, the IPv6 try right after answered at once).
reach() {
  local out
  for _ in 1 2 3; do
    out=$(in_machine c1 timeout 10 socat -T 5 - "$1" </dev/null 2>&1)
    [ "$out" = "vm v1" ] && break
  done
  echo "$out"
}
equal "c1 reaches v1 by its name over the bridge" "vm v1" "$(reach TCP4:v1.mix.e2e:7000)"
equal "and over IPv6" "vm v1" "$(reach TCP6:v1.mix.e2e:7000)"

check "a second VM forks" replica-machine fork v2 --template guest
check "replica-machine@v2 starts (Type=notify: once the guest said READY)" systemctl start replica-machine@v2.service
equal "the unit is active" active "$(systemctl is-active replica-machine@v2.service)"
qemu2=$(cat /run/replica/machines/v2.pid)
contains "its QEMU runs in the unit's cgroup" "replica-machine@v2.service" "$(cat /proc/$qemu2/cgroup)"
p2=$(probe_of v2)
check "v2's TPM is its own: its endorsement key differs from v1's" test -n "$(field tpm <<<"$p2")" -a "$(field tpm <<<"$p2")" != "$tpm1"
equal "v2, in no set, searches no set's domain (the resolver's control)" none "$(field name <<<"$p2")"

check "v1's console opens on a websocket" replica-machine console v1 --listen 127.0.0.1:6080
equal "its socket unit listens" active "$(systemctl is-active replica-console-v1.socket)"
equal "no proxy runs before a connection" inactive "$(systemctl is-active replica-console-v1.service)"
equal "a browser's websocket gets the display's banner" "RFB 003.008" "$(/e2e/fixtures/websocket-banner 127.0.0.1 6080 2>&1)"

check "replica-machine@v2 stops (ACPI power-off)" systemctl stop replica-machine@v2.service
check "set mix stops" replica-machine set stop mix
check "no QEMU, swtpm or websockify is left" bash -c "! pgrep -f 'qemu-system|swtpm|websockify'"
equal "the console's socket unit is gone" inactive "$(systemctl is-active replica-console-v1.socket)"
check "no VM socket is left in /run/replica/machines" bash -c "! ls /run/replica/machines | grep -E '[.](qmp|vnc|tpm|notify)$'"
for name in c1 c2 v1 v2; do check "$name is removed" replica-machine remove "$name"; done
check "the templates are removed" bash -c "replica-machine template remove guest && replica-machine template remove base"
btrfs subvolume sync "$store" >/dev/null
equal "the links are as before" "$links_before" "$(ip -o link | awk -F': ' '{ print $2 }' | sort)"
equal "the namespaces are as before" "$netns_before" "$(ip netns | sort)"
finish
