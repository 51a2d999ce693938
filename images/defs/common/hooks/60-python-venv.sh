#!/usr/bin/env bash
# mmdebstrap customize hook: the image's Python venv. Args: ROOT NAME DEFS_DIR.
# With DEFS_DIR/NAME/python.lock, /opt/aihow/venv gets exactly the packages of the lock, from the wheels
# build-base.sh downloaded on the host (AIHOW_IMAGE_WHEELS): the guests have no package mirror and no PyPI.
# Runs in the chroot at native speed (the packer stage runs under TCG, ~10x slower). The wheels are
# removed again: the image keeps neither wheel files nor a pip cache.
set -euo pipefail
root=$1 name=$2 defs=$3
lock="$defs/$name/python.lock"
[ -f "$lock" ] || exit 0
wheels=${AIHOW_IMAGE_WHEELS:?60-python-venv: $name has a python.lock but AIHOW_IMAGE_WHEELS is not set (run images/build-base.sh)}
venv=/opt/aihow/venv
tmp=/tmp/aihow-wheels
# Nothing of the build host's pip configuration (PIP_FIND_LINKS, PIP_CERT, ...) reaches the chroot.
in_root() {
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}
cleanup() { rm -rf "${root:?}$tmp" "$root/root/.cache/pip"; }
trap cleanup EXIT
rm -rf "${root:?}$tmp"
mkdir -p "$root$tmp"
cp "$wheels"/*.whl "$root$tmp/"
cp "$lock" "$root$tmp/python.lock"
in_root python3 -m venv "$venv"
in_root "$venv/bin/python" -m pip install --no-index --no-deps --find-links "$tmp" -q --progress-bar off \
  -r "$tmp/python.lock"
# The lock is complete: every requirement of every package is in it (pip check), and the venv holds the
# lock and nothing else (besides the pip that venv installed).
in_root "$venv/bin/python" -m pip check
in_root "$venv/bin/python" - "$tmp/python.lock" <<'PY'
import re, sys
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
want = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if line:
        n, v = line.split("==", 1)
        want[norm(n)] = v
have = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
bad = sorted("%s: lock %s, venv %s" % (n, v, have.get(n)) for n, v in want.items() if have.get(n) != v)
extra = sorted(set(have) - set(want) - {"pip"})
if bad or extra:
    sys.exit("60-python-venv: venv differs from the lock: %s" % "; ".join(bad + ["not in the lock: " + n for n in extra]))
print("60-python-venv: %d packages of the lock installed" % len(want))
PY
if find "$root$venv" -name '*.whl' | grep -q .; then
  echo "60-python-venv: wheel files left in $venv" >&2
  exit 1
fi
