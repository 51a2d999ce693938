# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Read-only facts about a hypervisor host and their evaluation against what a cluster needs.

``gather`` reads /proc, /sys, /dev/kvm, /etc/modprobe.d and the kernel log (all paths can point at
fake roots for tests). ``evaluate`` turns facts + needs into failures (the cluster cannot run; each
with a remediation) and warnings (it runs, but degraded: TCG instead of KVM, no IOMMU without GPU
passthrough, thin overlays that could fill the disk).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket
import subprocess

from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import accelerator
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import first_file_ancestor
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.sysfs import listdir_sorted as _listdir, read_text as _read

VFIO_MODULES = ("vfio", "vfio_pci", "vfio_iommu_type1")
LIBVIRT_SOCKETS = ("/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock")
# QEMU's own memory besides guest RAM (measured: a 512 MiB TCG guest costs ~560 MB on the host).
QEMU_OVERHEAD_MB = 64
# Below this much free disk per VM even a fresh overlay, logs and seed ISOs do not fit.
DISK_FLOOR_GB_PER_VM = 2
_IOMMU_LOG = re.compile(r"(DMAR: IOMMU enabled|DMAR: Intel\(R\) Virtualization Technology for Directed I/O|"
                        r"AMD-Vi: (Found IOMMU|Interrupt remapping enabled|AMD IOMMUv2)|"
                        r"Intel-IOMMU: enabled)")


def check_paths(proc_root="/proc", sys_root="/sys", modprobe_dir="/etc/modprobe.d", dmesg_path=None,
                pool_path="/var/lib/libvirt/images"):
    """HyperscalerError naming the option when a path cannot be what it stands for.

    A wrong root would otherwise read as facts (0 MB of memory, no IOMMU), which is worse than failing.
    A missing modprobe_dir or /dev/kvm is a fact about the host, not an error.
    """
    for option, path in (("proc_root", proc_root), ("sys_root", sys_root)):
        if not os.path.isdir(path):
            raise HyperscalerError("%s: %s %s; give the directory the kernel's %s is mounted at (or a fake tree)"
                                   % (option, path, "is not a directory" if os.path.exists(path) else "does not exist",
                                      "/proc" if option == "proc_root" else "/sys"))
    if os.path.exists(modprobe_dir) and not os.path.isdir(modprobe_dir):
        raise HyperscalerError("modprobe_dir: %s is not a directory (modprobe reads *.conf files from a directory "
                               "such as /etc/modprobe.d)" % modprobe_dir)
    if dmesg_path:
        if not os.path.exists(dmesg_path):
            raise HyperscalerError("dmesg_path: %s does not exist; give a file holding the kernel log, or leave "
                                   "dmesg_path out to run dmesg" % dmesg_path)
        if os.path.isdir(dmesg_path):
            raise HyperscalerError("dmesg_path: %s is a directory; give a file holding the kernel log" % dmesg_path)
        if not os.access(dmesg_path, os.R_OK):
            raise HyperscalerError("dmesg_path: %s cannot be read: permission denied" % dmesg_path)
    if os.path.exists(pool_path) and not os.path.isdir(pool_path):
        raise HyperscalerError("pool_path: %s is a regular file; the storage pool needs a directory" % pool_path)
    blocker = first_file_ancestor(pool_path)
    if blocker:
        raise HyperscalerError("pool_path: %s cannot be created: %s is a regular file, not a directory"
                               % (pool_path, blocker))


_NEEDS_MIN = (("vms", 0), ("vcpus", 0), ("memory_mb", 0), ("disk_gb", 0), ("tcg_tb_cache_mb", 0),
              ("reserved_memory_gb", 0))


def check_needs(needs):
    """HyperscalerError for values no cluster can have (negative sizes, an overcommit of 0 or less)."""
    for key, low in _NEEDS_MIN:
        if needs.get(key) is not None and needs[key] < low:
            raise HyperscalerError("needs.%s must be %d or more, not %s" % (key, low, needs[key]))
    if needs.get("cpu_overcommit") is not None and needs["cpu_overcommit"] <= 0:
        raise HyperscalerError("needs.cpu_overcommit must be greater than 0 (1 means no overcommit), not %s"
                               % needs["cpu_overcommit"])


def cpu_facts(proc_root="/proc"):
    text = _read(os.path.join(proc_root, "cpuinfo"), "")
    flags, vendor, count = set(), None, 0
    for line in text.splitlines():
        key, value = (line.split(":", 1) + [""])[:2]
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "flags":
            flags.update(value.split())
        elif key == "vendor_id" and vendor is None:
            vendor = value.strip()
    return {"vendor": vendor, "logical_cpus": count or (os.cpu_count() or 1),
            "virt_flags": sorted(flags & {"vmx", "svm"})}


