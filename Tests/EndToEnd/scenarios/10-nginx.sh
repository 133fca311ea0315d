# Debian's nginx, a daemon no one here wrote, put on Replica from its profile alone: state
# /var/lib/nginx on its subvolume, logs in LogsDirectory=, /etc/nginx as a config generation (a
# whole tree, its sites-enabled symlink kept), its own network reached through the loopback proxy,
# snapshotted by its timer. Scenario 11 reboots the container and checks it all again.
. /e2e/lib.sh
ngx=nginx.service
mkdir -p /etc/replica/services /etc/systemd/system/$ngx.d
# As on an operator's machine, nginx runs (unsandboxed, as Debian ships it) when its profile arrives:
# the first prepare refuses to copy a running daemon's state and makes nothing; stopped, it copies.
check "Debian's nginx runs as shipped" systemctl start $ngx
cp /e2e/fixtures/nginx.service.conf /etc/replica/services/$ngx.conf
out=$(replica-shift prepare $ngx 2>&1)
contains "the first prepare of a running nginx is refused, naming the fix" "Stop it first (systemctl stop $ngx)" "$out"
check "and makes no subvolume" test ! -e $store/nginx
check "nginx kept running" systemctl is-active -q $ngx
systemctl stop $ngx
cp /e2e/fixtures/nginx-pid.conf /etc/systemd/system/$ngx.d/pid.conf
# The operator's config: Debian's /etc/nginx with the pid file moved, taken whole as generation 1.
rm -rf /var/tmp/nginx-config
cp -a /etc/nginx /var/tmp/nginx-config
sed -i 's|^pid .*|pid /run/nginx/nginx.pid;|' /var/tmp/nginx-config/nginx.conf
check "the config tree becomes a generation (its absolute sites-enabled link is inside it)" \
  replica-shift config $ngx --file /etc/nginx=/var/tmp/nginx-config
systemctl daemon-reload
dropin=$(generated $ngx)
for line in "ProtectSystem=strict" "ProtectHome=yes" "RuntimeDirectory=nginx" "LogsDirectory=nginx" \
  "BindReadOnlyPaths=/var/lib/replica/config/nginx.service/current/etc/nginx:/etc/nginx:norbind" \
  "BindPaths=-/run/replica/store/nginx:/var/lib/nginx" "NetworkNamespacePath=/run/netns/nginx"; do
  contains "the generated drop-in has $line" "$line" "$dropin"
done
# Migrated now, as an operator puts an existing service on Replica: nginx's own ExecStartPre (nginx -t,
# which makes its temp folders in /var/lib/nginx) runs before the drop-in's, so the state must be
# on its subvolume before the first start.
check "replica-shift prepare migrates its state once" replica-shift prepare $ngx
check "nginx starts (and is enabled, so it comes back at boot)" systemctl enable --now $ngx
pid=$(main_pid $ngx)
contains "its root is read-only" " ro" "$(awk '$5 == "/" { print " " $6 }' /proc/$pid/mountinfo)"
equal "its state is on btrfs" btrfs "$(stat -f -c %T /proc/$pid/root/var/lib/nginx)"
equal "on its own subvolume (inode 256)" 256 "$(stat -c %i /proc/$pid/root/var/lib/nginx)"
equal "its config is generation 1, read-only" "pid /run/nginx/nginx.pid;" "$(grep '^pid' /proc/$pid/root/etc/nginx/nginx.conf)"
equal "its sites-enabled symlink resolves in the tree" "$(cat /var/tmp/nginx-config/sites-available/default | head -3)" \
  "$(head -3 /proc/$pid/root/etc/nginx/sites-enabled/default)"
check "its pid file is in its runtime directory" test -s /run/nginx/nginx.pid
contains "it has its leased address" "10.89.0.2/24" "$(ip -n nginx -o addr show dev eth0)"

systemd-run -q --unit=nginx-in replica-net proxy --listen unix:/run/nginx-in.sock --connect tcp:127.0.0.1:80 --connect-netns nginx
wait_for /run/nginx-in.sock
response=$(printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 5 socat -t 5 - UNIX-CONNECT:/run/nginx-in.sock)
contains "through the proxy, nginx serves its default site" "HTTP/1.1 200 OK" "$response"
contains "... Debian's page" "Welcome to nginx" "$response"
contains "its access log (LogsDirectory=) has the request" 'GET / HTTP/1.0' "$(cat /var/log/nginx/access.log)"
# Its timer, on a 1-second schedule instead of hourly (the shipped unit otherwise as it is).
mkdir -p /run/systemd/system/replica-snap@nginx.timer.d
printf '[Timer]\nOnCalendar=\nOnCalendar=*:*:*\nRandomizedDelaySec=0\nAccuracySec=1ms\n' \
  >/run/systemd/system/replica-snap@nginx.timer.d/e2e.conf
systemctl daemon-reload
check "its snapshot timer starts" systemctl start replica-snap@nginx.timer
for _ in $(seq 100); do replica-snap list nginx 2>/dev/null | grep -q '^nginx\.' && break; sleep 0.05; done
systemctl stop replica-snap@nginx.timer
for _ in $(seq 50); do systemctl is-active -q replica-snap@nginx.service || break; sleep 0.1; done
check "the timer's run snapshotted its state" bash -c "replica-snap list nginx | grep -q '^nginx\.'"
equal "and succeeded" success "$(systemctl show -P Result replica-snap@nginx.service)"
replica-snap list nginx | grep '^nginx\.' | head -1 | awk '{ print $1 }' >/var/tmp/nginx-snapshot
stat -c %i /run/replica/store/nginx >/var/tmp/nginx-subvolume
systemctl stop nginx-in
rm -rf /run/systemd/system/replica-snap@nginx.timer.d
systemctl daemon-reload
finish
