# The store is gone: the unit fails with a clear message in the journal, and the service itself is
# never started unsandboxed.
. /e2e/lib.sh
broken=replica-nostore.service
mkdir -p /etc/replica/services /srv/not-a-store
sed 's/^Description=.*/Description=Replica sample whose store is missing/' /e2e/fixtures/replica-sample.service >/etc/systemd/system/$broken
sed 's|^Path=.*|Path=/var/lib/nostore\nStore=/srv/not-a-store|' /e2e/fixtures/replica-sample.service.conf >/etc/replica/services/$broken.conf
systemctl daemon-reload
since=$(date '+%Y-%m-%d %H:%M:%S')

if systemctl start $broken 2>/dev/null; then fail "the start fails"; else pass "the start fails"; fi
equal "the unit is failed" failed "$(systemctl is-active $broken)"
equal "its main process never ran" 0 "$(systemctl show -P ExecMainPID $broken)"
equal "nothing was written by the service" "" "$(ls -A /var/lib/nostore 2>/dev/null)"
log=$(journalctl -q -o cat -u $broken --since "$since")
contains "the journal names the store" "/srv/not-a-store" "$log"
contains "the journal says why" "not a btrfs filesystem" "$log"
contains "the journal says what to do" "mount btrfs there, or use the embedded loop image" "$log"
equal "nothing was made in the would-be store" "" "$(ls -A /srv/not-a-store)"
systemctl reset-failed $broken
finish
