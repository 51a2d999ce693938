#!/usr/bin/env bash
# Runs every Molecule scenario of the HPC and cloud roles (molecule test: create, converge, idempotence,
# verify, destroy) in local podman containers built from Debian packages; exits non-zero if any fails.
# Usage: tests/run-molecule.sh [scenario...]     (default: all scenarios under molecule/)
# Builds or reuses the images the chosen scenarios name (tests/molecule/build-image.sh: hpc, and cloud
# for the mlops scenario) and prints how long each build and each scenario took.
set -euo pipefail

# Host packages: podman and runc run the containers (crun fails on this kind of host), mmdebstrap
# builds the image, uidmap/slirp4netns/fuse-overlayfs are podman's usual helpers.
MOLECULE_APT_PACKAGES="podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs python3-venv"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

missing=()
for pkg in $MOLECULE_APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing apt packages: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python tools go into the project venv next to requirements-test.txt (the pins co-install).
venv="${VENV:-$root/.venv}"
stamp="$venv/.molecule-installed"
if [[ ! -f "$stamp" || requirements-molecule.txt -nt "$stamp" || requirements-test.txt -nt "$stamp" ]]; then
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements-test.txt -r requirements-molecule.txt
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"

# The roles are found as aihow.hyperscaler through the link `make deps` makes.
mkdir -p .build/collections/ansible_collections/aihow
ln -sfn "$root" .build/collections/ansible_collections/aihow/hyperscaler

if (($#)); then scenarios=("$@"); else
  scenarios=()
  for f in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$f")")"); done
fi

# Builds or reuses each image a chosen scenario's molecule.yml names (the cloud image takes minutes the
# first time: a scenario of the HPC roles alone does not wait for it); exports CONTAINERS_CONF and
# HYPERSCALER_MOLECULE_IMAGE / HYPERSCALER_MOLECULE_CLOUD_IMAGE.
for flavor in hpc cloud; do
  var=HYPERSCALER_MOLECULE_IMAGE
  [[ $flavor == hpc ]] || var=HYPERSCALER_MOLECULE_CLOUD_IMAGE
  needed=false
  for s in "${scenarios[@]}"; do
    if grep -qF "\${$var:-" "molecule/$s/molecule.yml" 2>/dev/null; then needed=true; fi
  done
  $needed || continue
  start=$SECONDS
  # shellcheck source=tests/molecule/build-image.sh
  source tests/molecule/build-image.sh "$flavor" >/dev/null
  echo "image ($flavor): ${!var} ($((SECONDS - start)) s)"
done

# molecule/llm_finetune's container is offline: the Oumi lock's wheels are downloaded here, staged by the role.
for s in "${scenarios[@]}"; do
  if [[ $s == llm_finetune ]]; then
    start=$SECONDS
    HYPERSCALER_OUMI_WHEELS=$(tests/molecule/oumi-wheels.sh)
    export HYPERSCALER_OUMI_WHEELS
    echo "oumi wheels: $HYPERSCALER_OUMI_WHEELS ($((SECONDS - start)) s)"
  fi
done

failed=()
report=()
for s in "${scenarios[@]}"; do
  start=$SECONDS
  echo "=== molecule test -s $s"
  if molecule test -s "$s"; then result=passed; else result=FAILED; failed+=("$s"); fi
  report+=("$(printf '%-16s %-7s %4ss' "$s" "$result" "$((SECONDS - start))")")
done

echo "=== molecule scenarios"
printf '%s\n' "${report[@]}"
echo "$(( ${#scenarios[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
