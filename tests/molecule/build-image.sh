#!/usr/bin/env bash
# Builds (or reuses) a local Debian 12 systemd image the Molecule scenarios run in.
# Registries are unreachable here, so the image is made from Debian packages with mmdebstrap
# and imported into podman. Everything the roles install is preinstalled, so scenarios run
# offline (containers get --network=none) and fast.
#
#   hpc    (default) the HPC roles' packages                -> localhost/hyperscaler-molecule:<hash>
#   cloud  the cloud roles': PostgreSQL 15 and the cloud-base golden image's /opt/aihow/venv
#          (images/defs/cloud-base/python.lock)             -> localhost/hyperscaler-molecule-cloud:<hash>
#
# Usage: tests/molecule/build-image.sh [hpc|cloud]          -> prints the image
#        source tests/molecule/build-image.sh [hpc|cloud]   -> also exports CONTAINERS_CONF and
#                                                             HYPERSCALER_MOLECULE_IMAGE (hpc) or
#                                                             HYPERSCALER_MOLECULE_CLOUD_IMAGE (cloud)
# The cloud image's wheels are the golden image build's (images/build-base.sh fetch_wheels, through
# tests/molecule/wheels.sh): downloaded once per lock into ${AIHOW_IMAGE_CACHE_DIR:-/var/cache/aihow-hyperscaler/images}/base/wheels/
# (or the cache directory below when that is not writable), with pip's configuration of this host
# (PIP_FIND_LINKS=/opt/wheels holds the torch 2.13.0+cpu wheel; AIHOW_WHEEL_DIRS works too).
set -euo pipefail

_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_repo="$(cd "$_here/../.." && pwd)"
_flavor="${1:-hpc}"

# Packages baked into every image: systemd and what Ansible needs offline (python3-apt:
# ansible.builtin.apt would otherwise try to install it from the network; sudo for become_user).
_base_packages=(systemd-sysv dbus python3 python3-apt sudo procps iproute2 kmod)
case $_flavor in
  hpc)
    HYPERSCALER_IMAGE_PACKAGES=("${_base_packages[@]}"
      munge slurm-wlm slurmdbd slurm-client mariadb-server
      nfs-kernel-server nfs-common prometheus prometheus-node-exporter
      # MPI under Slurm (the slurm role's slurm_mpi_packages, and what molecule/slurm/verify.yml's allreduce runs).
      openmpi-bin libpmix-dev python3-mpi4py
      # Containers under Slurm (roles container_registry and container_runtime; molecule/containers).
      docker-registry buildah skopeo charliecloud-runtime charliecloud-builders openssl ca-certificates)
    _repository=localhost/hyperscaler-molecule
    _image_var=HYPERSCALER_MOLECULE_IMAGE
    ;;
  cloud)
    # The packages of images/defs/cloud-base/packages that the cloud roles use (postgresql-15 and
    # python3-psycopg2: the postgresql role's; curl; python3-venv for the venv), without the
    # Kubernetes node's (containerd, conntrack, ...), which no role of platform systemd runs.
    HYPERSCALER_IMAGE_PACKAGES=("${_base_packages[@]}" postgresql-15 python3-psycopg2 curl python3-venv)
    _repository=localhost/hyperscaler-molecule-cloud
    _image_var=HYPERSCALER_MOLECULE_CLOUD_IMAGE
    ;;
  *)
    echo "usage: ${BASH_SOURCE[0]} [hpc|cloud] (got '$_flavor')" >&2
    # shellcheck disable=SC2317  # exit is reached when the script is run rather than sourced
    return 2 2>/dev/null || exit 2
    ;;
esac
HYPERSCALER_IMAGE_SUITE="${HYPERSCALER_IMAGE_SUITE:-bookworm}"
HYPERSCALER_IMAGE_MIRROR="${HYPERSCALER_IMAGE_MIRROR:-http://deb.debian.org/debian}"
HYPERSCALER_CACHE_DIR="${HYPERSCALER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperscaler-molecule}"
mkdir -p "$HYPERSCALER_CACHE_DIR"

# podman 4.3 on this host: crun fails and the default nofile/nproc limits break systemd units.
export CONTAINERS_CONF="$HYPERSCALER_CACHE_DIR/containers.conf"
cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
CONF

# The golden images' hooks the cloud image runs as they are (Args: ROOT NAME DEFS_DIR): the venv from
# the lock's wheels, PostgreSQL 15 without a cluster (the postgresql role creates it), and the units the
# roles enable left disabled (images/defs/cloud-base/disabled-services).
_defs="$_repo/images/defs"
_golden_hooks=()
if [[ $_flavor == cloud ]]; then
  _golden_hooks=("$_defs/cloud-base/hooks/30-postgresql.sh" "$_defs/common/hooks/60-python-venv.sh"
                 "$_defs/common/hooks/80-services.sh")
