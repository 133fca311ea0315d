# The sample service with ExecStartPre=+replica-shift and the generated drop-in: what it sees,
# checked from inside (its own report) and from /proc/MAINPID/mountinfo.
. /e2e/lib.sh

# State that existed before Replica: replica-shift migrates it onto the store once.
mkdir -p /var/lib/sample
echo "written before the shift" >/var/lib/sample/legacy.txt
install_sample
check "systemd accepts the generated drop-in" systemd-analyze verify /etc/systemd/system/$unit
check "the service starts" systemctl start $unit
pid=$(main_pid $unit)
check "it is running" test "$pid" -gt 0
view=$(cat "$(view)")
seen() { sed -n "s/^$1=//p" <<<"$view"; }

# From inside the service.
equal "/ is read-only inside" "Read-only file system" "$(seen root)"
equal "/etc is read-only inside" "Read-only file system" "$(seen etc)"
equal "/usr is read-only inside" "Read-only file system" "$(seen usr)"
equal "its state dir is writable" ok "$(seen state)"
equal "its state dir is on btrfs (statfs)" btrfs "$(seen state_fs)"
equal "its state dir is a subvolume's root (inode 256)" 256 "$(seen state_inode)"
equal "the state that was there before was migrated" "written before the shift" "$(seen legacy)"
equal "/tmp is a private tmpfs" tmpfs "$(seen tmp_fs)"
equal "/tmp is writable" ok "$(seen tmp)"
equal "/tmp is empty at start" 0 "$(seen tmp_entries_at_start)"
equal "its config file is the current generation's" "greeting=hello from generation 1" "$(seen config)"
equal "its config file is read-only" "Read-only file system" "$(seen config_write)"
equal "an inaccessible path is an empty mode-000 directory" "mode 0, 0 entries" "$(seen root_home)"
check "(where /root does have files)" test -n "$(ls -A /root)"
check "the host's /tmp does not have the service's files" test ! -e /tmp/used-by-this-start

# From the service's mount table.
mounts=$(cat /proc/$pid/mountinfo)
field() { awk -v mp="$1" -v f="$2" '$5 == mp { v = $f } END { print v }' <<<"$mounts"; }
options() { awk -v mp="$1" '$5 == mp { v = $6 } END { print v }' <<<"$mounts"; }
fstype() { awk -v mp="$1" '$5 == mp { for (i = 7; $i != "-"; i++); v = $(i + 1) } END { print v }' <<<"$mounts"; }
contains "mountinfo: / is mounted ro" "ro" "$(options / | cut -d, -f1)"
contains "mountinfo: /usr is mounted ro (the whole tree)" "ro" "$(awk '$5 == "/usr" || $5 == "/" { print $6 }' <<<"$mounts" | tail -1 | cut -d, -f1)"
equal "mountinfo: /var/lib/sample is btrfs" btrfs "$(fstype /var/lib/sample)"
equal "mountinfo: /var/lib/sample is the subvolume replica-sample" /replica-sample "$(field /var/lib/sample 4)"
equal "mountinfo: /var/lib/sample is read-write" rw "$(options /var/lib/sample | cut -d, -f1)"
equal "mountinfo: /etc/sample/sample.conf is ro" ro "$(options /etc/sample/sample.conf | cut -d, -f1)"
generation=$(readlink /var/lib/replica/config/$unit/current)
contains "mountinfo: the config file comes from the current generation" "$generation/etc/sample/sample.conf" "$(field /etc/sample/sample.conf 4)"
equal "mountinfo: /tmp is tmpfs" tmpfs "$(fstype /tmp)"

# What an operator checks with the tools.
check "replica-shift status: no config drift" replica-shift status $unit --pid "$pid"
check "replica-snap sees the pre-start snapshot" bash -c "replica-snap list replica-sample | grep -q 'replica-sample\.'"

# A new config generation reaches the service at the next start; the old one is one step back.
replica-shift config $unit --file /etc/sample/sample.conf=/e2e/fixtures/sample.conf.v2 >/dev/null
out=$(replica-shift status $unit --pid "$pid")
contains "replica-shift status reports the drift before the restart" "differs from generation" "$out"
systemctl restart $unit
equal "after a restart the service sees generation 2" "greeting=hello from generation 2" "$(sed -n 's/^config=//p' "$(view)")"
replica-shift config $unit --rollback >/dev/null
systemctl restart $unit
equal "after a config rollback it sees generation 1 again" "greeting=hello from generation 1" "$(sed -n 's/^config=//p' "$(view)")"
finish
