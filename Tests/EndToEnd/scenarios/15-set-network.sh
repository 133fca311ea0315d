# A set's network under a booted systemd, from the machines' own side: two sets of three machines,
# each on a bridge of its own. Each machine resolves its set's others by name (its own resolver,
# the dnsmasq on its bridge, running as a unit) and reaches them over IPv4 and IPv6; it cannot
# reach the other set; it reaches an "outside" namespace standing in for the internet through NAT;
# a port forward from the host reaches a server in a machine, IPv4 and IPv6; the host resolves
# the machines through systemd-resolved. A machine on the "LAN" (a macvlan, started by its unit)
# takes its address from a DHCP server there. After removal, the ruleset, the links, the
# namespaces and the resolver are as before.
. /e2e/lib.sh
in_machine() { local name=$1; shift; nsenter --target "$(guest_init "machine:$name")" --all -- "$@"; }
ask() { timeout 5 socat -T 3 - "$@" </dev/null 2>/dev/null || echo unreachable; }
address_of() { in_machine "$1" ip -o "-$2" addr show dev eth0 scope global | awk '{ split($4, a, "/"); print a[1]; exit }'; }

# The world before: what must be the same after.
links_before=$(ip -o link | awk -F': ' '{ print $2 }' | sort)
netns_before=$(ip netns | sort)

# The "internet": a namespace behind the host's uplink, with no route back to the sets' subnets.
ip netns add outside
ip link add up0 type veth peer name eth0 netns outside
ip addr add 198.51.100.1/24 dev up0; ip addr add 2001:db8:61::1/64 dev up0 nodad; ip link set up0 up
ip -n outside addr add 198.51.100.2/24 dev eth0; ip -n outside addr add 2001:db8:61::2/64 dev eth0 nodad
ip -n outside link set eth0 up; ip -n outside link set lo up
ip route add default via 198.51.100.2; ip -6 route add default via 2001:db8:61::2
printf '#!/bin/sh\necho "internet $SOCAT_PEERADDR"\n' >/run/e2e-internet; chmod +x /run/e2e-internet
systemd-run -q --unit=e2e-internet4 ip netns exec outside socat TCP4-LISTEN:7000,fork,reuseaddr EXEC:/run/e2e-internet
systemd-run -q --unit=e2e-internet6 ip netns exec outside socat TCP6-LISTEN:7000,fork,reuseaddr,ipv6only=1 EXEC:/run/e2e-internet
# The "LAN": a veth stands in for the host's NIC; a DHCP server on a macvlan of it, in a namespace.
ip link add lan0 type veth peer name lan0p; ip link set lan0p up; ip link set lan0 up
ip netns add lan
ip link add dhcp0 link lan0 type macvlan mode bridge; ip link set dhcp0 netns lan
ip -n lan addr add 192.168.77.1/24 dev dhcp0; ip -n lan link set dhcp0 up
systemd-run -q --unit=e2e-dhcp ip netns exec lan dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --interface=dhcp0 \
  --bind-interfaces --dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,1h --dhcp-leasefile=/run/e2e-dhcp.leases
# systemd-nspawn takes only an interface udev has initialized; no udev runs in this container,
# so its database entry is what udev would have written.
mkdir -p /run/udev/data; echo I:1 >"/run/udev/data/n$(cat /sys/class/net/lan0/ifindex)"
ruleset_before=$(nft list ruleset)
check "systemd-resolved starts" bash -c "systemctl unmask -q systemd-resolved && systemctl start systemd-resolved"
resolver_before=$(resolvectl domain; resolvectl dns)

# The space of the templates earlier scenarios removed, freed first (btrfs frees it in the background).
btrfs subvolume sync "$store" >/dev/null
check "the template imports" replica-machine template import setbase /var/lib/replica-e2e/template
mkdir -p /etc/replica/sets
# Set SET: machines P1 to P3 on br-SET, subnet 10.91.N.0/24, a host port forwarded to one of them.
for spec in lab:a:1:a2:8080 ops:o:2:o1:8081; do
  IFS=: read -r name p n target port <<<"$spec"
  printf '[Set]\nMachine=%s\nBridge=br-%s\nSubnet=10.91.%s.0/24\nForward=tcp:%s:%s:80\nZone=e2e\n' \
    "${p}1:setbase ${p}2:setbase ${p}3:setbase" "$name" "$n" "$port" "$target" >/etc/replica/sets/$name.conf
done
check "set lab starts (three machines, ready)" replica-machine set start lab
check "set ops starts" replica-machine set start ops
# A server in a2 and in o1, each answering its own name (IPv4 and IPv6), waited for until it listens.
for m in a2 o1; do
  in_machine $m setsid -f socat TCP6-LISTEN:80,fork,reuseaddr,ipv6only=0 SYSTEM:"echo $m" </dev/null >/dev/null 2>&1
  for _ in $(seq 100); do [ -n "$(in_machine $m ss -Hltn 'sport = :80')" ] && break; sleep 0.05; done
