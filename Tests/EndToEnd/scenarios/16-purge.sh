# The package comes off cleanly: apt-get purge stops nothing it should not, and leaves no file it
# installed, no generated drop-in (systemd reloads without the generator), no cache or metrics of
# ours; the operator's profiles in /etc/replica stay, being theirs. Runs last.
. /e2e/lib.sh
install_sample   # a profile of the operator's, with its generated drop-in (also when run alone)
# The services set up by earlier scenarios go first, as an operator would stop them.
for service in $(systemctl list-units --plain --no-legend 'replica-*' 'nginx*' | awk '{print $1}'); do
  systemctl stop "$service" 2>/dev/null
done
installed=$(dpkg-query -L replica | while read -r path; do [ -f "$path" ] && echo "$path"; done)
check "the package installed its tools, generator, units and man pages" \
  bash -c "grep -qx /usr/bin/replica-net <<<'$installed' && grep -qx /lib/systemd/system-generators/replica-generator <<<'$installed' \
    && grep -qx /lib/systemd/system/replica-store.service <<<'$installed' && grep -qx /usr/share/man/man5/replica.profile.5.gz <<<'$installed'"
generated=$(ls /run/systemd/generator/*.d/replica.conf 2>/dev/null)
check "the generator had written drop-ins" test -n "$generated"
mkdir -p /var/cache/replica/seccomp /var/lib/replica/metrics
touch /var/lib/replica/metrics/replica.prom

check "apt-get purge replica succeeds" apt-get purge -y -q replica
left=$(for path in $installed; do [ -e "$path" ] && echo "$path"; done)
equal "no file the package installed is left" "" "$left"
equal "no generated drop-in is left" "" "$(ls /run/systemd/generator/*.d/replica.conf 2>/dev/null)"
equal "systemd knows no unit of ours" "" "$(systemctl list-unit-files --no-legend 'replica-store.service' 'replica-snap@.*' 'replica-net@.*')"
check "the seccomp cache and metrics are gone" bash -c '! test -e /var/cache/replica && ! test -e /var/lib/replica/metrics'
check "the operator's profiles stay" test -e /etc/replica/services/replica-sample.service.conf
finish
