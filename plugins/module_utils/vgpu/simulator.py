# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""A fake vGPU sysfs tree that behaves like the kernel when its control files are written.

:class:`VgpuSim` lays out, below a directory, what the NVIDIA vGPU host driver shows in sysfs
for three kinds of GPU:

* ``add_mdev_gpu``: a non-SR-IOV mdev parent (Volta/Turing style), ``mdev_supported_types/nvidia-N``;
* ``add_sriov_mdev_gpu``: an Ampere A100/A30 PF whose VFs are the mdev parents (one vGPU per VF);
* ``add_vendor_vfio_gpu``: a vGPU 17+ PF whose VFs have ``nvidia/creatable_vgpu_types`` and
  ``nvidia/current_vgpu_type``.

A directory cannot react to writes, so :class:`SimSysfsWriter` (the writer seam of
vgpu_sysfs) does what the kernel would: create or remove the mdev directory and its links,
update ``available_instances``, ``devices/`` and the creatable lists.  The simulated GPU
model (type capacities, MIG mode) is stored in ``<root>/.vgpu-sim.json`` so a writer in another
process (an Ansible module run) sees the same GPUs; device state is read from the tree itself.

Capacity follows the NVIDIA rules that matter for placement: time-sliced vGPUs on one GPU are
homogeneous (one type at a time) and limited to the type's max instances; MIG-backed types
are only creatable when MIG mode is on (and then only MIG-backed ones); an SR-IOV VF holds one
vGPU.  Type ids and counts of the presets are illustrative, not a driver's exact table.

Command line (for playbooks against the GPU simulator)::

    scripts/hyperscaler-vgpu-sim ROOT [--preset lab]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import shutil
import uuid as uuidlib

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import read_json_object
from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu.sysfs import (
    MDEV_BUS, MDEV_DEVICES, MDEVCTL_DIR, PCI_DEVICES, is_mig_backed)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.sysfs import read_attr as _read

MODEL_FILE = ".vgpu-sim.json"
DEVICES_DIR = "sys/devices/pci0000:00"
NVIDIA_VENDOR = "0x10de"
CREATABLE_HEADER = "ID    : vGPU Name"


def _t(type_id, name, max_instances, description=""):
    return {"id": str(type_id), "name": name, "max": max_instances, "description": description}


# Illustrative type tables (names follow the driver; ids are stable within this simulator).
V100_TYPES = [
    _t("nvidia-180", "GRID V100DX-1Q", 32, "num_heads=4, frl_config=60, framebuffer=1024M"),
    _t("nvidia-181", "GRID V100DX-2Q", 16, "num_heads=4, frl_config=60, framebuffer=2048M"),
    _t("nvidia-182", "GRID V100DX-4Q", 8, "num_heads=4, frl_config=60, framebuffer=4096M"),
    _t("nvidia-183", "GRID V100DX-8Q", 4, "num_heads=4, frl_config=60, framebuffer=8192M"),
    _t("nvidia-184", "GRID V100DX-16Q", 2, "num_heads=4, frl_config=60, framebuffer=16384M"),
    _t("nvidia-185", "GRID V100DX-32Q", 1, "num_heads=4, frl_config=60, framebuffer=32768M"),
]
A100_TYPES = [
    _t("nvidia-468", "NVIDIA A100-1-5C", 7),
    _t("nvidia-469", "NVIDIA A100-2-10C", 3),
    _t("nvidia-470", "NVIDIA A100-3-20C", 2),
    _t("nvidia-471", "NVIDIA A100-4-20C", 1),
    _t("nvidia-472", "NVIDIA A100-7-40C", 1),
    _t("nvidia-558", "NVIDIA A100-4C", 10),
    _t("nvidia-559", "NVIDIA A100-5C", 8),
    _t("nvidia-560", "NVIDIA A100-8C", 5),
    _t("nvidia-561", "NVIDIA A100-10C", 4),
    _t("nvidia-562", "NVIDIA A100-20C", 2),
    _t("nvidia-563", "NVIDIA A100-40C", 1),
]
H200_TYPES = [
    _t(1414, "NVIDIA H200X-1-18C", 7),
    _t(1415, "NVIDIA H200X-2-35C", 3),
    _t(1416, "NVIDIA H200X-3-71C", 2),
    _t(1417, "NVIDIA H200X-7-141C", 1),
    _t(1430, "NVIDIA H200X-4C", 16),  # bounded by the 16 VFs, not by framebuffer
    _t(1431, "NVIDIA H200X-17C", 8),
    _t(1432, "NVIDIA H200X-35C", 4),
    _t(1433, "NVIDIA H200X-70C", 2),
    _t(1434, "NVIDIA H200X-141C", 1),
]


