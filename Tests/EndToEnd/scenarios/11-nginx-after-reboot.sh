# e2e: reboot first
# After scenario 10 and a reboot (the root kept, /run fresh): nginx came back at boot, again
# read-only-rooted, on its subvolume, its drop-in made by the generator at this boot; its snapshot
# is still there. Then a broken profile keeps it from starting, with the error in the journal.
. /e2e/lib.sh
ngx=nginx.service
for _ in $(seq 200); do systemctl is-active -q $ngx && break; sleep 0.05; done
equal "nginx came back at boot" active "$(systemctl is-active $ngx)"
check "its drop-in was made by the generator at this boot" test -s /run/systemd/generator/$ngx.d/replica.conf
pid=$(main_pid $ngx)
contains "its root is read-only again" " ro" "$(awk '$5 == "/" { print " " $6 }' /proc/$pid/mountinfo)"
equal "its state is on the same subvolume" "btrfs $(cat /var/tmp/nginx-subvolume)" \
  "$(stat -f -c %T /proc/$pid/root/var/lib/nginx) $(stat -c %i /run/replica/store/nginx)"
check "its snapshot from before the reboot is still listed" bash -c "replica-snap list nginx | grep -q '^$(cat /var/tmp/nginx-snapshot)'"
systemd-run -q --unit=nginx-in replica-net proxy --listen unix:/run/nginx-in.sock --connect tcp:127.0.0.1:80 --connect-netns nginx
wait_for /run/nginx-in.sock
contains "it serves again through the proxy" "HTTP/1.1 200 OK" \
  "$(printf 'GET /?again HTTP/1.0\r\nHost: localhost\r\n\r\n' | timeout 5 socat -t 5 - UNIX-CONNECT:/run/nginx-in.sock)"
equal "its access log kept the requests of both boots" 2 "$(grep -c -e 'GET / HTTP/1.0' -e 'GET /?again HTTP/1.0' /var/log/nginx/access.log)"
systemctl stop nginx-in

# A typo in the profile: nginx must not start, not even unsandboxed.
profile=/etc/replica/services/$ngx.conf
cp $profile /var/tmp/nginx-profile.good
printf '[Sandbox]\nProtectSytem=strict\n' >>$profile
systemctl daemon-reload
since=$(date '+%Y-%m-%d %H:%M:%S')
check "the broken profile keeps nginx from starting" bash -c "! systemctl restart $ngx"
equal "nginx is not running" "" "$(pgrep -x nginx || true)"
contains "the journal names the file, line and the nearest key" "nginx.service.conf:23: ProtectSytem=: unknown key in [Sandbox]; did you mean ProtectSystem=?" \
  "$(journalctl -q -o cat -u $ngx --since "$since")"
cp /var/tmp/nginx-profile.good $profile
systemctl daemon-reload
check "fixed and reloaded, it starts again" systemctl start $ngx
systemctl disable -q --now $ngx
finish
