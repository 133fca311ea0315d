# A machine under a booted systemd: the suite's own Debian 12 rootfs imported as a template, a
# machine forked from it and started by replica-machine@.service (Type=notify), which is active
# only once the guest's systemd is up; the guest sees its seed; stopped and removed, nothing left.
. /e2e/lib.sh
template=/var/lib/replica-e2e/template
check "the template imports" replica-machine template import debian12 $template
check "a machine forks from it" replica-machine fork web1 --template debian12
check "the package raises the inotify limits many machines need (sysctl.d)" grep -qx "fs.inotify.max_user_instances = 1048576" /usr/lib/sysctl.d/60-replica.conf
check "replica-machine@web1 starts (Type=notify: it returns after READY)" systemctl start replica-machine@web1.service
equal "the unit is active" active "$(systemctl is-active replica-machine@web1.service)"
leader=$(guest_init replica-machine@web1.service)
check "the guest's systemd runs below the unit's systemd-nspawn" test -n "$leader"
state=$(nsenter --target "$leader" --all systemctl is-system-running 2>/dev/null)
check "the guest had finished starting when the unit became active ($state)" bash -c "[ '$state' = running ] || [ '$state' = degraded ]"
equal "the guest's hostname is its name" web1 "$(nsenter --target "$leader" --all hostname)"
check "the guest sees its NoCloud seed" nsenter --target "$leader" --all grep -q "local-hostname: web1" /var/lib/cloud/seed/nocloud/meta-data
# A guest that reboots: systemd-nspawn exits 133 and the unit starts the machine again.
before=$leader
nsenter --target "$leader" --all systemctl reboot
for _ in $(seq 200); do
  leader=$(guest_init replica-machine@web1.service)
  [ -n "$leader" ] && [ "$leader" != "$before" ] && [ "$(systemctl is-active replica-machine@web1.service)" = active ] && break
  sleep 0.05
done
check "after the guest's reboot the unit runs a new guest" bash -c "[ -n '$leader' ] && [ '$leader' != '$before' ]"
equal "the unit is active again" active "$(systemctl is-active replica-machine@web1.service)"
check "it stops" systemctl stop replica-machine@web1.service
equal "the unit is inactive" inactive "$(systemctl is-active replica-machine@web1.service)"
check "the machine is removed" replica-machine remove web1

# A machine with a network and a key: forked onto a bridge with a leased address, started by its
# unit; the guest has the address its seed names and the key in root's authorized_keys; stopping
# the unit removes its veth and namespace (ExecStopPost), remove gives the address back.
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq2LCe9Uq0H6yQ2Zc4w1cNQx9S4wW0x3S7yE3bYy3oI e2e@replica" > /root/e2e-key.pub
forked=$(replica-machine fork web2 --template debian12 --bridge br-e2e --subnet 10.87.0.0/24 --ssh-key /root/e2e-key.pub --json)
address=$(printf '%s' "$forked" | sed -n 's/.*"address": "\([^"]*\)".*/\1/p')
check "web2 forks with a leased address ($address)" test -n "$address"
check "replica-machine@web2 starts" systemctl start replica-machine@web2.service
leader=$(guest_init replica-machine@web2.service)
check "the guest has the address its seed names" bash -c "nsenter --target $leader --all ip -o -4 addr show dev eth0 | grep -q ' $address '"
check "the seed's network-config names it too" grep -q "addresses: \\[$address\\]" /run/replica/store/machines/web2/var/lib/cloud/seed/nocloud/network-config
check "root's authorized_keys holds the key" nsenter --target "$leader" --all grep -q e2e@replica /root/.ssh/authorized_keys
check "replica-machine list shows it running" bash -c "replica-machine list --json | grep -q '\"running\": true'"
check "it stops" systemctl stop replica-machine@web2.service
check "its namespace went with it" bash -c "! ip netns list | grep -q m-web2"
check "its veth went with it" bash -c "! ip -o link show | grep -q rv-m-web2"
check "it is removed" replica-machine remove web2
check "its address is given back" bash -c "! grep -rq replica-machine-web2 /var/lib/replica/net/leases"
check "the template is removed" replica-machine template remove debian12

# A tarball of a root (part of the same one), unpacked by tar in its sandbox: every file comes out
# with the owner, mode and type it had, set-user-ID bits included, as the folder's do.
tar -C $template -cpf /var/lib/replica-e2e/part.tar --numeric-owner etc usr/bin usr/sbin
check "a tarball imports" replica-machine template import fromtar /var/lib/replica-e2e/part.tar
listing() { (cd "$1" && find etc usr/bin usr/sbin -printf '%p %M %U:%G %l\n' | sort); }
expected=$(listing $template)
check "the folder's part holds files ($(printf '%s\n' "$expected" | wc -l))" test "$(printf '%s\n' "$expected" | wc -l)" -gt 500
equal "its files are the folder's, owners, modes and types kept" "$(printf '%s\n' "$expected" | md5sum)" "$(listing /run/replica/store/templates/fromtar | md5sum)"
check "a set-user-ID file came out set-user-ID" test -u /run/replica/store/templates/fromtar/usr/bin/su
check "the tarball's template is removed" replica-machine template remove fromtar
rm -f /var/lib/replica-e2e/part.tar
finish
