#!/usr/bin/env bash
# mmdebstrap customize hook: disable the units listed in DEFS_DIR/NAME/disabled-services.
# Args: ROOT NAME DEFS_DIR.
set -euo pipefail
root=$1 name=$2 defs=$3
list="$defs/$name/disabled-services"
[ -f "$list" ] || exit 0
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list" | while read -r unit; do
  # A listed unit that is not installed is a broken definition, not something to skip.
  # An instance (postgresql@15-main.service) is installed when its template (postgresql@.service) is.
  file=$unit
  [[ $unit != *@?*.* ]] || file="${unit%%@*}@.${unit##*.}"
  if [ ! -e "$root/lib/systemd/system/$file" ] && [ ! -e "$root/etc/systemd/system/$file" ]; then
    echo "80-services: $unit is not installed in $name" >&2
    exit 1
  fi
  chroot "$root" systemctl disable "$unit"
  # The roles enable these units on the nodes that run them. Debian's systemctl also runs update-rc.d
  # for a unit that ships a SysV script of the same name: 9 s instead of 3.5 s per `systemctl enable`
  # in a 1-vCPU TCG guest (docs/benchmarks.md). The images boot with systemd only, so the script is
  # never used: remove it (and its rc.d links) for the units the roles manage.
  svc=${unit%.service}
  if [ "$svc" != "$unit" ] && [ -e "$root/etc/init.d/$svc" ]; then
    chroot "$root" update-rc.d -f "$svc" remove >/dev/null
    rm -f "$root/etc/init.d/$svc"
  fi
done
