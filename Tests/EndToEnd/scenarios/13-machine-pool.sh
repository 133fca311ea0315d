# A warm pool under a booted systemd, asked of systemd and of the guests: replica-pool@.service
# boots the pool's machines into scopes of their own; a claimed machine answers to its new name
# from inside at once and its replacement boots in a transient unit of its own, outliving the
# claim; stopped, the claimed machine's scope (named when it booted in the pool) goes with it;
# emptied, nothing of the pool is left: no machine, scope, unit or file.
. /e2e/lib.sh
template=/var/lib/replica-e2e/template
check "the template imports" replica-machine template import debian12 $template
check "a pool of two is recorded (and filled)" replica-machine pool debian12 --size 2
check "replica-pool@debian12 starts (the pool is full already: nothing to do)" systemctl start replica-pool@debian12.service
equal "the unit is active" active "$(systemctl is-active replica-pool@debian12.service)"
pooled=$(replica-machine list --json | grep -o '"name": "pool-[0-9a-f]*"' | wc -l)
equal "two pool machines wait" 2 "$pooled"
first=$(replica-machine list --json | grep -o 'pool-[0-9a-f]*' | head -1)
scope() { echo "machine-$(systemd-escape "$1").scope"; }  # machined's name for machine NAME's scope
equal "each runs in a scope of its own (systemd's answer)" active "$(systemctl is-active "$(scope $first)")"
leader=$(guest_init machine:$first)
equal "the control: a pool machine's guest is named as the pool machine" "$first" "$(nsenter --target "$leader" --all hostname)"

echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq2LCe9Uq0H6yQ2Zc4w1cNQx9S4wW0x3S7yE3bYy3oI e2e-pool@replica" > /root/e2e-pool.pub
claimed=$(replica-machine claim job1 --template debian12 --ssh-key /root/e2e-pool.pub --json 2>&1)
was=$(printf '%s' "$claimed" | sed -n 's/.*"was": "\([^"]*\)".*/\1/p')
check "job1 is claimed from the pool ($was)" test -n "$was"
leader=$(guest_init machine:job1)
equal "its guest's hostname is its name, at once" job1 "$(nsenter --target "$leader" --all hostname)"
equal "... and its systemd's static hostname" job1 "$(nsenter --target "$leader" --all hostnamectl --static)"
check "root's authorized_keys holds the key given at claim" nsenter --target "$leader" --all grep -q e2e-pool@replica /root/.ssh/authorized_keys
equal "it still runs in the scope it booted in" active "$(systemctl is-active "$(scope $was)")"
fill=$(printf '%s' "$claimed" | sed -n 's/.*"refill": "journalctl -u \([^"]*\)".*/\1/p')
check "a replacement boots in a transient unit of its own ($fill)" test -n "$fill"
for _ in $(seq 300); do
  [ "$(replica-machine list --json | grep -o '"name": "pool-[0-9a-f]*"' | wc -l)" = 2 ] && break
  sleep 0.1
done
equal "the pool is full again" 2 "$(replica-machine list --json | grep -o '"name": "pool-[0-9a-f]*"' | wc -l)"
for _ in $(seq 100); do journalctl -q -o cat -u "$fill" | grep -q "pool debian12: 2 ready" && break; sleep 0.1; done
contains "... by that unit, as its journal says" "pool debian12: 2 ready, 1 booted" "$(journalctl -q -o cat -u "$fill")"
check "job1 stops" replica-machine stop job1
equal "its scope went with it" inactive "$(systemctl is-active "$(scope $was)" 2>/dev/null)"
check "job1 starts again under its own name" replica-machine start job1 --wait 60
leader=$(guest_init machine:job1)
equal "... still job1 inside" job1 "$(nsenter --target "$leader" --all hostname)"
check "job1 stops and is removed" bash -c "replica-machine stop job1 && replica-machine remove job1"

check "the pool empties" replica-machine pool debian12 --size 0
check "replica-pool@debian12 stops" systemctl stop replica-pool@debian12.service
equal "no machine is left" "" "$(replica-machine list --json | grep -o '"name": "[^"]*"')"
equal "no machine scope is left" "" "$(systemctl list-units --all --no-legend 'machine-pool*' 'machine-job1*' 2>/dev/null)"
equal "no fill unit is left" "" "$(systemctl list-units --all --no-legend 'replica-pool-fill-*' 2>/dev/null)"
check "no pool file is left" test ! -e $store/machines/.pools/debian12
check "the template is removed" replica-machine template remove debian12
finish
