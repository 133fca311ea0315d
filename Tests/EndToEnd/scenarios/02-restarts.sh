# 50 restarts of the sample service: each start is prepared again, idempotently; no mount stacks up,
# neither in the service nor in the system; state carries over; nothing else changes.
. /e2e/lib.sh
install_sample
systemctl start $unit
view >/dev/null
pid=$(main_pid $unit)
service_before=$(own_mounts "$pid")
system_before=$(mount_table 1)
starts_before=$(cat $store/replica-sample/counter)
subvolumes_before=$(ls $store)

for i in $(seq 50); do
  systemctl restart $unit || { fail "restart $i"; break; }
  view >/dev/null                             # as in production: each start runs fully
done
view >/dev/null
pid=$(main_pid $unit)

equal "each of the 50 starts ran with the same state" $((starts_before + 50)) "$(cat $store/replica-sample/counter)"
check "the service has mounts of its own to compare (its tmpfs, binds, read-only copies)" test "$(echo "$service_before" | wc -l)" -ge 5
equal "the service's own mounts are the same after 50 restarts" "$service_before" "$(own_mounts "$pid")"
equal "the system's mount table is the same after 50 restarts" "$system_before" "$(mount_table 1)"
twice() { awk '{print $5}' "/proc/$1/mountinfo" | sort | uniq -d; }
equal "no mount point appears twice in the service (but those nspawn stacks for the system)" \
  "" "$(comm -23 <(twice "$pid") <(twice 1))"
equal "the store holds the same subvolumes" "$subvolumes_before" "$(ls $store)"
check "the unit is active" systemctl is-active $unit
equal "no unit failed" "" "$(systemctl list-units --failed --plain --no-legend)"
finish
