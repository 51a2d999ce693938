# shellcheck shell=bash
# Sourced by tests that run the gpu_host role as root or not without touching the host: prints the role
# variables that put every file it writes (layout, per-VM device list, boot unit, restore script and
# its library) under a scratch root DIR, with the simulated sysfs tree at DIR/sysroot.
#   gpu_host_scratch_vars DIR PYTHON > vars.yml
gpu_host_scratch_vars() {
  local root=$1 python=$2
  cat <<YML
gpu_host_sysfs_root: $root/sysroot
gpu_host_mig_persist_path: $root/etc/aihow-hyperscaler/mig-layout.json
gpu_host_vm_devices_path: $root/var/lib/aihow-hyperscaler/vm-devices.json
gpu_host_unit_dir: $root/etc/systemd/system
gpu_host_restore_script_path: $root/usr/local/sbin/hyperscaler-gpu-restore
gpu_host_restore_lib_dir: $root/usr/local/lib/aihow-hyperscaler
gpu_host_restore_python: $python
# Absent on purpose: even on a CI host running systemd, nothing is enabled outside the scratch dir.
gpu_host_systemd_run_dir: $root/run/systemd/system
YML
}