fi

# Content hash: package list + suite + this script (+ for cloud: the lock, the wheels' Python tags, the
# golden hooks and the disabled units), so any change rebuilds and old tags stay valid.
_hash="$( {
  printf '%s\n' "${HYPERSCALER_IMAGE_PACKAGES[@]}" "$HYPERSCALER_IMAGE_SUITE"
  cat "${BASH_SOURCE[0]}"
  if [[ $_flavor == cloud ]]; then
    cat "$_defs/cloud-base/python.lock" "$_defs/cloud-base/disabled-services" "${_golden_hooks[@]}"
    # shellcheck source=tests/molecule/wheels.sh
    (set -euo pipefail; source "$_here/wheels.sh"; echo "${WHEEL_TARGET[*]}")
  fi
} | sha256sum | cut -c1-12)"
_image="$_repository:${_hash}"
export "$_image_var=$_image"

if ! podman image exists "$_image"; then
  _start=$SECONDS
  _tmp="$(mktemp -d "$HYPERSCALER_CACHE_DIR/build.XXXXXX")"
  trap 'rm -rf "$_tmp"' EXIT
  _pkgs="$(IFS=,; echo "${HYPERSCALER_IMAGE_PACKAGES[*]}")"
  _hooks=()
  if [[ $_flavor == cloud ]]; then
    # The golden image build's wheel directory, under its lock (build-base.sh holds the same one while
    # it downloads): a machine that built cloud-base has them already.
    _wheel_dir="${AIHOW_IMAGE_CACHE_DIR:-/var/cache/aihow-hyperscaler/images}/base/wheels"
    if ! mkdir -p "$_wheel_dir" 2>/dev/null || [[ ! -w $_wheel_dir ]]; then
      _wheel_dir="$HYPERSCALER_CACHE_DIR/wheels"
      mkdir -p "$_wheel_dir"
    fi
    AIHOW_IMAGE_WHEELS="$(
      set -euo pipefail
      # shellcheck source=tests/molecule/wheels.sh
      source "$_here/wheels.sh"
      exec 9>"$(dirname "$_wheel_dir")/.cloud-base.lock"
      flock 9
      fetch_wheels cloud-base "$_defs/cloud-base/python.lock" "$_wheel_dir" | tail -n 1
    )"
    export AIHOW_IMAGE_WHEELS  # read by 60-python-venv.sh (mmdebstrap keeps the environment)
    for _h in "${_golden_hooks[@]}"; do
      _hooks+=("--customize-hook=bash '$_h' \"\$1\" cloud-base '$_defs'")
    done
  else
    # Scenarios run with --network=none (loopback only), and glibc's getaddrinfo(AF_INET, AI_ADDRCONFIG),
    # which Slurm uses, fails when 127.0.0.1 is the only IPv4 address: a second loopback address
    # (needs CAP_NET_ADMIN in the container's own network namespace) makes Slurm resolve 127.0.0.1.
    # The hooks' $1 is expanded by mmdebstrap's shell (the root), not here.
    # shellcheck disable=SC2016
    _hooks+=(
      --customize-hook='printf "%s\n" "[Unit]" "Description=Non-127.0.0.1 loopback address (glibc AI_ADDRCONFIG)" "DefaultDependencies=no" "Before=network-pre.target munge.service slurmdbd.service slurmctld.service slurmd.service" "[Service]" "Type=oneshot" "ExecStart=-/usr/sbin/ip addr add 127.0.0.2/32 dev lo" "RemainAfterExit=yes" "[Install]" "WantedBy=multi-user.target" > "$1/etc/systemd/system/hyperscaler-loopback-alias.service"'
      --customize-hook='chroot "$1" systemctl enable hyperscaler-loopback-alias.service'
    )
  fi
  echo "building $_image with mmdebstrap (a few minutes)" >&2
  # The customize hooks make the image behave like a fresh Debian host booting in a container:
  # - empty machine-id so each container gets its own;
  # - no getty/udev/remount units that fail without a real console or devices.
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --include="$_pkgs" \
    --customize-hook='echo -n > "$1/etc/machine-id"' \
    --customize-hook='chroot "$1" systemctl mask getty@tty1.service console-getty.service systemd-udevd.service systemd-remount-fs.service systemd-logind.service >/dev/null 2>&1 || true' \
    --customize-hook='rm -f "$1/etc/hostname"' \
    "${_hooks[@]}" \
    "$HYPERSCALER_IMAGE_SUITE" "$_tmp/rootfs.tar" "$HYPERSCALER_IMAGE_MIRROR" >&2
  podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    "$_tmp/rootfs.tar" "$_image" >&2
  rm -rf "$_tmp"
  trap - EXIT
  echo "built $_image in $((SECONDS - _start)) s" >&2
fi

echo "$_image"
