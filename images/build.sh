#!/usr/bin/env bash
# Builds one golden image end to end, cached by content, and prints its path.
#
#   images/build.sh NAME [--cache-dir DIR] [--base-image QCOW2] [--rebuild]
#
# 1. base disk: images/build-base.sh NAME --cache-dir <cache_dir>/base (mmdebstrap, cached),
#    or --base-image QCOW2 (cluster.yaml images.<kind>.base_image);
# 2. packer/golden-image.pkr.hcl (with packer/NAME.pkrvars.hcl) boots an overlay of the base under qemu/TCG and runs packer/provision.yml
#    (role aihow.hyperscaler.image_common) through packer's Ansible provisioner;
# 3. the overlay is flattened and compressed into <cache_dir>/NAME-<hash>.qcow2 with
#    NAME-<hash>.json next to it and the stable links NAME.qcow2 / NAME.json.
# <hash> covers the base disk's sha256, the packer template, provision.yml, packer/ansible.cfg,
# the role's files, this script and lib.sh. An unchanged input set is not rebuilt.
# Progress goes to stderr; the last stdout line is JSON {"image", "built", "name", "hash", "metadata"}.
# Environment: AIHOW_IMAGE_CACHE_DIR (and build-base.sh's).
set -euo pipefail
# shellcheck source=images/lib.sh
. "$(dirname "$0")/lib.sh"

name="" cache_dir=${AIHOW_IMAGE_CACHE_DIR:-$DEFAULT_CACHE_DIR} base_image="" rebuild=false
while [ $# -gt 0 ]; do
  case $1 in
    --cache-dir) cache_dir=$2; shift 2 ;;
    --base-image) base_image=$2; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$name" ] || die "one image name only"; name=$1; shift ;;
  esac
done
[ -n "$name" ] || die "usage: $0 NAME [--cache-dir DIR] [--base-image QCOW2] [--rebuild]"
check_name "$name"
template="$REPO_DIR/packer/golden-image.pkr.hcl"
image_vars="$REPO_DIR/packer/$name.pkrvars.hcl"
[ -f "$image_vars" ] || die "no packer variables $image_vars for image $name"
mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)

t_all=$SECONDS
t0=$SECONDS
progress "$name: step 1/3: base disk"
if [ -n "$base_image" ]; then
  [ -f "$base_image" ] || die "base image $base_image not found"
  base_image=$(readlink -f "$base_image")
  progress "$name: base disk given: $base_image"
  base_sha=$(sha256sum "$base_image" | cut -d' ' -f1)
  base_built=false
else
  base_json=$("$IMAGES_DIR/build-base.sh" "$name" --cache-dir "$cache_dir/base" | tail -n 1)
  read -r base_image base_built base_meta < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["image"], str(r["built"]).lower(), r["metadata"])' "$base_json")
  base_sha=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$base_meta")
fi
t_base=$((SECONDS - t0))

mapfile -t role_files < <(find "$REPO_DIR/roles/image_common" -type f | sort)
manifest=$(file_manifest "$IMAGES_DIR/build.sh" "$IMAGES_DIR/lib.sh" "$template" "$image_vars" \
           "$REPO_DIR/packer/provision.yml" "$REPO_DIR/packer/ansible.cfg" \
           "$DEFS_DIR/$name/disabled-services" "${role_files[@]}")
params=$(python3 -c 'import json,sys; print(json.dumps({"stage": "packer", "name": sys.argv[1], "base_sha256": sys.argv[2]}, sort_keys=True))' \
         "$name" "$base_sha")
hash=$(printf '%s\n%s\n' "$manifest" "$params" | short_hash)
out="$cache_dir/$name-$hash.qcow2"
meta="$cache_dir/$name-$hash.json"
exec 9>"$cache_dir/.$name.lock"
flock 9

if ! $rebuild && [ -f "$out" ] && [ -f "$meta" ] && \
   [ "$(stat -c %s "$out")" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size_bytes"])' "$meta")" ]; then
  progress "$name: cached $out (nothing to build)"
  update_link "$(basename "$out")" "$cache_dir/$name.qcow2"
  update_link "$(basename "$meta")" "$cache_dir/$name.json"
  result_line "$out" false "$name" "$hash" "$meta"
  exit 0
fi

