#!/usr/bin/env bash
# mmdebstrap customize hook: networking and cloud-init. Args: ROOT NAME DEFS_DIR.
set -euo pipefail
root=$1
# Fallback DHCP on any NIC; cloud-init's own 10-cloud-init-*.network takes precedence.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/99-aihow-dhcp.network" <<'CFG'
[Match]
Name=en* eth*

[Network]
DHCP=yes
CFG
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
ln -sfn /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# The VM layer hands every VM a NoCloud seed ISO; never wait for cloud metadata services.
mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat >"$root/etc/cloud/cloud.cfg.d/90-aihow-datasource.cfg" <<'CFG'
datasource_list: [NoCloud, None]
CFG
