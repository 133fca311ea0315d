# Rollback of the service's state to a snapshot, then start: the service sees the old state; the
# state before the rollback is kept as a snapshot, and all snapshots are still the policy's.
. /e2e/lib.sh
install_sample
systemctl start $unit
echo "the old state" >$store/replica-sample/note.txt
sleep 1.1                                     # not the second of the start's own snapshot
systemctl restart $unit                       # SnapshotOnStart: a snapshot holds "the old state"
sleep 1.1                                     # snapshot names have one-second resolution
old=$(replica-snap list replica-sample | awk '/^replica-sample\./ { n = $1 } END { print n }')
check "a snapshot holds the old note" grep -q "the old state" $store/snapshots/replica-sample/$old/note.txt
echo "the new state" >$store/replica-sample/note.txt
old_counter=$(cat $store/snapshots/replica-sample/$old/counter)

out=$(replica-shift rollback $unit "$old" 2>&1)
contains "a running service is not rolled back" "stop the service first" "$out"
equal "and its state is untouched" "the new state" "$(cat $store/replica-sample/note.txt)"

systemctl stop $unit
check "replica-shift rollback succeeds once it is stopped" replica-shift rollback $unit "$old"
sleep 1.1
systemctl start $unit
report=$(view)
equal "the service sees the old state" "the old state" "$(nsenter -t "$(main_pid $unit)" -m cat /var/lib/sample/note.txt)"
equal "its counter continued from the snapshot's" $((old_counter + 1)) "$(sed -n 's/^start=//p' "$report")"
saved=$(grep -l "the new state" $store/snapshots/replica-sample/*/note.txt | head -1)
check "the state before the rollback is kept as a snapshot" test -n "$saved"
out=$(replica-snap list replica-sample 2>&1)
check "no snapshot became foreign after the rollback" bash -c "! grep -qi foreign <<<\"\$0\"" "$out"
check "replica-snap prune still works" replica-snap prune replica-sample
finish
