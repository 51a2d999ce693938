#!/usr/bin/env bash
# mmdebstrap customize hook: kernel modules and sysctls that kubeadm's preflight checks need.
# Args: ROOT NAME DEFS_DIR.
set -euo pipefail
root=$1
printf 'overlay\nbr_netfilter\n' >"$root/etc/modules-load.d/kubernetes.conf"
cat >"$root/etc/sysctl.d/90-kubernetes.conf" <<'CFG'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CFG
# kubelet refuses to run with swap on; the images have no swap, keep it that way.
sed -i '/[[:space:]]swap[[:space:]]/d' "$root/etc/fstab"
