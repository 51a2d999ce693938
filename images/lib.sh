# Shared helpers of the image scripts (sourced, not executed).
# shellcheck shell=bash

IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$IMAGES_DIR")
DEFS_DIR="$IMAGES_DIR/defs"
# Matches cluster.yaml's images.cache_dir default (schemas/cluster.schema.json).
# shellcheck disable=SC2034  # used by the scripts that source this file
DEFAULT_CACHE_DIR=/var/cache/aihow-hyperscaler/images

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Progress notes: ansible-playbook's callback aihow.hyperscaler.progress exports HYPERSCALER_PROGRESS_FILE
# and prints every line appended to it while the task runs (plugins/module_utils/common/progress.py is the
# Python twin). progress_note appends "HH:MM:SS TEXT" and does nothing without the variable or when the
# file is gone or not writable; it never fails the caller. progress = log (stderr) + progress_note.
progress_note() {
  local file=${HYPERSCALER_PROGRESS_FILE:-} text=$*
  [ -n "$file" ] && [ -f "$file" ] && [ -w "$file" ] || return 0
  { printf '%s %s\n' "$(date +%H:%M:%S)" "${text//$'\n'/ }" >>"$file"; } 2>/dev/null || true
}
progress() { log "$*"; progress_note "$*"; }

# Copies stdin to stderr and makes a progress note "LABEL: LINE" of each line that matches the extended
# regex KEEP (without packer's "==> type.name: " prefix and the trailing "****", 160 characters at
# most); the lines that also match COUNT are numbered "(#N)". Always returns 0.
#   packer build ... 2>&1 | progress_tee "hpc-base: packer" '^==> |TASK \[' 'TASK \['
progress_tee() {
  local label=$1 keep=$2 count=${3:-} n=0 line text
  local prefix='^(==> | +)[[:alnum:]_-]+\.[[:alnum:]_.-]+: (.*)$' stars='^(.*[^ *]) +\*+$'
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line" >&2
    [[ $line =~ $keep ]] || continue
    text=$line
    if [[ $text =~ $prefix ]]; then text=${BASH_REMATCH[2]}; fi
    if [[ $text =~ $stars ]]; then text=${BASH_REMATCH[1]}; fi
    text=${text:0:160}
    if [ -n "$count" ] && [[ $text =~ $count ]]; then n=$((n + 1)); text="$text (#$n)"; fi
    progress_note "$label: $text"
  done
  return 0
}

require_cmds() {
  local c missing=()
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] || die "missing commands: ${missing[*]} (see docs/images.md for the apt packages)"
}

