# After scenario 10-postgresql and the reboot 11-nginx-after-reboot asked for (the root kept, /run
# fresh): PostgreSQL came back at boot, sandboxed again, on the same subvolume, its data whole.
. /e2e/lib.sh
pg=postgresql@15-main.service
name=postgresql@15-main
data=/var/lib/postgresql/15/main
sql() { runuser -u postgres -- psql -XAtq -c "$1" postgres; }
for _ in $(seq 200); do systemctl is-active -q $pg && break; sleep 0.05; done
equal "PostgreSQL came back at boot" active "$(systemctl is-active $pg)"
pid=$(head -1 /run/postgresql/15-main.pid)
contains "the postmaster's root is read-only again" " ro" "$(awk '$5 == "/" { print " " $6 }' /proc/$pid/mountinfo)"
equal "its data directory is the same subvolume" "btrfs $(cat /var/tmp/pg-subvolume)" \
  "$(stat -f -c %T /proc/$pid/root$data) $(stat -c %i $store/$name)"
equal "it runs as postgres with no capability" "postgres 0000000000000000" \
  "$(stat -c %U /proc/$pid) $(awk '/^CapEff/ { print $2 }' /proc/$pid/status)"
equal "its data is what it was before the reboot" "$(cat /var/tmp/pg-history)" "$(sql 'select count(*) from pgbench_history')"
out=$(runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_amcheck --heapallindexed -d postgres 2>&1; echo "status=$?")
equal "pg_amcheck finds nothing wrong" "status=0" "$out"
systemctl disable -q --now $pg
finish
