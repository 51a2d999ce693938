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
# Boot time under TCG (docs/benchmarks.md): cloud-init's local stage only renders a DHCP network
# config, which 99-aihow-dhcp.network above already gives, yet it is a Python start of ~30 s on
# the path to SSH in a 1-vCPU TCG guest. The network stage (cloud-init.service) still finds the
# NoCloud seed (label cidata), sets the host name, creates the user with its key and grows the disk.
chroot "$root" systemctl mask cloud-init-local.service
# Only the modules the collection's seeds use run after SSH is up, beside the roles' first tasks.
cat >"$root/etc/cloud/cloud.cfg.d/91-aihow-modules.cfg" <<'CFG'
cloud_config_modules: [set-passwords, runcmd]
cloud_final_modules: [scripts-vendor, scripts-per-once, scripts-per-boot, scripts-per-instance, scripts-user, final-message]
CFG
