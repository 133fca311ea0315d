# replica-snap@.timer on a short schedule: snapshots appear, are pruned to the policy (Latest=3,
# PreserveMin=no), the journal has the structured events and the metrics file follows.
. /e2e/lib.sh
install_sample
systemctl start $unit
instance=replica-snap@replica-sample
timer=$instance.timer
mkdir -p /run/systemd/system/$timer.d
# Every 2 seconds instead of hourly; the shipped unit otherwise as it is.
printf '[Timer]\nOnCalendar=\nOnCalendar=*:*:0/2\nRandomizedDelaySec=0\nAccuracySec=1ms\n' \
  >/run/systemd/system/$timer.d/e2e.conf
systemctl daemon-reload
# --man=no: a minimal Debian has no man(1) to look the Documentation= pages up (verify-units does, on the host)
check "systemd accepts the shipped units" systemd-analyze verify --man=no /lib/systemd/system/replica-snap@.service
since=$(date '+%Y-%m-%d %H:%M:%S')
check "the timer starts" systemctl start $timer
# Enough runs for pruning to take effect: wait until the service has run 5 times.
runs() { journalctl -q -o cat -u $instance.service --since "$since" MESSAGE_ID=5eebad6a1130448b9897db83e533d165 | wc -l; }
for _ in $(seq 150); do [ "$(runs)" -ge 5 ] && break; sleep 0.1; done
systemctl stop $timer
# Let a run that was under way finish.
for _ in $(seq 50); do systemctl is-active -q $instance.service || break; sleep 0.1; done

created=$(runs)
check "the timer fired at least 5 times, each creating a snapshot" test "$created" -ge 5
equal "every run succeeded" "" "$(systemctl show -P Result $instance.service | grep -v success)"
list=$(replica-snap list replica-sample)
equal "pruned to the policy: the 3 latest are kept" 3 "$(grep -c '^replica-sample\.' <<<"$list")"
deleted=$(journalctl -q -o cat --since "$since" MESSAGE_ID=684d5666ba014c73b465ff5b7fa8b784 REPLICA_SUBVOLUME=replica-sample | wc -l)
check "the journal has deletion events (MESSAGE_ID=684d5666…)" test "$deleted" -ge 2
fields=$(journalctl -q -o verbose -n 1 MESSAGE_ID=5eebad6a1130448b9897db83e533d165)
contains "a creation event names the subvolume" "REPLICA_SUBVOLUME=replica-sample" "$fields"
contains "a creation event names the snapshot" "REPLICA_SNAPSHOT=replica-sample." "$fields"
newest=$(replica-snap list --json replica-sample | grep -o '"name" *: *"replica-sample\.[0-9TZ]*"' | tail -1 | grep -o 'replica-sample\.[0-9TZ]*')
metrics=/var/lib/replica/metrics/replica.prom
check "the metrics file exists" test -s $metrics
contains "metrics: the snapshot count" 'replica_snapshot_count{subvolume="replica-sample"} 3' "$(cat $metrics)"
last=$(sed -n 's/^replica_snapshot_last_success_timestamp_seconds{subvolume="replica-sample"} //p' $metrics)
check "metrics: the last success is this run's" test "${last%.*}" -ge "$(date -d "$since" +%s)"
check "replica-snap check is OK" replica-snap check --warning 1h --critical 2h replica-sample

# State only its owner may open (PostgreSQL's data directory is 0700 postgres): the hardened
# replica-snap@.service snapshots it too.
mkdir -p /var/lib/private-state && echo data >/var/lib/private-state/file
chown -R nobody:nogroup /var/lib/private-state && chmod 0700 /var/lib/private-state
printf '[State]\nPath=/var/lib/private-state\n[Snapshots]\nPreserve=1d\n' >/etc/replica/services/replica-private.service.conf
check "its state is shifted onto the store" replica-shift prepare replica-private.service
equal "... still nobody's, 0700" "nobody 700" "$(stat -c '%U %a' $store/replica-private)"
check "the hardened replica-snap@ unit snapshots it" systemctl start replica-snap@replica-private.service
equal "... one snapshot is there" 1 "$(replica-snap list replica-private | grep -c '^replica-private\.')"
rm -f /etc/replica/services/replica-private.service.conf
finish
