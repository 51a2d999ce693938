#!/usr/bin/env bash
# Builds the mmdebstrap base disk of one golden image, cached by content.
#
#   images/build-base.sh NAME [--cache-dir DIR] [--suite SUITE] [--rebuild]
#
# NAME is a directory of images/defs (hpc-base, cloud-base). The disk is
# <cache_dir>/NAME-<hash>.qcow2 where <hash> covers every input (this script, lib.sh, the
# package lists, the hooks, the Python lock, suite, mirrors, disk size): an unchanged input set is not
# rebuilt. Next to it: NAME-<hash>.json (metadata) and the stable links NAME.qcow2 / NAME.json.
# An image with images/defs/NAME/python.lock gets a venv at /opt/aihow/venv with exactly that lock
# (hook 60-python-venv.sh): the wheels are downloaded here first (pip, PyPI or pip's configured index),
# cached by the lock's content under <cache_dir>/wheels/NAME-<hash>/.
# Progress goes to stderr; the last stdout line is JSON {"image", "built", "name", "hash", "metadata"}.
#
# Environment: AIHOW_IMAGE_CACHE_DIR, AIHOW_DEBIAN_MIRROR, AIHOW_DEBIAN_SECURITY_MIRROR,
# AIHOW_IMAGE_DISK_SIZE (raw disk size; default images/defs/NAME/disk-size, else 4G; cloud-init grows
# the partition at boot), AIHOW_WHEEL_DIRS (colon-separated directories of wheels that are not on PyPI,
# e.g. torch 2.13.0+cpu from https://download.pytorch.org/whl/cpu; pip's own PIP_FIND_LINKS works too).
set -euo pipefail
# shellcheck source=images/lib.sh
. "$(dirname "$0")/lib.sh"

name="" cache_dir=${AIHOW_IMAGE_CACHE_DIR:-$DEFAULT_CACHE_DIR} suite=bookworm rebuild=false
while [ $# -gt 0 ]; do
  case $1 in
    --cache-dir) cache_dir=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$name" ] || die "one image name only"; name=$1; shift ;;
  esac
