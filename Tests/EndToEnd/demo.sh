# The README's main job, narrated: a service shifted onto the store under a real systemd, what it
# sees, snapshots taken and listed. Runs inside the container Tests/EndToEnd/run --demo boots.
. /e2e/lib.sh
set -e
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
indent() { sed 's/^/    /'; }

say "1. A service and its profile, the one file that says how it is sandboxed ($profile):"
install_sample
grep -v '^#' "$profile" | indent
echo "   Its config overlay, generation by generation (replica-shift config $unit):"
replica-shift config $unit | indent

say "2. The drop-in replica-generator wrote from the profile at daemon-reload (/run/systemd/generator/$unit.d/replica.conf):"
generated $unit | grep -v '^#' | indent

say "3. systemctl start $unit — ExecStartPre=+replica-shift prepares, systemd binds:"
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start $unit
report=$(view)
journalctl -q -o cat -u $unit --since "$since" | grep "^$unit:" | indent || true

say "4. What the service sees, from inside (its own report, $store/replica-sample/view.txt):"
grep -v '^pid=' "$report" | indent
echo "   and from /proc/MAINPID/mountinfo (root, state, config, tmp):"
awk '$5 == "/" || $5 == "/var/lib/sample" || $5 == "/etc/sample/sample.conf" || $5 == "/tmp" {
       for (i = 7; $i != "-"; i++); printf "%-26s %-7s %-6s %s\n", $5, $(i + 1), substr($6, 1, 2), $4 }' \
  /proc/"$(main_pid $unit)"/mountinfo | indent

say "5. Snapshots: a restart takes one before the service starts; replica-snap run is what replica-snap@.timer runs:"
sleep 1.1; systemctl restart $unit
sleep 1.1; replica-snap run replica-sample | indent
replica-snap list replica-sample | indent
echo "   Policy: Latest=3, so older ones are pruned (replica-snap prune --dry-run --explain replica-sample):"
replica-snap prune --dry-run --explain replica-sample | indent

say "6. The store (replica-store status):"
replica-store status | indent
