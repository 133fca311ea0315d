# A service in its own network namespace (replica-net@.service, joined through the drop-in
# replica-generator writes): the leased address and default route, traffic to the bridge's gateway, and
# reachable through the loopback proxy both ways — a host UNIX socket to its port, and its own
# loopback port to a host UNIX socket — with no route or firewall rule between them.
. /e2e/lib.sh
net=replica-netsample.service
mkdir -p /etc/replica/services
cp /e2e/fixtures/$net /etc/systemd/system/
cp /e2e/fixtures/$net.conf /etc/replica/services/
systemctl daemon-reload
contains "the drop-in joins the namespace" "NetworkNamespacePath=/run/netns/replica-netsample" "$(generated $net)"
check "the service starts with its network" systemctl start $net
pid=$(main_pid $net)
equal "it is in the pinned namespace" "$(stat -L -c %i /run/netns/replica-netsample)" "$(stat -L -c %i /proc/$pid/ns/net)"
# replica-net@ runs in a mount namespace of its own (ProtectSystem=strict and the rest): PID 1 made
# the pin, as a transient mount unit, in the host's namespace.
equal "the pin is PID 1's mount unit" active "$(systemctl show -P ActiveState run-netns-replica\\x2dnetsample.mount)"
equal "the network unit ran sandboxed (ProtectSystem=strict)" strict "$(systemctl show -P ProtectSystem replica-net@replica-netsample.service)"
contains "it has the leased address" "10.88.0.2/24" "$(nsenter -t "$pid" -n ip -o addr show dev eth0)"
contains "it has the default route via the gateway" "default via 10.88.0.1 dev eth0" "$(nsenter -t "$pid" -n ip route)"
out=$(nsenter -t "$pid" -n timeout 3 bash -c 'echo > /dev/tcp/10.88.0.1/9' 2>&1)
contains "traffic reaches the gateway and comes back (a refused connection, not a timeout)" "Connection refused" "$out"
check "replica-net check finds no drift" replica-net check replica-netsample
# replica-netsample is longer than 12 bytes: its veth is rv-, 5 characters, a dot and a hash.
veth=$(replica-net up replica-netsample --dry-run --json | sed -n 's/.*"host_link": *"\([^"]*\)".*/\1/p')
contains "its veth's name is cut with a hash" "rv-repli." "$veth"
check "the bridge's port is the service's veth" bash -c "ip -o link show master br-replica | grep -q '$veth'"
check "its port is not reachable from outside its namespace" bash -c "! timeout 2 socat -u /dev/null TCP:127.0.0.1:8080 2>/dev/null"

# Host → service: a UNIX socket on the host forwards to its loopback port.
systemd-run -q --unit=netsample-in replica-net proxy --listen unix:/run/netsample.sock \
  --connect tcp:127.0.0.1:8080 --connect-netns replica-netsample
wait_for /run/netsample.sock
equal "through the proxy, a host UNIX socket reaches the service" "hello service" \
  "$(echo "hello service" | timeout 5 socat - UNIX-CONNECT:/run/netsample.sock)"
head -c 1048576 /dev/urandom >/tmp/payload
equal "1 MiB goes there and back unchanged" "$(sha256sum </tmp/payload)" \
  "$(timeout 10 socat -t 5 - UNIX-CONNECT:/run/netsample.sock </tmp/payload | sha256sum)"

# Service → host: its loopback port forwards to a UNIX socket on the host.
systemd-run -q --unit=host-echo socat UNIX-LISTEN:/run/host-echo.sock,fork EXEC:/bin/cat
systemd-run -q --unit=netsample-out replica-net proxy --listen tcp:127.0.0.1:9000 --listen-netns replica-netsample \
  --connect unix:/run/host-echo.sock
for _ in $(seq 100); do nsenter -t "$pid" -n bash -c 'echo > /dev/tcp/127.0.0.1/9000' 2>/dev/null && break; sleep 0.05; done
equal "through the proxy, the service's loopback port reaches a host UNIX socket" "hello host" \
  "$(echo "hello host" | nsenter -t "$pid" -n timeout 5 socat - TCP:127.0.0.1:9000)"

systemctl stop netsample-in netsample-out host-echo
check "a stopped proxy removes its socket" test ! -e /run/netsample.sock
systemctl stop $net
# StopWhenUnneeded= stops the network unit after the service; wait until it is inactive.
for _ in $(seq 100); do [ "$(systemctl show -P ActiveState replica-net@replica-netsample.service)" = inactive ] && break; sleep 0.05; done
check "stopping it removes its namespace" test ! -e /run/netns/replica-netsample
check "and PID 1's mount unit of its pin" bash -c "! systemctl is-active -q 'run-netns-replica\\x2dnetsample.mount'"
check "and its veth" bash -c "! ip link show '$veth' 2>/dev/null"
equal "and gives its address back" "" "$(replica-net list | grep replica-netsample || true)"
finish
