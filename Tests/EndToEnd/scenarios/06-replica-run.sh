# replica-run, without systemd: the same profile gives the command the same view as the unit, by the
# same checks; the system's mount table is byte-identical before and after, also after 100 runs.
. /e2e/lib.sh
install_sample
systemctl restart $unit
under_systemd=$(grep -v -e '^pid=' -e '^start=' "$(view)")
systemctl stop $unit

check "replica-shift prepare works outside systemd too (a Nomad prestart task)" replica-shift prepare $unit
before=$(cat /proc/self/mountinfo)
check "replica-run runs the daemon's checks in the profile's sandbox" \
  replica-run $unit -- /e2e/fixtures/sample-daemon --report view-run.txt
under_replica_run=$(grep -v -e '^pid=' -e '^start=' $store/replica-sample/view-run.txt)
equal "the command sees what the service sees under systemd" "$under_systemd" "$under_replica_run"
equal "the system's mount table is byte-identical after it" "$before" "$(cat /proc/self/mountinfo)"

for i in $(seq 100); do replica-run $unit -- true || { fail "run $i"; break; }; done
equal "... and after 100 more runs" "$before" "$(cat /proc/self/mountinfo)"
out=$(replica-run $unit -- sh -c 'exit 7'; echo "status=$?")
contains "the command's exit status is passed through" "status=7" "$out"

# --standalone, the packaged static tool: it prepares and supervises (fork in a static executable),
# the command's code comes back, and the mount table is still as it was.
out=$(replica-run --standalone $unit -- sh -c 'test -d /var/lib/sample && exit 5'; echo "status=$?")
contains "--standalone runs the command in the sandbox and passes its status" "status=5" "$out"
equal "... leaving the mount table as it was" "$before" "$(cat /proc/self/mountinfo)"
finish
