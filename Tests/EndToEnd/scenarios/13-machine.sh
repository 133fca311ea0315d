# A machine under a booted systemd: the suite's own Debian 12 rootfs imported as a template, a
# machine forked from it and started by replica-machine@.service (Type=notify), which is active
# only once the guest's systemd is up; the guest sees its seed; stopped and removed, nothing left.
. /e2e/lib.sh
template=/var/lib/replica-e2e/template
check "the template imports" replica-machine template import debian12 $template
check "a machine forks from it" replica-machine fork web1 --template debian12
check "replica-machine@web1 starts (Type=notify: it returns after READY)" systemctl start replica-machine@web1.service
equal "the unit is active" active "$(systemctl is-active replica-machine@web1.service)"
pid=$(systemctl show -P MainPID replica-machine@web1.service)
leader=
for _ in $(seq 100); do
  for child in $(cat /proc/$pid/task/*/children 2>/dev/null); do
    for inner in $child $(cat /proc/$child/task/*/children 2>/dev/null); do
      [ "$(cat /proc/$inner/comm 2>/dev/null)" = systemd ] && leader=$inner
    done
  done
  [ -n "$leader" ] && break
  sleep 0.05
done
check "the guest's systemd runs below the unit's systemd-nspawn" test -n "$leader"
state=$(nsenter --target "$leader" --all systemctl is-system-running 2>/dev/null)
check "the guest had finished starting when the unit became active ($state)" bash -c "[ '$state' = running ] || [ '$state' = degraded ]"
equal "the guest's hostname is its name" web1 "$(nsenter --target "$leader" --all hostname)"
check "the guest sees its NoCloud seed" nsenter --target "$leader" --all grep -q "local-hostname: web1" /var/lib/cloud/seed/nocloud/meta-data
check "it stops" systemctl stop replica-machine@web1.service
equal "the unit is inactive" inactive "$(systemctl is-active replica-machine@web1.service)"
check "the machine is removed" replica-machine remove web1
check "the template is removed" replica-machine template remove debian12
finish
