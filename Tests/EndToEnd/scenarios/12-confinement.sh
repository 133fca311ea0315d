# Confinement the same under systemd and under replica-run: the probe (fixtures/confinement-probe.c)
# tries some 80 things a confined service must not do or must still do, and prints each outcome; its
# report from a oneshot unit with the generated drop-in and from replica-run with the same profile
# must be identical, byte for byte, for each profile below. Dropping one directive from one side
# must show.
. /e2e/lib.sh
confine=replica-confine.service
out=/run/replica-confine
mkdir -p /etc/replica/services $out
cat >/etc/systemd/system/$confine <<UNIT
[Service]
Type=oneshot
ExecStart=/usr/local/bin/replica-confinement-probe /tmp
StandardOutput=truncate:$out/systemd.txt
UNIT
# replica-run started by this system's systemd as the unit is, from a plain unit with no sandbox of
# its own (as Nomad's raw_exec runs it), so both begin with the same privileges: here, those
# systemd-nspawn leaves the container.
cat >/etc/systemd/system/replica-confine-run.service <<UNIT
[Service]
Type=oneshot
ExecStart=/usr/bin/replica-run $confine -- /usr/local/bin/replica-confinement-probe /tmp
StandardOutput=truncate:$out/run.txt
UNIT

hardened="ProtectSystem=strict
PrivateTmp=yes
User=nobody
Group=nogroup
UMask=0027
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
PrivateDevices=yes"
root_partial="ProtectSystem=strict
PrivateTmp=yes
CapabilityBoundingSet=~CAP_SYS_ADMIN CAP_SYS_MODULE
SystemCallFilter=~@mount:EPERM @reboot @swap @module @raw-io @debug @obsolete @cpu-emulation
RestrictNamespaces=~user net
RestrictAddressFamilies=~AF_PACKET
ProtectKernelTunables=yes
LockPersonality=yes"
unconfined="ProtectSystem=strict
PrivateTmp=yes"
# The preset as root, said knowingly: no capabilities, yet uid 0.
root_preset="Hardening=service
User=root"

