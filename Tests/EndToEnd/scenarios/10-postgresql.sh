# Debian's PostgreSQL 15, a second daemon no one here wrote, put on Replica from its profile alone
# (fixtures/postgresql.service.conf): the cluster 15/main, a template instance, running unsandboxed
# as Debian ships it with data in it; stopped, its data directory (0700, postgres) migrated onto
# its subvolume, its config a generation, the preset as postgres. pgbench writes while its timer
# snapshots; a rollback to one of those snapshots starts and pg_amcheck finds nothing wrong.
# Scenario 11-postgresql-after-reboot checks it again after the reboot of 11-nginx-after-reboot.
. /e2e/lib.sh
pg=postgresql@15-main.service
name=postgresql@15-main
data=/var/lib/postgresql/15/main
bin=/usr/lib/postgresql/15/bin
sql() { runuser -u postgres -- psql -XAtq -c "$1" postgres; }
check "Debian's PostgreSQL runs as shipped" systemctl start $pg
check "a table of the operator's exists before Replica" sql "create table kept (note text); insert into kept values ('before replica')"
# The profile arrives; the first prepare of the running cluster is refused, then it is stopped.
mkdir -p /etc/replica/services
cp /e2e/fixtures/postgresql.service.conf /etc/replica/services/$pg.conf
contains "prepare refuses to copy the running cluster" "Stop it first (systemctl stop $pg)" "$(replica-shift prepare $name 2>&1)"
systemctl stop $pg
rm -rf /var/tmp/pg-config
cp -a /etc/postgresql/15/main /var/tmp/pg-config
echo "jit = off" >>/var/tmp/pg-config/postgresql.conf
check "its config tree becomes a generation" replica-shift config $name --file /etc/postgresql/15/main=/var/tmp/pg-config
systemctl daemon-reload
check "prepare migrates the cluster once" replica-shift prepare $name
equal "the subvolume keeps the data directory's owner and mode" "postgres 700" "$(stat -c '%U %a' $store/$name)"
equal "the original is kept aside, as it was" "postgres 700" "$(stat -c '%U %a' $data.replica-original.*)"
check "an immutable placeholder is left at the path" sh -c "lsattr -d $data | grep -q '^----i'"
check "PostgreSQL starts on Replica (and is enabled, so it comes back at boot)" systemctl enable --now $pg
pid=$(head -1 /run/postgresql/15-main.pid)
contains "the postmaster's root is read-only" " ro" "$(awk '$5 == "/" { print " " $6 }' /proc/$pid/mountinfo)"
equal "its data directory is its own subvolume (btrfs, inode 256)" "btrfs 256" \
  "$(stat -f -c %T /proc/$pid/root$data) $(stat -c %i /proc/$pid/root$data)"
equal "it runs as postgres with no capability and no_new_privs" "postgres 0000000000000000 1" \
  "$(stat -c %U /proc/$pid) $(awk '/^CapEff/ { print $2 }' /proc/$pid/status) $(awk '/^NoNewPrivs/ { print $2 }' /proc/$pid/status)"
equal "its config is the generation, jit off" "off" "$(sql 'show jit')"
equal "the operator's table came along" "before replica" "$(sql 'select note from kept')"
check "replica-shift verify: systemd applies what the profile says" replica-shift verify $name

check "pgbench initialises its tables" runuser -u postgres -- $bin/pgbench -q -i -s 2 postgres
runuser -u postgres -- $bin/pgbench -c 2 -T 6 postgres >/var/tmp/pgbench.log 2>&1 &
bench=$!
# Its timer, on a 1-second schedule instead of hourly, while pgbench writes.
mkdir -p "/run/systemd/system/replica-snap@$name.timer.d"
printf '[Timer]\nOnCalendar=\nOnCalendar=*:*:*\nRandomizedDelaySec=0\nAccuracySec=1ms\n' >"/run/systemd/system/replica-snap@$name.timer.d/e2e.conf"
systemctl daemon-reload
check "its snapshot timer starts" systemctl start "replica-snap@$name.timer"
sleep 4
systemctl stop "replica-snap@$name.timer"
wait $bench
contains "pgbench ran while the snapshots were taken" "number of failed transactions: 0" "$(cat /var/tmp/pgbench.log)"
for _ in $(seq 50); do systemctl is-active -q "replica-snap@$name.service" || break; sleep 0.1; done
equal "the timer's runs succeeded" success "$(systemctl show -P Result "replica-snap@$name.service")"
snapshots=$(replica-snap list $name | grep -c "^$name\.")
check "the timer took snapshots while pgbench wrote ($snapshots)" test "$snapshots" -ge 2
chosen=$(replica-snap list $name | grep "^$name\." | tail -1 | awk '{ print $1 }')
sql "insert into kept values ('after the snapshot')"
# Roll back to a snapshot taken mid-write: crash-consistent, PostgreSQL replays its WAL.
systemctl stop $pg
check "rollback to $chosen" replica-shift rollback $name "$chosen"
check "PostgreSQL starts on the rolled-back state" systemctl start $pg
equal "the row written after the snapshot is gone" "before replica" "$(sql 'select note from kept order by note')"
out=$(runuser -u postgres -- $bin/pg_amcheck --install-missing --heapallindexed -d postgres 2>&1; echo "status=$?")
equal "pg_amcheck finds nothing wrong" "status=0" "$out"
sql "select count(*) from pgbench_history" >/var/tmp/pg-history
stat -c %i $store/$name >/var/tmp/pg-subvolume
rm -rf "/run/systemd/system/replica-snap@$name.timer.d"
systemctl daemon-reload
finish
