# What systemd reads from a generated drop-in is what the profile says, for names systemd treats
# specially: a state path with a "-" (its subvolume name holds "\x2d"), a subvolume name with ":",
# a profile comment ending in a backslash. systemd is the oracle: the unit's own process writes a
# marker through each bind, found on the store's subvolume and not in the original directory, and
# systemctl show says what the profile says.
. /e2e/lib.sh
esc=replica-escape.service
mkdir -p /etc/replica/services /srv/a-data /srv/b /srv/c
printf '[Service]\nType=oneshot\nExecStart=/bin/sh -c "echo a >/srv/a-data/marker; echo b >/srv/b/marker"\n' >/etc/systemd/system/$esc
printf '[State]\nPath=/srv/a-data /srv/b\n[Sandbox]\n# a note ending in a backslash \\\nProtectHome=read-only\n' \
  >/etc/replica/services/$esc.conf
systemctl daemon-reload
check "the unit with a dashed state path starts" systemctl start $esc
a_data="$store/replica-escape+srv-a\\x2ddata"
equal "its process wrote through the bind into the subvolume named with \\x2d" "a" "$(cat "$a_data/marker" 2>&1)"
equal "... and the second path into its own" "b" "$(cat "$store/replica-escape+srv-b/marker" 2>&1)"
check "... not into the original directory" test ! -e /srv/a-data/marker
shown=$(systemctl show -P BindPaths $esc)
echo "# systemctl show -P BindPaths: $shown"
contains "systemctl show binds exactly that subvolume onto /srv/a-data" " -$a_data:/srv/a-data:rbind " " $shown "
equal "the directive after a comment ending in a backslash is applied" "read-only" "$(systemctl show -P ProtectHome $esc)"

echo old >/srv/c/old
printf '[Service]\nType=oneshot\nExecStart=/bin/sh -c "cat /srv/c/old && echo c >/srv/c/marker"\n' >/etc/systemd/system/$esc
printf '[State]\nPath=/srv/c\n[Snapshots]\nSubvolume=esc:colon\n' >/etc/replica/services/$esc.conf
systemctl daemon-reload
check "the unit whose subvolume name holds a colon starts" systemctl start $esc
equal "its process wrote into the subvolume esc:colon" "c" "$(cat "$store/esc:colon/marker" 2>&1)"
check "... not into the original directory" test ! -e /srv/c/marker
contains "systemctl show binds esc:colon onto /srv/c" " -$store/esc:colon:/srv/c:rbind " " $(systemctl show -P BindPaths $esc) "

# No silent fallback to the stale original: with the profile gone the unit runs as systemd has it,
# unsandboxed, on /srv/c — now an immutable placeholder — and fails; the original is kept aside.
contains "the journal names where the original went" "/srv/c.replica-original." "$(journalctl -q -o cat -u $esc)"
equal "the original is kept aside, unchanged" "old" "$(cat /srv/c.replica-original.*/old 2>&1)"
rm /etc/replica/services/$esc.conf
systemctl daemon-reload
check "without its profile the unit fails instead of running on the old state" sh -c "! systemctl start $esc"
contains "... its process found the placeholder, not the old data" "/srv/c/old" "$(journalctl -q -o cat -n 5 -u $esc)"

rm -f /etc/systemd/system/$esc /etc/replica/services/$esc.conf
systemctl daemon-reload
finish