# probe NAME PROFILE: runs the probe both ways; prints nothing, leaves systemd.txt and run.txt.
probe() {
  printf '[Sandbox]\n%s\n' "$2" >/etc/replica/services/$confine.conf
  systemctl daemon-reload
  rm -f $out/*.txt
  check "[$1] the unit runs the probe under systemd" systemctl start $confine
  check "[$1] replica-run runs it from a plain unit" systemctl start replica-confine-run.service
}
# Another unit's credentials exist while the probes run: neither way shows them.
systemd-run -q --unit=replica-confine-cred -p SetCredential=token:s3cret -p RemainAfterExit=yes true
for name in hardened root_partial unconfined root_preset; do
  probe $name "${!name}"
  if cmp -s $out/systemd.txt $out/run.txt; then pass "[$name] the reports are identical"; else
    fail "[$name] the reports are identical" "$(diff $out/systemd.txt $out/run.txt | head -30 | tr '\n' ' ')" "$(journalctl -q -o cat -n 3 -u replica-confine-run.service)"; fi
  cp $out/run.txt $out/$name.report
done

report=$(cat $out/hardened.report)
for line in "NoNewPrivs:	1" "Seccomp:	2" "CapEff:	0000000000000400" "CapBnd:	0000000000000400" "CapAmb:	0000000000000400" \
  "remount_root_rw=EPERM" "mount=EPERM" "packet_socket=EAFNOSUPPORT" "unshare_net=EPERM" \
  "i386_call=killed:SYS" "x32_call=killed:SYS" "mmap_wx=EPERM" "chmod_suid=EPERM" "sethostname=EPERM" "bind_port_79=ok" "thread=ok" \
  "Uid:	65534	65534	65534	65534" "Umask:	0027" "read_dev_kmsg=ENOENT" "dev=char fd full hugepages log mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"; do
  contains "hardened: $line" "$line" "$report"
done
contains "root_partial: ProtectKernelTunables= makes /proc/sys read-only for root" "write_proc_sys=EROFS" "$(cat $out/root_partial.report)"
contains "root_partial: the deny list's own errno" "pivot_root=EPERM" "$(cat $out/root_partial.report)"
contains "root_partial: the deny list kills by default" "reboot=killed:SYS" "$(cat $out/root_partial.report)"
contains "unconfined: a read-only root alone can be remounted (what the confinement prevents)" "remount_root_rw=ok" "$(cat $out/unconfined.report)"
for name in hardened root_partial unconfined root_preset; do
  report=$(cat $out/$name.report)
  for folder in /run/replica/store /run/replica /var/lib/replica /etc/replica; do
    contains "$name: $folder is out of reach" "reach_$folder=" "$(grep -E "^reach_$folder=(EACCES|ENOENT|0 entries)$" <<<"$report")"
  done
  contains "$name: no other unit's credentials" "reach_/run/credentials=" "$(grep -E '^reach_/run/credentials=(EACCES|ENOENT|0 entries)$' <<<"$report")"
done
contains "root_preset: /dev cannot be written, not even by root" "write_dev=EROFS" "$(cat $out/root_preset.report)"
systemctl stop replica-confine-cred

# Two services, each probing the other's state on the store, under systemd and under replica-run
# (as root with the preset, and both as the same user, so only the mounts keep them apart).
for unit in replica-peer-a replica-peer-b; do
  other=replica-peer-$([ $unit = replica-peer-a ] && echo b || echo a)
  cat >/etc/systemd/system/$unit.service <<UNIT
[Service]
Type=oneshot
ExecStart=/usr/local/bin/replica-confinement-probe /tmp $store/$other/secret
StandardOutput=truncate:$out/$unit-systemd.txt
UNIT
  cat >/etc/systemd/system/$unit-run.service <<UNIT
[Service]
Type=oneshot
ExecStart=/usr/bin/replica-run $unit.service -- /usr/local/bin/replica-confinement-probe /tmp $store/$other/secret
StandardOutput=truncate:$out/$unit-run.txt
UNIT
done
for user in root nobody; do
  for unit in replica-peer-a replica-peer-b; do
    printf '[State]\nPath=/var/lib/%s-%s\n[Snapshots]\nSubvolume=%s\n[Sandbox]\nHardening=service\nUser=%s\n' \
      $unit $user $unit $user >/etc/replica/services/$unit.service.conf
  done
  systemctl daemon-reload
  for unit in replica-peer-a replica-peer-b; do
    btrfs -q subvolume delete "$store/$unit" 2>/dev/null || true
    check "[$user] $unit starts under systemd (its state made)" systemctl start $unit.service
    echo "$unit's secret" >"$store/$unit/secret"
    chown $user "$store/$unit/secret"; chmod 600 "$store/$unit/secret"
  done
  for unit in replica-peer-a replica-peer-b; do
    systemctl start $unit.service; systemctl start $unit-run.service
    if cmp -s $out/$unit-systemd.txt $out/$unit-run.txt; then pass "[$user] $unit: the reports are identical"; else
      fail "[$user] $unit: the reports are identical" "$(diff $out/$unit-systemd.txt $out/$unit-run.txt | head -20 | tr '\n' ' ')"; fi
    report=$(cat $out/$unit-run.txt)
    contains "[$user] $unit cannot read the other's state" "read_peer=" "$(grep -E '^read_peer=(EACCES|ENOENT)$' <<<"$report")"
    contains "[$user] $unit does not see the store" "reach_/run/replica/store=" "$(grep -E '^reach_/run/replica/store=(EACCES|ENOENT|0 entries)$' <<<"$report")"
  done
  # The controls, the store holding both peers now (so the scenario also holds run alone).
  contains "[$user] the control: outside a sandbox the probe lists the store" "reach_/run/replica/store=" \
    "$(/usr/local/bin/replica-confinement-probe /tmp | grep -E '^reach_/run/replica/store=[1-9][0-9]* entries$')"
  contains "[$user] the control: outside a sandbox the secret is there" "replica-peer-a's secret" "$(cat $store/replica-peer-a/secret)"
done
for unit in replica-peer-a replica-peer-b; do
  btrfs -q subvolume delete "$store/$unit" || true
  chattr -i /var/lib/$unit-*  # the placeholders prepare left at the state paths
  rm -rf /etc/systemd/system/$unit.service /etc/systemd/system/$unit-run.service /etc/replica/services/$unit.service.conf /var/lib/$unit-*
done
systemctl daemon-reload

# One directive dropped on the systemd side only: the reports differ, where it matters.
probe hardened "$hardened"
mkdir -p /run/systemd/system/$confine.d
printf '[Service]\nRestrictAddressFamilies=\n' >/run/systemd/system/$confine.d/zz-drop.conf
systemctl daemon-reload
systemctl start $confine
contains "dropping RestrictAddressFamilies= on one side shows" "packet_socket" \
  "$(diff $out/systemd.txt $out/run.txt || true)"
rm -rf /run/systemd/system/$confine.d /etc/systemd/system/$confine /etc/systemd/system/replica-confine-run.service \
  /etc/replica/services/$confine.conf $out
systemctl daemon-reload
finish
