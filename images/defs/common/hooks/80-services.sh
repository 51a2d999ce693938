#!/usr/bin/env bash
# mmdebstrap customize hook: disable the units listed in DEFS_DIR/NAME/disabled-services.
# Args: ROOT NAME DEFS_DIR.
set -euo pipefail
root=$1 name=$2 defs=$3
list="$defs/$name/disabled-services"
[ -f "$list" ] || exit 0
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list" | while read -r unit; do
  # A listed unit that is not installed is a broken definition, not something to skip.
  if [ ! -e "$root/lib/systemd/system/$unit" ] && [ ! -e "$root/etc/systemd/system/$unit" ]; then
    echo "80-services: $unit is not installed in $name" >&2
    exit 1
  fi
  chroot "$root" systemctl disable "$unit"
done