done
[ -n "$name" ] || die "usage: $0 NAME [--cache-dir DIR] [--suite SUITE] [--rebuild]"
check_name "$name"
# Only bookworm is supported by cluster.yaml (schema enum) and by the hooks.
[ "$suite" = bookworm ] || die "unsupported suite '$suite'"
mirror=${AIHOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${AIHOW_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
default_disk_size=4G
if [ -f "$DEFS_DIR/$name/disk-size" ]; then default_disk_size=$(read_packages "$DEFS_DIR/$name/disk-size"); fi
disk_size=${AIHOW_IMAGE_DISK_SIZE:-$default_disk_size}
lock="$DEFS_DIR/$name/python.lock"

inputs=("$IMAGES_DIR/build-base.sh" "$IMAGES_DIR/lib.sh" "$DEFS_DIR/common/packages"
        "$DEFS_DIR/$name/packages" "$DEFS_DIR/$name/disabled-services" "$lock")
mapfile -t hooks < <(find "$DEFS_DIR/common/hooks" "$DEFS_DIR/$name/hooks" -maxdepth 1 -type f -name '*.sh' 2>/dev/null \
                     | awk -F/ '{print $NF "\t" $0}' | sort | cut -f2)
inputs+=("${hooks[@]}")
manifest=$(file_manifest "${inputs[@]}")
params=$(python3 -c 'import json,sys; print(json.dumps(dict(zip(["stage","name","suite","mirror","security_mirror","disk_size"], sys.argv[1:])), sort_keys=True))' \
         base "$name" "$suite" "$mirror" "$security_mirror" "$disk_size")
hash=$(printf '%s\n%s\n' "$manifest" "$params" | short_hash)

mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)
out="$cache_dir/$name-$hash.qcow2"
meta="$cache_dir/$name-$hash.json"
# One build per name and cache dir at a time; a second caller waits and then finds the cache.
exec 9>"$cache_dir/.$name.lock"
flock 9

cached_ok() {
  [ -f "$out" ] && [ -f "$meta" ] || return 1
  # Cheap integrity check (size recorded in the metadata); validate.sh checks the sha256.
  [ "$(stat -c %s "$out")" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$meta")" ]
}

if ! $rebuild && cached_ok; then
  progress "$name: base disk cached ($(basename "$out"))"
  update_link "$(basename "$out")" "$cache_dir/$name.qcow2"
  update_link "$(basename "$meta")" "$cache_dir/$name.json"
  result_line "$out" false "$name" "$hash" "$meta"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building needs root (mmdebstrap root mode, loop mount)"
require_cmds mmdebstrap sfdisk losetup mkfs.ext4 extlinux qemu-img dpkg-query flock
mbr=/usr/lib/EXTLINUX/mbr.bin
[ -f "$mbr" ] || mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || die "syslinux mbr.bin not found (apt-get install extlinux syslinux-common)"

# Wheels of python.lock, fetched before anything is built (a missing one stops the build here).
t0=$SECONDS
unset AIHOW_IMAGE_WHEELS
if [ -f "$lock" ]; then
  AIHOW_IMAGE_WHEELS=$(fetch_wheels "$name" "$lock" "$cache_dir/wheels")
  export AIHOW_IMAGE_WHEELS  # read by the customize hook 60-python-venv.sh (mmdebstrap keeps the environment)
fi
t_wheels=$((SECONDS - t0))

work=$(mktemp -d "$cache_dir/.build-$name-XXXXXX")
loop="" mnt="$work/mnt"
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt"; fi
  [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

pkgs=$(read_packages "$DEFS_DIR/common/packages" "$DEFS_DIR/$name/packages" | sort -u | paste -sd, -)
hook_args=()
for h in "${hooks[@]}"; do
  hook_args+=("--customize-hook=bash '$h' \"\$1\" '$name' '$DEFS_DIR'")
done

t0=$SECONDS
log "$name: mmdebstrap $suite ($hash)"
progress_note "$name: base disk: mmdebstrap $suite, $(wc -w <<<"${pkgs//,/ }") packages (download, install, hooks)"
# mmdebstrap's "I: " lines (its phases) become progress notes.
mmdebstrap --mode=root --variant=minbase --components=main --include="$pkgs" \
  "${hook_args[@]}" "$suite" "$work/root" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security_mirror $suite-security main" 2>&1 \
  | progress_tee "$name: base disk: mmdebstrap" '^I: '
t_debootstrap=$((SECONDS - t0))
dpkg-query --admindir="$work/root/var/lib/dpkg" -W -f='${Package}\t${Version}\n' >"$work/packages.tsv"

t0=$SECONDS
progress "$name: base disk: raw disk $disk_size, ext4, extlinux, qcow2 zstd compression"
truncate -s "$disk_size" "$work/disk.raw"
# One bootable Linux partition at 1 MiB; partition loop devices are not available, hence -o.
echo 'start=2048, type=83, bootable' | sfdisk -q "$work/disk.raw" >&2
part_size=$(( $(stat -c %s "$work/disk.raw") - 1048576 ))
loop=$(losetup -f --show -o 1048576 --sizelimit "$part_size" "$work/disk.raw")
# ^64bit: extlinux reads ext4 but not every syslinux release copes with 64bit block numbers.
mkfs.ext4 -q -L aihow-root -O ^64bit "$loop"
mkdir -p "$mnt"
mount "$loop" "$mnt"
cp -a "$work/root/." "$mnt/"
extlinux --install "$mnt/boot/extlinux" >&2
read -r root_used root_size < <(df -B1 --output=used,size "$mnt" | tail -n 1)
progress_note "$name: base disk: root file system $((root_used >> 20)) MiB used of $((root_size >> 20)) MiB"
log "$name: root file system: $((root_used >> 20)) MiB used of $((root_size >> 20)) MiB ($((100 * root_used / root_size))%)"
# The packer stage and the first boot (before cloud-init grows the partition) need some room.
[ $((100 * root_used / root_size)) -le 90 ] || \
  die "$name: the root file system is $((100 * root_used / root_size))% full on a $disk_size disk: raise images/defs/$name/disk-size (or AIHOW_IMAGE_DISK_SIZE)"
umount "$mnt"
losetup -d "$loop"; loop=""
dd if="$mbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
rm -rf "$work/root"
# zstd: ~4x faster than qcow2's default zlib on these images, and smaller (qemu >= 5.1 reads it).
qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/disk.raw" "$work/disk.qcow2"
t_disk=$((SECONDS - t0))

printf '%s\n' "$manifest" >"$work/inputs.txt"
mv "$work/disk.qcow2" "$out"
write_metadata "$name" "$hash" "$out" "$work/packages.tsv" "$work/inputs.txt" "$params" "$meta" \
  "{\"stage\": \"base\", \"root_used_bytes\": $root_used, \"root_size_bytes\": $root_size, \"build_seconds\": {\"wheels\": $t_wheels, \"mmdebstrap\": $t_debootstrap, \"disk\": $t_disk}}"
update_link "$(basename "$out")" "$cache_dir/$name.qcow2"
update_link "$(basename "$meta")" "$cache_dir/$name.json"
progress "$name: base disk built: $out ($(du -h "$out" | cut -f1)) in mmdebstrap ${t_debootstrap}s + disk ${t_disk}s"
result_line "$out" true "$name" "$hash" "$meta"