def kvm_facts(proc_root="/proc", kvm_path="/dev/kvm"):
    """The same decision as libvirt_cluster's accelerator: /dev/kvm opens read-write AND vmx|svm."""
    accel, reason = accelerator.detect_accelerator("auto", os.path.join(proc_root, "cpuinfo"), kvm_path)
    return {"usable": accel == "kvm", "accelerator": accel, "reason": reason, "device_exists": os.path.exists(kvm_path)}


def kernel_log(dmesg_path=None, run=subprocess.run):
    """Kernel ring buffer text: from dmesg_path when given, else `dmesg` ('' when not allowed)."""
    if dmesg_path:
        return _read(dmesg_path, "")
    try:
        done = run(["dmesg"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def iommu_facts(sys_root="/sys", log_text=""):
    """IOMMU state from the kernel: groups in /sys/kernel/iommu_groups, units in /sys/class/iommu, the log."""
    groups = _listdir(os.path.join(sys_root, "kernel", "iommu_groups"))
    units = _listdir(os.path.join(sys_root, "class", "iommu"))
    log_lines = [line.strip() for line in log_text.splitlines() if _IOMMU_LOG.search(line)]
    driver = None
    if any(u.startswith("dmar") for u in units) or any("DMAR" in line or "Intel-IOMMU" in line for line in log_lines):
        driver = "intel"
    elif any(u.startswith("ivhd") for u in units) or any("AMD-Vi" in line for line in log_lines):
        driver = "amd"
    # Groups exist only when an IOMMU translates for devices: that is what passthrough needs.
    return {"enabled": bool(groups), "groups": len(groups), "units": units, "driver": driver,
            "log": log_lines[:5]}


def module_facts(proc_root="/proc", sys_root="/sys", modprobe_dir="/etc/modprobe.d"):
    loaded = set(line.split()[0] for line in _read(os.path.join(proc_root, "modules"), "").splitlines() if line.strip())
    # Built-in modules have a /sys/module entry but no /proc/modules line.
    present = set(loaded) | set(_listdir(os.path.join(sys_root, "module")))
    blacklist_files = []
    for name in _listdir(modprobe_dir):
        if not name.endswith(".conf"):
            continue
        text = _read(os.path.join(modprobe_dir, name), "")
        if re.search(r"^\s*blacklist\s+nouveau\s*$", text, re.M):
            blacklist_files.append(name)
    cmdline = _read(os.path.join(proc_root, "cmdline"), "")
    cmdline_blacklist = bool(re.search(r"(^|\s)modprobe\.blacklist=\S*\bnouveau\b", cmdline))
    return {
        "nouveau_loaded": "nouveau" in loaded,
        "nouveau_blacklisted": bool(blacklist_files) or cmdline_blacklist,
        "nouveau_blacklist_files": blacklist_files,
        "vfio": dict((m, m in present) for m in VFIO_MODULES),
    }


def memory_facts(proc_root="/proc"):
    out = {}
    for line in _read(os.path.join(proc_root, "meminfo"), "").splitlines():
        m = re.match(r"^(MemTotal|MemAvailable):\s+(\d+)\s+kB", line)
        if m:
            out[m.group(1)] = int(m.group(2)) // 1024
    return {"total_mb": out.get("MemTotal", 0), "available_mb": out.get("MemAvailable", out.get("MemTotal", 0))}


def disk_facts(path):
    """Free space where the pool lives (the nearest existing parent when the pool is not created yet)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe)
    except OSError as exc:
        raise HyperscalerError("pool_path: cannot measure the free space at %s (for %s): %s"
                               % (probe, path, exc.strerror or exc))
    return {"path": path, "measured_at": probe, "free_gb": round(st.f_bavail * st.f_frsize / 1024.0 ** 3, 1)}


def libvirt_facts(sockets=LIBVIRT_SOCKETS, which=None):
    import shutil
    which = which or shutil.which
    served = None
    for path in sockets:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(path)
            served = path
            break
        except (OSError, socket.timeout):
            continue
        finally:
            sock.close()
    return {"socket": served, "served": served is not None, "libvirtd": which("libvirtd"),
            "qemu": which("qemu-system-x86_64")}


def gather(proc_root="/proc", sys_root="/sys", kvm_path="/dev/kvm", modprobe_dir="/etc/modprobe.d",
           dmesg_path=None, pool_path="/var/lib/libvirt/images", sockets=LIBVIRT_SOCKETS, run=subprocess.run,
           which=None):
    check_paths(proc_root, sys_root, modprobe_dir, dmesg_path, pool_path)
    return {
        "cpu": cpu_facts(proc_root),
        "kvm": kvm_facts(proc_root, kvm_path),
        "iommu": iommu_facts(sys_root, kernel_log(dmesg_path, run)),
        "modules": module_facts(proc_root, sys_root, modprobe_dir),
        "memory": memory_facts(proc_root),
        "disk": disk_facts(pool_path),
        "libvirt": libvirt_facts(sockets, which),
    }


def evaluate(facts, needs):
    """(failures, warnings): lists of {check, msg, remediation?}.

    needs: vms, vcpus, memory_mb, disk_gb (sums over this host's VMs), gpu_passthrough (bool),
    accelerator (auto|kvm|tcg), tcg_tb_cache_mb, cpu_overcommit, reserved_memory_gb, lab_mode.
    """
    failures, warnings = [], []

    def fail(check, msg, remediation):
        failures.append({"check": check, "msg": msg, "remediation": remediation})

    def warn(check, msg):
        warnings.append({"check": check, "msg": msg})

    kvm = facts["kvm"]
    accel = needs.get("accelerator", "auto")
    tcg = accel == "tcg" or not kvm["usable"]
    if not kvm["usable"]:
        if accel == "kvm":
            fail("kvm", "accelerator kvm is requested but %s" % kvm["reason"], accelerator.KVM_REMEDIATION)
        elif accel == "auto":
            warn("kvm", "%s; guests run much slower" % kvm["reason"])
    gpu = bool(needs.get("gpu_passthrough"))
    iommu = facts["iommu"]
    if not iommu["enabled"]:
        msg = "the kernel has no IOMMU groups (/sys/kernel/iommu_groups is empty)"
        if gpu:
            fail("iommu", msg + ", so GPUs cannot be passed through",
                 "enable VT-d (Intel) or AMD-Vi/IOMMU in the firmware, boot with intel_iommu=on (Intel) "
                 "and iommu=pt, then reboot")
        else:
            warn("iommu", msg + "; fine while no GPU passthrough is planned")
    mods = facts["modules"]
    if gpu:
        if mods["nouveau_loaded"] or not mods["nouveau_blacklisted"]:
            fail("nouveau", "nouveau is %s" % ("loaded" if mods["nouveau_loaded"] else "not blacklisted"),
                 "echo -e 'blacklist nouveau\\noptions nouveau modeset=0' > /etc/modprobe.d/blacklist-nouveau.conf; "
                 "update-initramfs -u; reboot")
        missing = sorted(m for m, ok in mods["vfio"].items() if not ok)
        if missing:
            fail("vfio", "VFIO modules not loaded: %s" % ", ".join(missing),
                 "modprobe -a vfio vfio_pci vfio_iommu_type1 and list them in /etc/modules-load.d/vfio.conf")
    lab = needs.get("lab_mode", "auto")
    lv = facts["libvirt"]
    if not lv["qemu"]:
        fail("libvirt", "qemu-system-x86_64 is not installed", "apt-get install qemu-system-x86 qemu-utils")
    if lab == "disabled" and not lv["served"]:
        fail("libvirt", "no libvirtd answers on %s and lab_mode is disabled" % " or ".join(LIBVIRT_SOCKETS),
             "start libvirtd (apt-get install libvirt-daemon-system) and make sure this user may use it "
             "(root or group libvirt), or set hypervisor.lab_mode: auto")
    elif not lv["served"] and not lv["libvirtd"]:
        fail("libvirt", "no libvirtd runs and none is installed for lab mode",
             "apt-get install libvirt-daemon libvirt-daemon-driver-qemu dnsmasq-base netcat-openbsd")
    cpus = facts["cpu"]["logical_cpus"]
    allowed = cpus * float(needs.get("cpu_overcommit", 4))
    if needs.get("vcpus", 0) > allowed:
        fail("cpu", "the VMs need %d vCPUs, this host allows %d (%d CPUs x overcommit %s)"
             % (needs["vcpus"], allowed, cpus, needs.get("cpu_overcommit", 4)),
             "give the VMs fewer cpu_cores, raise hypervisor.cpu_overcommit, or use a bigger host")
    per_vm = QEMU_OVERHEAD_MB + (int(needs.get("tcg_tb_cache_mb", 128)) if tcg else 0)
    need_mb = int(needs.get("memory_mb", 0)) + per_vm * int(needs.get("vms", 0))
    reserve_mb = int(float(needs.get("reserved_memory_gb", 0)) * 1024)
    avail = facts["memory"]["available_mb"]
    if need_mb + reserve_mb > avail:
        fail("memory", "the VMs need %d MiB (guest RAM + %d MiB QEMU%s each) plus %d MiB reserved, %d MiB are available"
             % (need_mb, per_vm, " and TCG cache" if tcg else "", reserve_mb, avail),
             "give the VMs less memory_gb, lower hypervisor.tcg_tb_cache_mb or reserved_memory_gb, or free memory")
    free = facts["disk"]["free_gb"]
    floor = DISK_FLOOR_GB_PER_VM * int(needs.get("vms", 0))
    if free < floor:
        fail("disk", "%s GiB free at %s, the %d VMs need at least %d GiB"
             % (free, facts["disk"]["measured_at"], needs.get("vms", 0), floor),
             "free space there or move hypervisor.storage_pool.path to a bigger filesystem")
    elif free < needs.get("disk_gb", 0):
        warn("disk", "%s GiB free at %s, less than the %d GiB the overlays may grow to (thin, so fine at first)"
             % (free, facts["disk"]["measured_at"], needs["disk_gb"]))
    return failures, warnings
