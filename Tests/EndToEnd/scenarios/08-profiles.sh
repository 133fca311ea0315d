# Profiles as an operator edits them, under a real systemd: replica-generator writes each unit's
# drop-in at daemon-reload; a profile that does not parse (a typo, a CR that would smuggle a
# directive) keeps its unit from starting, with the error in the journal, even after the profile is
# fixed but before the next daemon-reload; once reloaded, the unit starts sandboxed.
. /e2e/lib.sh
typo=replica-typo.service
mkdir -p /etc/replica/services /etc/systemd/system
cat >/etc/systemd/system/$typo <<UNIT
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'touch /var/lib/typo-ran; touch /usr/probe 2>/dev/null && echo root-writable || echo root-read-only'
UNIT
printf '[Stat]\nPath=/var/lib/typo\n[Sandbox]\nProtectSystem=strict\n' >/etc/replica/services/$typo.conf
systemctl daemon-reload
contains "the generator wrote a refusing drop-in" "replica-shift refuse %n" "$(generated $typo)"
since=$(date '+%Y-%m-%d %H:%M:%S')
if systemctl start $typo 2>/dev/null; then fail "a misspelled section keeps the unit from starting"; else pass "a misspelled section keeps the unit from starting"; fi
equal "its main process never ran" "" "$(ls /var/lib/typo-ran 2>/dev/null)"
log=$(journalctl -q -o cat -u $typo --since "$since")
contains "the journal names the file, the line and the nearest section" "$typo.conf:1: unknown section [Stat]; did you mean [State]?" "$log"
systemctl reset-failed $typo

# Fixed, but not yet reloaded: the old drop-in still refuses (never unsandboxed).
printf '[State]\nPath=/var/lib/typo\n[Sandbox]\nProtectSystem=strict\n' >/etc/replica/services/$typo.conf
since=$(date '+%Y-%m-%d %H:%M:%S')
if systemctl start $typo 2>/dev/null; then fail "fixed but not reloaded: still refused"; else pass "fixed but not reloaded: still refused"; fi
contains "the journal says to reload" "run systemctl daemon-reload" "$(journalctl -q -o cat -u $typo --since "$since")"
systemctl reset-failed $typo
systemctl daemon-reload
check "after daemon-reload it starts" systemctl start $typo
contains "and runs sandboxed: the root is read-only" "root-read-only" "$(journalctl -q -o cat -u $typo)"
systemctl stop $typo

# A carriage return would end the line for systemd and add a root ExecStartPre: refused whole.
cr=replica-cr.service
cp /etc/systemd/system/$typo /etc/systemd/system/$cr
printf '[State]\nPath=/var/lib/cr\rExecStartPre=+/bin/touch /smuggled\n' >/etc/replica/services/$cr.conf
systemctl daemon-reload
if systemctl start $cr 2>/dev/null; then fail "a profile with a CR does not start"; else pass "a profile with a CR does not start"; fi
equal "nothing smuggled ran" "" "$(ls /smuggled 2>/dev/null)"
equal "the generator's drop-in has no smuggled line" 0 "$(generated $cr | grep -c smuggled)"
contains "the journal names the carriage return" "a carriage return (CR)" "$(journalctl -q -o cat -u $cr)"
systemctl reset-failed $cr
rm -f /etc/replica/services/$typo.conf /etc/replica/services/$cr.conf /etc/systemd/system/$typo /etc/systemd/system/$cr
systemctl daemon-reload
finish