image_names() {
  local d
  for d in "$DEFS_DIR"/*/packages; do
    d=$(basename "$(dirname "$d")")
    [ "$d" = common ] || echo "$d"
  done
}

check_name() {
  [[ $1 =~ ^[a-z][a-z0-9-]{0,62}$ ]] || die "bad image name '$1'"
  [ -f "$DEFS_DIR/$1/packages" ] || die "unknown image '$1' (known: $(image_names | tr '\n' ' '))"
}

# Package list files: one name a line, '#' comments.
read_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$@"; }

# Prints "sha256  relative-path" for each input file, sorted, so the hash does not depend on
# where the checkout lives.
file_manifest() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf '%s  %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "${f#"$REPO_DIR"/}"
  done | sort -k2
}

# Short content hash of a manifest text (stdin).
short_hash() { sha256sum | cut -c1-16; }

# Atomically points LINK at TARGET (a name in the same directory).
update_link() {
  local target=$1 link=$2
  ln -sfn "$target" "$link.tmp.$$"
  mv -Tf "$link.tmp.$$" "$link"
}

# Writes the metadata JSON: NAME HASH QCOW2 PACKAGES_FILE INPUTS_FILE PARAMS_JSON OUT [EXTRA_JSON]
# (EXTRA_JSON: an object merged into the top level, e.g. build_seconds, base).
write_metadata() {
  python3 - "$@" <<'PY'
import datetime, hashlib, json, os, sys
name, digest, qcow2, pkgs, inputs, params, out = sys.argv[1:8]
extra = json.loads(sys.argv[8]) if len(sys.argv) > 8 else {}
sha = hashlib.sha256()
with open(qcow2, "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
        sha.update(block)
packages = {}
with open(pkgs) as fh:
    for line in fh:
        # "package version" separated by a tab (build-base.sh) or a space (provision.yml).
        fields = line.split(None, 1)
        if len(fields) == 2:
            packages[fields[0]] = fields[1].strip()
files = []
with open(inputs) as fh:
    for line in fh:
        h, path = line.rstrip("\n").split("  ", 1)
        files.append({"path": path, "sha256": h})
meta = {
    "name": name,
    "hash": digest,
    "file": os.path.basename(qcow2),
    "format": "qcow2",
    "sha256": sha.hexdigest(),
    "size_bytes": os.path.getsize(qcow2),
    "build_date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "inputs": {"files": files, "parameters": json.loads(params)},
    "packages": packages,
}
meta.update(extra)
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(meta, fh, indent=2, sort_keys=True)
    fh.write("\n")
os.replace(tmp, out)
PY
}

# Last stdout line of the build scripts, for playbooks/images.yml.
result_line() {
  python3 -c 'import json,sys; print(json.dumps({"image": sys.argv[1], "built": sys.argv[2] == "true", "name": sys.argv[3], "hash": sys.argv[4], "metadata": sys.argv[5]}))' "$@"
}

# Wheels of a python.lock for the guests (images/build-base.sh, and tests/molecule/wheels.sh for the
# Molecule cloud image, so both use one download).
# The guests' Python (Debian 12: CPython 3.11, glibc 2.36, x86_64): pip picks wheels for it whatever
# Python runs pip here. pip does not widen a PEP 600 tag to the older ones, hence the list.
WHEEL_TARGET=(--python-version 3.11 --implementation cp --abi cp311)
for _glibc in $(seq 36 -1 5); do WHEEL_TARGET+=(--platform "manylinux_2_${_glibc}_x86_64"); done
WHEEL_TARGET+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
unset _glibc

# fetch_wheels NAME LOCK DIR: prints DIR/NAME-<hash>, a directory with one wheel per line of LOCK
# (pip download --no-deps --only-binary=:all:), downloaded once per lock content and target.
# pip runs with the host's configuration (PyPI or its index, PIP_FIND_LINKS) plus each directory of
# AIHOW_WHEEL_DIRS. A pin with a local version label (torch==2.13.0+cpu) is on no index: it is fetched
# first, so that its absence stops the build at once with one message.
fetch_wheels() {
  local name=$1 lock=$2 dir=$3 key dest tmp pins local_pins=() pin n have d dirs=() label links=() out
  key=$( { cat "$lock"; echo "${WHEEL_TARGET[*]}"; } | short_hash)
  dest="$dir/$name-$key"
  mapfile -t pins < <(read_packages "$lock")
  [ ${#pins[@]} -gt 0 ] || die "$lock lists no package"
  if [ -d "$dest" ]; then
    have=$(find "$dest" -maxdepth 1 -name '*.whl' | wc -l)
    if [ "$have" = ${#pins[@]} ]; then
      progress "$name: base disk: wheels cached ($dest, $have wheels)"
      printf '%s\n' "$dest"
      return 0
    fi
    rm -rf "$dest"
  fi
  python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is missing on the build host (apt-get install python3-pip)"
  IFS=: read -r -a dirs <<<"${AIHOW_WHEEL_DIRS:-}"
  for d in "${dirs[@]}"; do
    [ -z "$d" ] || links+=(--find-links "$d")
  done
  for pin in "${pins[@]}"; do
    [[ $pin == *==*+* ]] && local_pins+=("$pin")
  done
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.$name-$key-XXXXXX")
  pip_get() {
    python3 -m pip download --disable-pip-version-check --progress-bar off --no-deps --only-binary=:all: \
      "${WHEEL_TARGET[@]}" "${links[@]}" -d "$tmp" "$@"
  }
  progress "$name: base disk: downloading ${#pins[@]} wheels of $(basename "$(dirname "$lock")")/$(basename "$lock") (pip)"
  for pin in "${local_pins[@]}"; do
    if ! out=$(pip_get "$pin" 2>&1); then
      rm -rf "$tmp"
      label=${pin##*+}
      log "pip: $(grep -m1 '^ERROR' <<<"$out" || tail -n 1 <<<"$out")"
      die "$name: no wheel for $pin (${lock#"$REPO_DIR"/}). It is not on PyPI: it was looked for in" \
        "AIHOW_WHEEL_DIRS (${AIHOW_WHEEL_DIRS:-unset}), pip's find-links (PIP_FIND_LINKS: ${PIP_FIND_LINKS:-unset};" \
        "pip.conf find-links) and pip's index." \
        "Download the CPython 3.11 Linux x86_64 wheel (${pin%%==*}-${pin#*==}-cp311-cp311-manylinux*_x86_64.whl) from" \
        "https://download.pytorch.org/whl/$label into a directory and set AIHOW_WHEEL_DIRS (or PIP_FIND_LINKS) to it"
    fi
  done
  if ! pip_get -r "$lock" >&2; then
    rm -rf "$tmp"
    die "$name: pip download of the wheels of ${lock#"$REPO_DIR"/} failed (the build host needs PyPI or the index of pip's configuration)"
  fi
  n=$(find "$tmp" -maxdepth 1 -name '*.whl' | wc -l)
  if [ "$n" != ${#pins[@]} ]; then
    rm -rf "$tmp"
    die "$name: pip left $n wheels for the ${#pins[@]} lines of ${lock#"$REPO_DIR"/}"
  fi
  mv -T "$tmp" "$dest"
  progress "$name: base disk: wheels in $dest ($n wheels, $(du -sh "$dest" | cut -f1))"
  printf '%s\n' "$dest"
}
