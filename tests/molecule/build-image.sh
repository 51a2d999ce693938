#!/usr/bin/env bash
# Builds (or reuses) the local Debian 12 systemd image the Molecule scenarios run in.
# Registries are unreachable here, so the image is made from Debian packages with mmdebstrap
# and imported into podman. Everything the roles install is preinstalled, so scenarios run
# offline (containers get --network=none) and fast.
#
# Usage: tests/molecule/build-image.sh            -> prints localhost/hyperscaler-molecule:<hash>
#        source tests/molecule/build-image.sh     -> also exports CONTAINERS_CONF and HYPERSCALER_MOLECULE_IMAGE
set -euo pipefail

_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Packages baked into the image: the roles' packages plus what Ansible needs offline
# (python3-apt: ansible.builtin.apt would otherwise try to install it from the network).
HYPERSCALER_IMAGE_PACKAGES=(
  systemd-sysv dbus python3 python3-apt sudo procps iproute2 kmod
  munge slurm-wlm slurmdbd slurm-client mariadb-server
  nfs-kernel-server nfs-common prometheus prometheus-node-exporter
  # MPI under Slurm (the slurm role's slurm_mpi_packages, and what molecule/slurm/verify.yml's allreduce runs).
  openmpi-bin libpmix-dev python3-mpi4py
)
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

# Content hash: package list + suite + this script, so any change rebuilds and old tags stay valid.
_hash="$( { printf '%s\n' "${HYPERSCALER_IMAGE_PACKAGES[@]}" "$HYPERSCALER_IMAGE_SUITE"; cat "${BASH_SOURCE[0]}"; } \
  | sha256sum | cut -c1-12)"
export HYPERSCALER_MOLECULE_IMAGE="localhost/hyperscaler-molecule:${_hash}"

if ! podman image exists "$HYPERSCALER_MOLECULE_IMAGE"; then
  _tmp="$(mktemp -d "$HYPERSCALER_CACHE_DIR/build.XXXXXX")"
  trap 'rm -rf "$_tmp"' EXIT
  _pkgs="$(IFS=,; echo "${HYPERSCALER_IMAGE_PACKAGES[*]}")"
  echo "building $HYPERSCALER_MOLECULE_IMAGE with mmdebstrap (a few minutes)" >&2
  # The customize hooks make the image behave like a fresh Debian host booting in a container:
  # - empty machine-id so each container gets its own;
  # - no getty/udev/remount units that fail without a real console or devices;
  # - scenarios run with --network=none (loopback only), and glibc's getaddrinfo(AF_INET, AI_ADDRCONFIG),
  #   which Slurm uses, fails when 127.0.0.1 is the only IPv4 address: a second loopback address
  #   (needs CAP_NET_ADMIN in the container's own network namespace) makes Slurm resolve 127.0.0.1.
  # The hooks' $1 is expanded by mmdebstrap's shell (the root), not here.
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --include="$_pkgs" \
    --customize-hook='echo -n > "$1/etc/machine-id"' \
    --customize-hook='chroot "$1" systemctl mask getty@tty1.service console-getty.service systemd-udevd.service systemd-remount-fs.service systemd-logind.service >/dev/null 2>&1 || true' \
    --customize-hook='rm -f "$1/etc/hostname"' \
    --customize-hook='printf "%s\n" "[Unit]" "Description=Non-127.0.0.1 loopback address (glibc AI_ADDRCONFIG)" "DefaultDependencies=no" "Before=network-pre.target munge.service slurmdbd.service slurmctld.service slurmd.service" "[Service]" "Type=oneshot" "ExecStart=-/usr/sbin/ip addr add 127.0.0.2/32 dev lo" "RemainAfterExit=yes" "[Install]" "WantedBy=multi-user.target" > "$1/etc/systemd/system/hyperscaler-loopback-alias.service"' \
    --customize-hook='chroot "$1" systemctl enable hyperscaler-loopback-alias.service' \
    "$HYPERSCALER_IMAGE_SUITE" "$_tmp/rootfs.tar" "$HYPERSCALER_IMAGE_MIRROR" >&2
  podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    "$_tmp/rootfs.tar" "$HYPERSCALER_MOLECULE_IMAGE" >&2
  rm -rf "$_tmp"
  trap - EXIT
fi

echo "$HYPERSCALER_MOLECULE_IMAGE"
