#!/usr/bin/env bash
# Downloads the wheels of roles/llm_finetune/files/oumi.lock, and pip's (the role runs pip from its wheel in a venv
# made without pip), into a cache directory named by the lock's hash; prints that directory. The Molecule container
# of molecule/llm_finetune is offline: the role stages this directory from the host (llm_finetune_wheel_dir).
# torch==2.13.0+cpu comes from the local wheel directory that pip's find-links names on this machine kind.
#   tests/molecule/oumi-wheels.sh    -> prints the directory
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lock="$root/roles/llm_finetune/files/oumi.lock"
pip_pin="pip==26.3"
key=$({ cat "$lock"; echo "$pip_pin"; } | sha256sum | cut -c1-12)
base="${HYPERSCALER_CACHE_DIR:-/var/cache/aihow-hyperscaler}/oumi-wheels"
dest="$base/oumi-$key"
pins=$(grep -cvE '^\s*(#|$)' "$lock")
if [[ -d $dest ]] && (($(find "$dest" -maxdepth 1 -name '*.whl' | wc -l) == pins + 1)); then
  echo "$dest"
  exit 0
fi
mkdir -p "$base"
tmp=$(mktemp -d "$base/.oumi-$key-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
grep -vE '^\s*(#|$)' "$lock" >"$tmp/requirements.txt"
python3 -m pip download --disable-pip-version-check --progress-bar off -q --no-deps --only-binary=:all: \
  -d "$tmp" -r "$tmp/requirements.txt" "$pip_pin" >&2
rm -f "$tmp/requirements.txt"
have=$(find "$tmp" -maxdepth 1 -name '*.whl' | wc -l)
((have == pins + 1)) || { echo "oumi-wheels: got $have wheels for $pins pins + pip" >&2; exit 1; }
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
