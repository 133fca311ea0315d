# The directives real daemons need (ProtectSystem=yes|full|strict, ProtectHome=, ReadWritePaths=,
# ReadOnlyPaths=, RuntimeDirectory=, LogsDirectory=, CacheDirectory=) mean the same under systemd
# and under replica-run: one probe, run by a oneshot unit with the generated drop-in and by
# replica-run from the same profile, reports the same view, line by line, for each profile.
. /e2e/lib.sh
probe=replica-probe.service
mkdir -p /etc/replica/services /srv/rw /srv/ro
printf '[Service]\nType=oneshot\nExecStart=/e2e/fixtures/probe systemd\n' >/etc/systemd/system/$probe
echo "something of root's" >/root/.probe-secret

profiles=(
  "ProtectSystem=full
ProtectHome=read-only
ReadOnlyPaths=/srv/ro
ReadWritePaths=-/srv/missing
RuntimeDirectory=probe
LogsDirectory=probe
CacheDirectory=probe"
  "ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=/srv/rw
RuntimeDirectory=probe
LogsDirectory=probe"
  "ProtectSystem=yes
ProtectHome=read-only
CacheDirectory=probe
LogsDirectory=probe"
  "ProtectSystem=no
ReadOnlyPaths=/srv/ro /etc
LogsDirectory=probe"
)
for profile in "${profiles[@]}"; do
  what=$(echo "$profile" | head -2 | tr '\n' ' ')
  printf '[Sandbox]\n%s\n' "$profile" >/etc/replica/services/$probe.conf
  systemctl daemon-reload
  rm -f /var/log/probe/report-*.txt
  check "[$what] the unit runs the probe under systemd" systemctl start $probe
  check "[$what] replica-run runs it from the same profile" replica-run $probe -- /e2e/fixtures/probe run
  equal "[$what] both saw the same" "$(cat /var/log/probe/report-systemd.txt 2>&1)" "$(cat /var/log/probe/report-run.txt 2>&1)"
done
report=$(cat /var/log/probe/report-run.txt)
contains "ReadOnlyPaths= made /etc read-only even without ProtectSystem=" "/etc=Read-only file system" "$report"
contains "and the rest writable" "/var/lib=ok" "$report"

printf '[Sandbox]\nProtectSystem=full\nProtectHome=read-only\nReadOnlyPaths=/srv/ro\nRuntimeDirectory=probe\nLogsDirectory=probe\nCacheDirectory=probe\n' \
  >/etc/replica/services/$probe.conf
replica-run $probe -- /e2e/fixtures/probe run
report=$(cat /var/log/probe/report-run.txt)
for line in "/etc=Read-only file system" "/usr=Read-only file system" "/var/lib=ok" "/root=Read-only file system" \
  "/srv/ro=Read-only file system" "/run/probe=ok" "/var/cache/probe=ok" "RUNTIME_DIRECTORY=/run/probe"; do
  contains "ProtectSystem=full and friends: $line" "$line" "$report"
done
rm -rf /etc/systemd/system/$probe /etc/replica/services/$probe.conf /root/.probe-secret /run/probe /var/log/probe /var/cache/probe
systemctl daemon-reload
finish