def vf_addresses(pf, count, offset=4):
    """VF BDFs the way ARI numbers them: PF 41:00.0 -> 41:00.4, 41:00.5, ... 41:02.3."""
    domain, bus, rest = pf.split(":")
    slot, fn = rest.split(".")
    base = int(slot, 16) * 8 + int(fn)
    out = []
    for i in range(count):
        devfn = base + offset + i
        out.append("%s:%s:%02x.%d" % (domain, bus, devfn // 8, devfn % 8))
    return out


def _rel_link(target, link):
    """Relative symlinks, so the tree also works bind-mounted over /sys (real mdevctl test)."""
    if os.path.lexists(link):
        os.unlink(link)
    parent = os.path.dirname(link)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    os.symlink(os.path.relpath(target, parent), link)


def _write(path, text):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with open(path, "w") as f:
        f.write(text)


class VgpuSim:
    """Build and mutate a simulated vGPU sysfs tree under ``root``."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        path = os.path.join(self.root, MODEL_FILE)
        if os.path.exists(path):
            self.model = read_json_object(path, "the vGPU simulator's model file")
        else:
            self.model = {"gpus": {}, "next_group": 64, "next_vfio": 0}
            self._skeleton()
            self.save()

    # ------------------------------------------------------------ layout helpers
    def p(self, *parts):
        return os.path.join(self.root, *parts)

    def dev_dir(self, address):
        return self.p(DEVICES_DIR, address)

    def save(self):
        _write(self.p(MODEL_FILE), json.dumps(self.model, indent=2, sort_keys=True) + "\n")

    def _skeleton(self):
        for d in (MDEV_BUS, MDEV_DEVICES, PCI_DEVICES, DEVICES_DIR, "sys/bus/pci/drivers/nvidia",
                  "sys/bus/mdev/drivers/nvidia-vgpu-vfio", "sys/kernel/iommu_groups", "dev/vfio",
                  # mdevctl refuses to run without its callout directories
                  MDEVCTL_DIR + "/scripts.d/callouts", MDEVCTL_DIR + "/scripts.d/notifiers"):
            if not os.path.isdir(self.p(d)):
                os.makedirs(self.p(d))

    def _new_group(self, member_dir):
        group = self.model["next_group"]
        self.model["next_group"] = group + 1
        gdir = self.p("sys/kernel/iommu_groups", str(group))
        os.makedirs(os.path.join(gdir, "devices"))
        _rel_link(member_dir, os.path.join(gdir, "devices", os.path.basename(member_dir)))
        _rel_link(gdir, os.path.join(member_dir, "iommu_group"))
        return group

    def _pci_device(self, address, device_id, driver="nvidia"):
        d = self.dev_dir(address)
        os.makedirs(d)
        _write(os.path.join(d, "vendor"), NVIDIA_VENDOR + "\n")
        _write(os.path.join(d, "device"), device_id + "\n")
        _write(os.path.join(d, "class"), "0x030200\n")
        if driver:
            drv = self.p("sys/bus/pci/drivers", driver)
            if not os.path.isdir(drv):
                os.makedirs(drv)
            _rel_link(drv, os.path.join(d, "driver"))
            _rel_link(d, os.path.join(drv, address))
        _rel_link(d, self.p(PCI_DEVICES, address))
        self._new_group(d)
        return d

    def _mdev_types(self, parent, types):
        base = self.dev_dir(parent)
        for t in types:
            tdir = os.path.join(base, "mdev_supported_types", t["id"])
            os.makedirs(os.path.join(tdir, "devices"))
            _write(os.path.join(tdir, "name"), t["name"] + "\n")
            _write(os.path.join(tdir, "description"), t.get("description", "") + "\n")
            _write(os.path.join(tdir, "device_api"), "vfio-pci\n")
            _write(os.path.join(tdir, "available_instances"), "0\n")
            _write(os.path.join(tdir, "create"), "")
        _rel_link(base, self.p(MDEV_BUS, parent))

    def _sriov(self, pf, count, total, device_id, driver):
        pdir = self.dev_dir(pf)
        _write(os.path.join(pdir, "sriov_totalvfs"), "%d\n" % total)
        _write(os.path.join(pdir, "sriov_numvfs"), "%d\n" % count)
        vfs = vf_addresses(pf, count)
        for i, vf in enumerate(vfs):
            vdir = self._pci_device(vf, device_id, driver)
            _rel_link(pdir, os.path.join(vdir, "physfn"))
            _rel_link(vdir, os.path.join(pdir, "virtfn%d" % i))
        return vfs

    # ------------------------------------------------------------ builders
    def add_mdev_gpu(self, address, types=None, device_id="0x1db6", mig=False):
        """A non-SR-IOV GPU that is itself the mdev parent."""
        types = types or V100_TYPES
        self._pci_device(address, device_id)
        self._mdev_types(address, types)
        self.model["gpus"][address] = {"style": "mdev", "parents": [address], "types": types, "mig": mig}
        self.save()
        self.refresh(address)
        return address

    def add_sriov_mdev_gpu(self, address, types=None, num_vfs=16, device_id="0x20b0", mig=False):
        """An A100/A30 on mdev: the VFs are the mdev parents, one vGPU each."""
        types = types or A100_TYPES
        self._pci_device(address, device_id)
        vfs = self._sriov(address, num_vfs, num_vfs, device_id, "nvidia")
        for vf in vfs:
            self._mdev_types(vf, types)
        self.model["gpus"][address] = {"style": "sriov-mdev", "parents": vfs, "types": types, "mig": mig}
        self.save()
        self.refresh(address)
        return vfs

    def add_vendor_vfio_gpu(self, address, types=None, num_vfs=16, device_id="0x2335", mig=False,
                            header=True, sriov_enabled=True):
        """A vGPU 17+ GPU: VFs with nvidia/creatable_vgpu_types and current_vgpu_type."""
        types = types or H200_TYPES
        self._pci_device(address, device_id)
        vfs = []
        if sriov_enabled:
            vfs = self._sriov(address, num_vfs, num_vfs, device_id, "nvidia")
        else:
            _write(os.path.join(self.dev_dir(address), "sriov_totalvfs"), "%d\n" % num_vfs)
            _write(os.path.join(self.dev_dir(address), "sriov_numvfs"), "0\n")
        for vf in vfs:
            vdir = self.dev_dir(vf)
            _write(os.path.join(vdir, "nvidia", "current_vgpu_type"), "0\n")
            _write(os.path.join(vdir, "nvidia", "creatable_vgpu_types"), "")
            cdev = "vfio%d" % self.model["next_vfio"]
            self.model["next_vfio"] += 1
            os.makedirs(os.path.join(vdir, "vfio-dev", cdev))
            _write(os.path.join(vdir, "vfio-dev", cdev, "dev"), "511:%s\n" % cdev[4:])
        self.model["gpus"][address] = {"style": "vendor-vfio", "parents": vfs, "types": types,
                                       "mig": mig, "header": header}
        self.save()
        self.refresh(address)
        return vfs

    # ------------------------------------------------------------ kernel model
    def gpu_of(self, address):
        for pf, gpu in self.model["gpus"].items():
            if address == pf or address in gpu["parents"]:
                return pf, gpu
        return None, None

    def _usage(self, gpu):
        """{type id: count} of vGPUs present on the GPU, read from the tree."""
        used = {}
        for parent in gpu["parents"]:
            if gpu["style"] == "vendor-vfio":
                cur = _read(os.path.join(self.dev_dir(parent), "nvidia", "current_vgpu_type"), "0")
                if cur not in ("", "0"):
                    used[cur] = used.get(cur, 0) + 1
            else:
                for t in gpu["types"]:
                    n = len(os.listdir(os.path.join(self.dev_dir(parent), "mdev_supported_types",
                                                    t["id"], "devices")))
                    if n:
                        used[t["id"]] = used.get(t["id"], 0) + n
        return used

    def _left(self, gpu, t, used):
        if is_mig_backed(t["name"]) != bool(gpu.get("mig")):
            return 0  # MIG mode decides which family is creatable
        others = [tid for tid in used if tid != t["id"]]
        if others and not is_mig_backed(t["name"]):
            return 0  # time-sliced vGPUs on one GPU are homogeneous
        if others:
            # MIG-backed types may mix; model the slice budget (7 compute slices)
            slices = sum(int(self._type(gpu, tid)["name"].split()[-1].split("-")[1]) * n
                         for tid, n in used.items())
            want = int(t["name"].split()[-1].split("-")[1])
            if slices + want > 7:
                return 0
        return max(0, t["max"] - used.get(t["id"], 0))

    @staticmethod
    def _type(gpu, type_id):
        for t in gpu["types"]:
            if t["id"] == type_id:
                return t
        return None

    def refresh(self, address):
        """Recompute available_instances / creatable lists of the GPU that owns ``address``."""
        pf, gpu = self.gpu_of(address)
        if gpu is None:
            return
        used = self._usage(gpu)
        for parent in gpu["parents"]:
            pdir = self.dev_dir(parent)
            if gpu["style"] == "vendor-vfio":
                free = _read(os.path.join(pdir, "nvidia", "current_vgpu_type"), "0") in ("", "0")
                lines = [CREATABLE_HEADER] if gpu.get("header", True) else []
                if free:
                    lines += ["%s : %s" % (t["id"], t["name"]) for t in gpu["types"]
                              if self._left(gpu, t, used) > 0]
                _write(os.path.join(pdir, "nvidia", "creatable_vgpu_types"),
                       "\n".join(lines) + ("\n" if lines else ""))
                continue
            one_per_parent = gpu["style"] == "sriov-mdev"
            busy = one_per_parent and any(
                os.listdir(os.path.join(pdir, "mdev_supported_types", t["id"], "devices"))
                for t in gpu["types"])
            for t in gpu["types"]:
                left = self._left(gpu, t, used)
                if one_per_parent:
                    left = 0 if busy else min(left, 1)
                _write(os.path.join(pdir, "mdev_supported_types", t["id"], "available_instances"),
                       "%d\n" % left)

    def set_mig(self, address, enabled):
        pf, gpu = self.gpu_of(address)
        gpu["mig"] = bool(enabled)
        self.save()
        self.refresh(pf)

    def create_mdev(self, parent, type_id, uid):
        """What the kernel does on a write of ``uid`` to mdev_supported_types/<type>/create."""
        try:
            uid = str(uuidlib.UUID(uid.strip()))
        except ValueError:
            raise OSError(errno.EINVAL, "Invalid argument")
        if os.path.lexists(self.p(MDEV_DEVICES, uid)):
            raise OSError(errno.EEXIST, "File exists")
        tdir = os.path.join(self.dev_dir(parent), "mdev_supported_types", type_id)
        if int(_read(os.path.join(tdir, "available_instances"), "0")) < 1:
            raise OSError(errno.EUSERS, "Too many users")
        ddir = os.path.join(self.dev_dir(parent), uid)
        os.makedirs(ddir)
        _write(os.path.join(ddir, "remove"), "")
        _rel_link(tdir, os.path.join(ddir, "mdev_type"))
        _rel_link(self.p("sys/bus/mdev/drivers/nvidia-vgpu-vfio"), os.path.join(ddir, "driver"))
        self._new_group(ddir)
        _rel_link(ddir, os.path.join(tdir, "devices", uid))
        _rel_link(ddir, self.p(MDEV_DEVICES, uid))
        self.save()
        self.refresh(parent)

    def remove_mdev(self, ddir):
        """What the kernel does on a write of 1 to <mdev>/remove."""
        uid = os.path.basename(ddir)
        tdir = os.path.realpath(os.path.join(ddir, "mdev_type"))
        group = os.path.realpath(os.path.join(ddir, "iommu_group"))
        for link in (os.path.join(tdir, "devices", uid), self.p(MDEV_DEVICES, uid)):
            if os.path.lexists(link):
                os.unlink(link)
        shutil.rmtree(ddir)
        if os.path.isdir(group):
            shutil.rmtree(group)
        self.refresh(os.path.basename(os.path.dirname(ddir)))

    def set_vgpu_type(self, vf, value):
        """What the driver does on a write to nvidia/current_vgpu_type."""
        value = value.strip()
        ctl = os.path.join(self.dev_dir(vf), "nvidia", "current_vgpu_type")
        if value == "0":
            _write(ctl, "0\n")
        else:
            if _read(ctl, "0") not in ("", "0"):
                raise OSError(errno.EBUSY, "Device or resource busy")
            creatable = _read(os.path.join(self.dev_dir(vf), "nvidia", "creatable_vgpu_types"), "")
            ids = [line.split(":")[0].strip() for line in creatable.splitlines()]
            if value not in ids:
                raise OSError(errno.EINVAL, "Invalid argument")
            _write(ctl, value + "\n")
        self.refresh(vf)

    # ------------------------------------------------------------ test helpers
    def hold(self, target, pid=4242, comm="qemu-system-x86"):
        """Fake a VM process holding ``target`` (e.g. '/dev/vfio/70') open, under <root>/proc."""
        fd_dir = self.p("proc", str(pid), "fd")
        if not os.path.isdir(fd_dir):
            os.makedirs(fd_dir)
            _write(self.p("proc", str(pid), "comm"), comm + "\n")
        n = len(os.listdir(fd_dir)) + 10
        os.symlink(target, os.path.join(fd_dir, str(n)))
        return pid

    def writer(self):
        return SimSysfsWriter(self.root)


class SimSysfsWriter:
    """The writer seam for a simulated tree: applies the kernel's effect of a control-file write.

    Writes outside ``root`` are refused, so a simulated run can never touch the real /sys.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def write(self, path, value):
        path = os.path.abspath(path)
        if not path.startswith(self.root + os.sep):
            raise OSError(errno.EPERM, "simulated writer refuses a path outside %s: %s" % (self.root, path))
        sim = VgpuSim(self.root)
        real = os.path.realpath(path)
        name = os.path.basename(real)
        parent_dir = os.path.dirname(real)
        if name == "create" and os.path.basename(os.path.dirname(parent_dir)) == "mdev_supported_types":
            parent = os.path.basename(os.path.dirname(os.path.dirname(parent_dir)))
            sim.create_mdev(parent, os.path.basename(parent_dir), value)
        elif name == "remove" and os.path.islink(os.path.join(parent_dir, "mdev_type")):
            if value.strip() != "1":
                raise OSError(errno.EINVAL, "Invalid argument")
            sim.remove_mdev(parent_dir)
        elif name == "current_vgpu_type" and os.path.basename(parent_dir) == "nvidia":
            sim.set_vgpu_type(os.path.basename(os.path.dirname(parent_dir)), value)
        else:
            _write(real, value)


def build_lab(root):
    """The preset the GPU simulator uses: one GPU of each host style."""
    sim = VgpuSim(root)
    sim.add_mdev_gpu("0000:3b:00.0")
    sim.add_sriov_mdev_gpu("0000:41:00.0", num_vfs=16)
    sim.add_vendor_vfio_gpu("0000:c1:00.0", num_vfs=16)
    return sim
