# A service in its own network namespace, made by replica-net@.service from the profile: it has the
# leased address and a default route, and traffic flows to the bridge's gateway and back.
. /e2e/lib.sh
net=replica-netsample.service
mkdir -p /etc/replica/services
cp /e2e/fixtures/$net /etc/systemd/system/
cp /e2e/fixtures/$net.conf /etc/replica/services/
systemctl daemon-reload
check "the service starts with its network" systemctl start $net
pid=$(main_pid $net)
equal "it is in the pinned namespace" "$(stat -L -c %i /run/netns/replica-netsample)" "$(stat -L -c %i /proc/$pid/ns/net)"
inside=$(nsenter -t "$pid" -n ip -o addr show dev eth0)
contains "it has the leased address" "10.88.0.2/24" "$inside"
contains "it has the default route via the gateway" "default via 10.88.0.1 dev eth0" "$(nsenter -t "$pid" -n ip route)"
out=$(nsenter -t "$pid" -n timeout 3 bash -c 'echo > /dev/tcp/10.88.0.1/9' 2>&1)
contains "traffic reaches the gateway and comes back (a refused connection, not a timeout)" "Connection refused" "$out"
check "replica-net check finds no drift" replica-net check replica-netsample
check "the bridge's port is the service's veth" bash -c "ip -o link show master br-replica | grep -q rv-replica-nets"
systemctl stop $net
# StopWhenUnneeded= stops the network unit after the service; wait until it is inactive.
for _ in $(seq 100); do [ "$(systemctl show -P ActiveState replica-net@replica-netsample.service)" = inactive ] && break; sleep 0.05; done
check "stopping it removes its namespace" test ! -e /run/netns/replica-netsample
check "and its veth" bash -c "! ip link show rv-replica-nets 2>/dev/null"
equal "and gives its address back" "" "$(replica-net list | grep replica-netsample || true)"
finish
