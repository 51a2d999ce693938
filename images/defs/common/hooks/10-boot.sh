#!/usr/bin/env bash
# mmdebstrap customize hook: boot configuration. Args: ROOT NAME DEFS_DIR.
set -euo pipefail
root=$1
# The root filesystem is found by label so the same image boots on any disk bus.
echo "LABEL=aihow-root / ext4 errors=remount-ro 0 1" >"$root/etc/fstab"
# A neutral name: cloud-init sets the real hostname from the NoCloud seed.
echo localhost >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
kver=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
if ! { [ -n "$kver" ] && [ -f "$root/boot/vmlinuz-$kver" ] && [ -f "$root/boot/initrd.img-$kver" ]; }; then
  echo "10-boot: no kernel/initrd in $root/boot" >&2
  exit 1
fi
mkdir -p "$root/boot/extlinux"
# Serial console so boots under qemu -nographic and libvirt can be logged.
cat >"$root/boot/extlinux/extlinux.conf" <<CFG
DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
  LINUX /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND root=LABEL=aihow-root ro console=tty0 console=ttyS0,115200n8
CFG