# packer's Ansible provisioner runs ansible-playbook from PATH: prefer the project's venv.
[ -x "$REPO_DIR/.venv/bin/ansible-playbook" ] && PATH="$REPO_DIR/.venv/bin:$PATH"
require_cmds packer ansible-playbook qemu-system-x86_64 qemu-img cloud-localds ssh-keygen
work=$(mktemp -d "$cache_dir/.packer-$name-XXXXXX")
trap 'rm -rf "$work"' EXIT

# Throwaway root key for this build only, authorised through the NoCloud seed; image_common
# removes it from the image.
ssh-keygen -q -t ed25519 -N '' -C "aihow-image-build" -f "$work/id"
mkdir -p "$work/seed"
cat >"$work/seed/user-data" <<UD
#cloud-config
disable_root: false
ssh_pwauth: false
users: []
ssh_authorized_keys:
  - $(cat "$work/id.pub")
UD
printf 'instance-id: build-%s-%s\nlocal-hostname: build-%s\n' "$name" "$hash" "$name" >"$work/seed/meta-data"
python3 - "$DEFS_DIR/$name/disabled-services" "$work/extra-vars.json" <<'PY'
import json, re, sys
units = [l.split("#")[0].strip() for l in open(sys.argv[1])]
json.dump({"image_common_disabled_services": [u for u in units if u]}, open(sys.argv[2], "w"))
PY
# The collection is found as aihow.hyperscaler through a link to this checkout.
mkdir -p "$work/collections/ansible_collections/aihow"
ln -s "$REPO_DIR" "$work/collections/ansible_collections/aihow/hyperscaler"

t0=$SECONDS
log "$name: packer build from $base_image ($hash)"
progress_note "$name: step 2/3: packer boots an overlay of the base disk under qemu and provisions it (the long step)"
# Run from the work dir so packer_cache lands there; no update checks (offline hosts). Packer's step
# lines ("==> ...") and the provisioner's Ansible tasks (numbered) become progress notes.
(cd "$work" && CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$work/packer_cache" packer build -color=false \
   -var-file "$image_vars" \
   -var "base_image=$base_image" -var "image_version=$hash" -var "seed_dir=$work/seed" \
   -var "ssh_private_key_file=$work/id" -var "output_dir=$work/out" \
   -var "collections_path=$work/collections" -var "packages_out=$work/packages.tsv" \
   -var "extra_vars_file=$work/extra-vars.json" "$template") 2>&1 \
  | progress_tee "$name: packer" '^==> |: TASK \[|: fatal: ' 'TASK \[' \
  || { tail -n 40 "$work/out-console.log" >&2 2>/dev/null || true; die "$name: packer build failed"; }
t_packer=$((SECONDS - t0))
[ -s "$work/packages.tsv" ] || die "$name: provisioner wrote no package list"

t0=$SECONDS
progress "$name: step 3/3: flatten and compress the disk (qemu-img convert -c)"
# Recompress the VM disk packer leaves behind (a modified copy of the base) into the cached image.
# zstd (qemu >= 5.1): ~4x faster than the default zlib on these images, and smaller.
qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/out/$name.qcow2" "$work/final.qcow2"
t_convert=$((SECONDS - t0))
[ "$(sha256sum "$base_image" | cut -d' ' -f1)" = "$base_sha" ] || die "base image $base_image changed during the build"

printf '%s\n' "$manifest" >"$work/inputs.txt"
mv "$work/final.qcow2" "$out"
extra=$(python3 -c 'import json,sys; print(json.dumps({"stage": "final", "base": {"image": sys.argv[1], "sha256": sys.argv[2], "built": sys.argv[3] == "true"}, "tools": {"packer": sys.argv[4], "ansible": sys.argv[5]}, "build_seconds": {"base": int(sys.argv[6]), "packer": int(sys.argv[7]), "convert": int(sys.argv[8])}}))' \
  "$base_image" "$base_sha" "$base_built" "$(packer version | head -n 1)" "$(ansible-playbook --version | head -n 1)" "$t_base" "$t_packer" "$t_convert")
write_metadata "$name" "$hash" "$out" "$work/packages.tsv" "$work/inputs.txt" "$params" "$meta" "$extra"
update_link "$(basename "$out")" "$cache_dir/$name.qcow2"
update_link "$(basename "$meta")" "$cache_dir/$name.json"
progress "$name: built $out ($(du -h "$out" | cut -f1)) in $((SECONDS - t_all))s (base ${t_base}s, packer ${t_packer}s, convert ${t_convert}s)"
result_line "$out" true "$name" "$hash" "$meta"