done
a2v4=$(address_of a2 4) a2v6=$(address_of a2 6) o1v4=$(address_of o1 4)

# Names, from a machine's own resolver (its resolv.conf names its bridge's server and its domain).
equal "dnsmasq runs as a unit of its own" active "$(systemctl is-active 'replica-names@br\x2dlab.service')"
contains "a1 resolves a2 by its short name (IPv4)" "$a2v4" "$(in_machine a1 getent ahostsv4 a2)"
contains "and by its full name (IPv6, in the bridge's unique local /64)" "$a2v6" "$(in_machine a1 getent ahostsv6 a2.lab.e2e)"
equal "a1 reaches a2 by name over IPv4" a2 "$(in_machine a1 socat -T 3 - TCP4:a2:80 </dev/null)"
equal "and over IPv6" a2 "$(in_machine a1 socat -T 3 - TCP6:a2:80 </dev/null)"
equal "the control: o2 reaches o1, in its own set" o1 "$(in_machine o2 socat -T 3 - TCP4:o1:80 </dev/null)"
# Apart, out and in.
equal "a1 cannot reach o1 in the other set" unreachable "$(in_machine a1 bash -c "$(declare -f ask); ask TCP4:$o1v4:80")"
equal "a1 reaches the outside through NAT (IPv4), seen as the host" "internet 198.51.100.1" \
  "$(in_machine a1 socat -T 3 - TCP4:198.51.100.2:7000 </dev/null)"
equal "and over IPv6 (socat writes the address in full)" "internet [2001:0db8:0061:0000:0000:0000:0000:0001]" \
  "$(in_machine a1 socat -T 3 - TCP6:[2001:db8:61::2]:7000 </dev/null)"
equal "the forward from the host's address reaches a2's server (IPv4)" a2 "$(ip netns exec outside socat -T 3 - TCP4:198.51.100.1:8080 </dev/null)"
equal "and over IPv6" a2 "$(ip netns exec outside socat -T 3 - TCP6:[2001:db8:61::1]:8080 </dev/null)"
equal "nothing else comes in" unreachable "$(ip netns exec outside bash -c "$(declare -f ask); ask TCP4:$a2v4:80")"
# The host's own resolver: systemd-resolved asks the bridge's dnsmasq for the zone, and only for it.
contains "the host resolves a2.lab.e2e through systemd-resolved" "$a2v4" "$(resolvectl query a2.lab.e2e 2>&1)"
contains "and the reverse" "a2.lab.e2e" "$(resolvectl query "$a2v4" 2>&1)"
contains "br-lab answers for its zone only" "~lab.e2e" "$(resolvectl domain br-lab)"

# The LAN: a machine started by its unit gets its address from the LAN's DHCP server.
check "a machine forks onto the LAN" replica-machine fork l1 --template setbase --macvlan lan0
check "replica-machine@l1 starts" systemctl start replica-machine@l1.service
lan=
for _ in $(seq 100); do
  lan=$(nsenter --target "$(guest_init replica-machine@l1.service)" --all ip -o -4 addr show dev mv-lan0 2>/dev/null | awk '{ print $4 }')
  [ -n "$lan" ] && break; sleep 0.1
done
contains "its own DHCP client took an address from the LAN's server" "192.168.77." "$lan"
contains "the server leased it to l1" " ${lan%/*} l1 " "$(cat /run/e2e-dhcp.leases)"
check "replica-machine@l1 stops" systemctl stop replica-machine@l1.service

# Removal: nothing of the sets is left.
check "set lab stops" replica-machine set stop lab
check "set ops stops" replica-machine set stop ops
for m in a1 a2 a3 o1 o2 o3 l1; do replica-machine remove $m >/dev/null || fail "$m is removed"; done
check "the template is removed" replica-machine template remove setbase
btrfs subvolume sync "$store" >/dev/null   # its space free again for the scenarios after
equal "no dnsmasq unit is left" inactive "$(systemctl is-active 'replica-names@br\x2dlab.service')"
equal "the resolver is as before" "$resolver_before" "$(resolvectl domain; resolvectl dns)"
equal "the ruleset is as before" "$ruleset_before" "$(nft list ruleset)"
equal "IPv4 forwarding is off again on the uplink" 0 "$(cat /proc/sys/net/ipv4/conf/up0/forwarding)"
equal "and IPv6 forwarding host-wide" 0 "$(cat /proc/sys/net/ipv6/conf/all/forwarding)"
systemctl stop e2e-internet4 e2e-internet6 e2e-dhcp; systemctl stop systemd-resolved; systemctl mask -q systemd-resolved
ip link del up0; ip link del lan0; ip netns del outside; ip netns del lan; rm -rf /run/udev /run/e2e-internet /run/e2e-dhcp.leases
ip route flush default 2>/dev/null || true
equal "the links are as before" "$links_before" "$(ip -o link | awk -F': ' '{ print $2 }' | sort)"
equal "the namespaces are as before" "$netns_before" "$(ip netns | sort)"
finish
