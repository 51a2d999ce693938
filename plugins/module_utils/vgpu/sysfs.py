# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""NVIDIA vGPU devices through sysfs, for both host styles, over a configurable root.

Two host styles exist and are detected per parent:

* ``mdev`` (vGPU up to 16, and Ampere A100/A30 on SR-IOV): a parent lists its types in
  ``/sys/class/mdev_bus/<parent>/mdev_supported_types/<type>/``; a device is created by
  writing a UUID to ``create`` and removed by writing ``1`` to its ``remove``.  On SR-IOV
  GPUs the parents are the VFs (one vGPU each).  mdevctl keeps persistent definitions in
  ``/etc/mdevctl.d/<parent>/<uuid>``.
* ``vendor-vfio`` (vGPU 17+, Ada/Hopper/Blackwell): no mdev bus.  Each VF has
  ``nvidia/creatable_vgpu_types`` and ``nvidia/current_vgpu_type`` (write a type id to
  create, ``0`` to delete); the VF itself is the device handed to the VM.

Everything reads and writes below ``root`` so tests and the GPU simulator can use a
generated tree; writes to kernel control files go through a *writer* so that a simulated
writer (vgpu_sysfs_sim) can apply the kernel's side effects.  All failures are raised as
:class:`HyperscalerError`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import uuid as uuidlib

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import (
    StateFileError, check_writable, json_type, read_json_object, write_text)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import mdev_uuid
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.sysfs import link_basename as _link_base, listdir_sorted as _listdir, read_attr as _read

MDEV = "mdev"
VENDOR = "vendor-vfio"
START_MODES = ("auto", "manual")

MDEV_BUS = "sys/class/mdev_bus"
MDEV_DEVICES = "sys/bus/mdev/devices"
PCI_DEVICES = "sys/bus/pci/devices"
MDEVCTL_DIR = "etc/mdevctl.d"
RECORD_PATH = "var/lib/aihow-hyperscaler/vgpu.json"
# mdevctl keeps its callout scripts here; these are not device definitions.
MDEVCTL_NON_PARENTS = ("scripts.d",)

_BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_CREATABLE_RE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")
# MIG-backed vGPU names: <GPU>-<g>-<gb><series>, e.g. A100-1-5C, H100-3-40C, H200X-1-18C.
_MIG_NAME_RE = re.compile(r"^[A-Za-z0-9]+-\d+-\d+[ABCQ]$")


def normalize_bdf(value):
    """'41:00.4' or '0000:41:00.4' -> '0000:41:00.4' (lower case); None when not a BDF."""
    m = _BDF_RE.match(str(value).strip())
    if not m:
        return None
    domain, bus, slot, fn = m.groups()
    return "%s:%s:%s.%s" % ((domain or "0000").lower(), bus.lower(), slot.lower(), fn)


def is_mig_backed(type_name):
    return bool(_MIG_NAME_RE.match(short_name(type_name)))


def short_name(name):
    """'NVIDIA A100-4C' -> 'A100-4C' (the last token, as nvidia-smi and the docs use it)."""
    parts = (name or "").split()
    return parts[-1] if parts else ""


def normalize_uuid(value, what="mdev UUID"):
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise HyperscalerError("%s %r is not a UUID (for example 7cf938d0-7189-5c27-a144-3ca3617823ef)"
                               % (what, value))


class SysfsWriter:
    """Production writer: one plain write, which is all the kernel needs (it reacts itself)."""

    def write(self, path, value):
        with open(path, "w") as f:
            f.write(value)


def _read_int(path, default=0):
    value = _read(path)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def vfio_holders(proc_root, targets):
    """[(pid, comm, target)] of processes with an fd open on one of ``targets``.

    A running VM (QEMU) keeps /dev/vfio/<group> or the VF's /dev/vfio/devices/vfioN open; that is
    the signal that a vGPU is in use.  Processes that vanish mid-scan are ignored; a process we
    may not inspect is an error, since silently skipping it could let us remove a busy device.
    """
    targets = set(targets)
    found = []
    if not targets or not os.path.isdir(proc_root):
        return found
    for pid in _listdir(proc_root):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise HyperscalerError(
                    "cannot check whether vGPU devices are in use: permission denied reading %s "
                    "(run the task with become)" % fd_dir)
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in targets:
                comm = _read(os.path.join(proc_root, pid, "comm"), "?")
                found.append((int(pid), comm, target))
    return found


class VgpuType:
    def __init__(self, type_id, name, available, device_api="vfio-pci", description=""):
        self.id = str(type_id)
        self.name = name or self.id
        self.short_name = short_name(self.name)
        self.available = available
        self.device_api = device_api
        self.description = description

    def label(self):
        return "%s (%s)" % (self.id, self.name)

    def matches(self, wanted):
        w = wanted.strip().lower()
        return w in (self.id.lower(), self.name.lower(), self.short_name.lower())

    def as_dict(self):
        return {"id": self.id, "name": self.name, "short_name": self.short_name,
                "available_instances": self.available, "device_api": self.device_api,
                "description": self.description}


class Parent:
    """A place where exactly one create happens: an mdev parent or a vendor-vfio VF."""

    def __init__(self, address, style, pf=None, vf_index=None):
        self.address = address
        self.style = style
        self.pf = pf            # physical function when this parent is a VF
        self.vf_index = vf_index
        self.types = []         # [VgpuType], in the kernel's order
        self.current_type = None  # vendor-vfio: type id held by this VF, None when free

    @property
    def gpu(self):
        """The physical GPU this parent belongs to (capacity is shared per GPU)."""
        return self.pf or self.address

    def type(self, type_id):
        for t in self.types:
            if t.id == type_id:
                return t
        return None


class Device:
    """An existing vGPU: an mdev (uuid) or a vendor-vfio VF with a current type."""

    def __init__(self, style, parent, type_id, type_name=None, uuid=None, pf=None,
                 iommu_group=None, vfio_cdev=None):
        self.style = style
        self.parent = parent
        self.type_id = type_id
        self.type_name = type_name or type_id
        self.uuid = uuid
        self.pf = pf
        self.iommu_group = iommu_group
        self.vfio_cdev = vfio_cdev

    @property
    def key(self):
        return self.uuid if self.style == MDEV else self.parent

    @property
    def gpu(self):
        return self.pf or self.parent

    def describe(self):
        if self.style == MDEV:
            return "mdev %s (parent %s, type %s)" % (self.uuid, self.parent, self.type_id)
        return "vGPU on VF %s (type %s)" % (self.parent, self.type_id)

    def vfio_targets(self):
        out = []
        if self.iommu_group is not None:
            out.append("/dev/vfio/%s" % self.iommu_group)
        if self.vfio_cdev:
            out.append("/dev/vfio/devices/%s" % self.vfio_cdev)
        return out


def hostdev(style, uuid=None, address=None):
    """What libvirt needs to attach the vGPU: an mdev UUID or the VF's PCI address."""
    if style == MDEV:
        xml = ("<hostdev mode='subsystem' type='mdev' model='vfio-pci' managed='no'>"
               "<source><address uuid='%s'/></source></hostdev>" % uuid)
        return {"type": "mdev", "model": "vfio-pci", "uuid": uuid, "xml": xml}
    domain, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    xml = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
           "<address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>"
           "</source></hostdev>" % (domain, bus, slot, fn))
    return {"type": "pci", "address": address, "domain": "0x" + domain, "bus": "0x" + bus,
            "slot": "0x" + slot, "function": "0x" + fn, "xml": xml}


def check_roots(root, proc_root=None):
    """HyperscalerError naming the option when a root cannot be read as one.

    A sysfs_root typo would otherwise look like a host without vGPU parents (and state=absent would
    succeed having done nothing); an explicit proc_root that is missing would silently skip the check
    that refuses to remove a device a running VM holds.
    """
    if not os.path.isdir(root):
        raise HyperscalerError("sysfs_root: %s %s; give / on a real host or the root of a simulated tree"
                               % (root, "is not a directory" if os.path.exists(root) else "does not exist"))
    if proc_root is not None and not os.path.isdir(proc_root):
        raise HyperscalerError("proc_root: %s %s; give the directory /proc is mounted at (leave it out for the "
                               "default)" % (proc_root, "is not a directory" if os.path.exists(proc_root)
                                             else "does not exist"))


class VgpuSysfs:
    """Read and change vGPU state below ``root`` (``/`` on a real host)."""

    def __init__(self, root="/", proc_root=None, writer=None):
        self.root = root
        if proc_root is None:
            proc_root = "/proc" if os.path.abspath(root) == "/" else os.path.join(root, "proc")
        self.proc_root = proc_root
        self.writer = writer or SysfsWriter()

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    # ---------------------------------------------------------------- discovery
    def _pci(self, address, *parts):
        return self.path(PCI_DEVICES, address, *parts)

    def _vfs_of(self, pf):
        """[(index, vf address)] from the PF's virtfnN links, in index order."""
        out = []
        for entry in _listdir(self._pci(pf)):
            if entry.startswith("virtfn") and entry[6:].isdigit():
                vf = _link_base(self._pci(pf, entry))
                if vf:
                    out.append((int(entry[6:]), vf))
        return sorted(out)

    def _pf_of(self, address, base):
        pf = _link_base(os.path.join(base, "physfn"))
        if pf is None:
            return None, None
        for index, vf in self._vfs_of(pf):
            if vf == address:
                return pf, index
        return pf, None

    def _mdev_types(self, base):
        types = []
        tdir = os.path.join(base, "mdev_supported_types")
        for tid in _listdir(tdir):
            d = os.path.join(tdir, tid)
            if not os.path.isdir(d):
                continue
            types.append(VgpuType(tid, _read(os.path.join(d, "name"), tid),
                                  _read_int(os.path.join(d, "available_instances")),
                                  _read(os.path.join(d, "device_api"), ""),
                                  _read(os.path.join(d, "description"), "")))
        return types

    def _creatable(self, vf):
        """Entries of nvidia/creatable_vgpu_types; the header line (if any) does not parse."""
        out = []
        text = _read(self._pci(vf, "nvidia", "creatable_vgpu_types"), "") or ""
        for line in text.splitlines():
            m = _CREATABLE_RE.match(line)
            if m:
                out.append((m.group(1), m.group(2)))
        return out

    def parents(self):
        """{address: Parent} of every create point, both styles."""
        found = {}
        for address in _listdir(self.path(MDEV_BUS)):
            base = self.path(MDEV_BUS, address)
            pf, index = self._pf_of(address, base)
            p = Parent(address, MDEV, pf, index)
            p.types = self._mdev_types(base)
            found[address] = p
        for address in _listdir(self.path(PCI_DEVICES)):
            if address in found or not os.path.exists(
                    self._pci(address, "nvidia", "current_vgpu_type")):
                continue
            pf, index = self._pf_of(address, self._pci(address))
            p = Parent(address, VENDOR, pf, index)
            current = _read(self._pci(address, "nvidia", "current_vgpu_type"), "0")
            p.current_type = None if current in ("", "0") else current
            free = p.current_type is None
            p.types = [VgpuType(tid, name, 1 if free else 0) for tid, name in self._creatable(address)]
            found[address] = p
        return found

    def vgpu_pfs(self, parents=None):
        """{pf: [Parent of its VFs, in virtfn order]} for SR-IOV GPUs, plus vGPU-capable PFs
        (sriov_totalvfs and driver nvidia) that have no VF enabled yet (empty list)."""
        parents = self.parents() if parents is None else parents
        out = {}
        for p in parents.values():
            if p.pf:
                out.setdefault(p.pf, []).append(p)
        for address in _listdir(self.path(PCI_DEVICES)):
            if address in out or address in parents:
                continue
            if (os.path.exists(self._pci(address, "sriov_totalvfs"))
                    and _link_base(self._pci(address, "driver")) == "nvidia"):
                out[address] = []
        for vfs in out.values():
            vfs.sort(key=lambda p: (p.vf_index is None, p.vf_index, p.address))
        return out

    def known_parents_text(self, parents=None):
        parents = self.parents() if parents is None else parents
        pfs = self.vgpu_pfs(parents)
        items = []
        for address in sorted(pfs):
            vfs = pfs[address]
            style = vfs[0].style if vfs else "no VFs enabled"
            items.append("%s (SR-IOV PF, %s on %d VFs)" % (address, style, len(vfs)))
        for address in sorted(parents):
            if not parents[address].pf:
                items.append("%s (%s)" % (address, parents[address].style))
        return ", ".join(items) or "none (no mdev_bus parent and no vGPU-capable VF found)"

    def resolve_parent(self, requested, parents=None):
        """Create points for a requested parent: itself, or the VFs of an SR-IOV PF."""
        parents = self.parents() if parents is None else parents
        address = normalize_bdf(requested)
        if address is None:
            raise HyperscalerError(
                "vGPU parent %r is not a PCI address (expected e.g. 0000:41:00.0); known parents: %s"
                % (requested, self.known_parents_text(parents)))
        if address in parents:
            return [parents[address]]
        pfs = self.vgpu_pfs(parents)
        if address in pfs:
            if not pfs[address]:
                raise HyperscalerError(
                    "vGPU parent %s is an SR-IOV GPU without enabled VFs (sriov_numvfs is %s); "
                    "enable them first (e.g. /usr/lib/nvidia/sriov-manage -e %s)"
                    % (address, _read(self._pci(address, "sriov_numvfs"), "?"), address))
            return pfs[address]
        raise HyperscalerError(
            "unknown vGPU parent %s; known parents: %s" % (address, self.known_parents_text(parents)),
            known_parents=sorted(set(list(parents) + list(pfs))))

    def resolve_type(self, requested, candidates, existing=None):
        """(type id, type name) of ``requested`` (type id or vGPU name) among the candidates.

        ``existing`` devices tell a full vendor-vfio card (its creatable list shrinks to the
        header) apart from a type the card never offered.
        """
        offered = {}
        for p in candidates:
            for t in p.types:
                offered.setdefault(t.id, t)
        matches = [t for t in offered.values() if t.matches(requested)]
        if len(matches) == 1:
            return matches[0].id, matches[0].name
        where = candidates[0].pf or candidates[0].address
        if len(matches) > 1:
            raise HyperscalerError(
                "vGPU type %r is ambiguous on parent %s: %s; use the type id"
                % (requested, where, ", ".join(t.label() for t in matches)))
        if existing is not None:
            for d in existing:
                if d.gpu == where and requested.strip().lower() in (
                        d.type_id.lower(), d.type_name.lower(), short_name(d.type_name).lower()):
                    return d.type_id, d.type_name
        if not offered and candidates[0].style == VENDOR:
            raise HyperscalerError(
                "no vGPU instance available on parent %s for type %r: creatable_vgpu_types is empty "
                "on all %d VFs (the GPU is full)" % (where, requested, len(candidates)))
        raise HyperscalerError(
            "unknown vGPU type %r for parent %s; it offers: %s"
            % (requested, where, ", ".join(t.label() for t in sorted(
                offered.values(), key=lambda t: _natural(t.id))) or "nothing"),
            offered_types=[t.as_dict() for t in offered.values()])

    def devices(self, parents=None):
        """Existing vGPU devices of both styles, sorted by key."""
        parents = self.parents() if parents is None else parents
        out = []
        for uid in _listdir(self.path(MDEV_DEVICES)):
            d = self.mdev_device(uid)
            if d:
                out.append(d)
        for p in parents.values():
            if p.style == VENDOR and p.current_type:
                name = None
                for q in parents.values():
                    if q.gpu == p.gpu and q.type(p.current_type):
                        name = q.type(p.current_type).name
                        break
                group = _link_base(self._pci(p.address, "iommu_group"))
                cdevs = _listdir(self._pci(p.address, "vfio-dev"))
                out.append(Device(VENDOR, p.address, p.current_type, name, pf=p.pf,
                                  iommu_group=group, vfio_cdev=cdevs[0] if cdevs else None))
        return sorted(out, key=lambda d: d.key)

    def mdev_device(self, uid):
        link = self.path(MDEV_DEVICES, uid)
        if not os.path.exists(link):
            return None
        real = os.path.realpath(link)
        parent = os.path.basename(os.path.dirname(real))
        type_link = os.path.join(real, "mdev_type")
        type_id = _link_base(type_link)
        type_name = _read(os.path.join(type_link, "name"), type_id)
        pf, _pci = self._pf_of(parent, self._pci(parent))
        cdevs = _listdir(os.path.join(real, "vfio-dev"))
        return Device(MDEV, parent, type_id, type_name, uuid=uid, pf=pf,
                      iommu_group=_link_base(os.path.join(real, "iommu_group")),
                      vfio_cdev=cdevs[0] if cdevs else None)

    # ---------------------------------------------------------------- changes
    def holders(self, device):
        return vfio_holders(self.proc_root, device.vfio_targets())

    def ensure_not_in_use(self, device):
        held = self.holders(device)
        if held:
            who = ", ".join("pid %d (%s) holds %s" % h for h in held)
            raise HyperscalerError(
                "%s is in use by a running VM: %s; stop the VM before removing or changing it"
                % (device.describe(), who), in_use=[h[0] for h in held])

    def create_mdev(self, parent, type_id, uid):
        """mdevctl start's checks, then write the UUID to the type's create file."""
        if os.path.exists(self.path(MDEV_DEVICES, uid)):
            raise HyperscalerError("mdev %s already exists" % uid)
        base = self.path(MDEV_BUS, parent)
        if not os.path.isdir(base):
            raise HyperscalerError("mdev parent %s does not exist" % parent)
        tdir = os.path.join(base, "mdev_supported_types", type_id)
        if not os.path.isdir(tdir):
            raise HyperscalerError("mdev type %s is not supported by parent %s" % (type_id, parent))
        if _read_int(os.path.join(tdir, "available_instances")) < 1:
            raise HyperscalerError("no instance of mdev type %s available on parent %s" % (type_id, parent))
        self._write(os.path.join(tdir, "create"), uid, "create mdev %s (%s on %s)" % (uid, type_id, parent))
        if not os.path.exists(self.path(MDEV_DEVICES, uid)):
            raise HyperscalerError("writing %s to %s/create did not create the mdev" % (uid, tdir))

    def remove_mdev(self, device):
        self.ensure_not_in_use(device)
        node = os.path.realpath(self.path(MDEV_DEVICES, device.uuid))
        self._write(os.path.join(node, "remove"), "1", "remove mdev %s" % device.uuid)
        if os.path.exists(self.path(MDEV_DEVICES, device.uuid)):
            raise HyperscalerError("mdev %s is still present after remove" % device.uuid)

    def create_vendor(self, vf, type_id):
        ctl = self._pci(vf, "nvidia", "current_vgpu_type")
        if _read(ctl, "0") not in ("", "0"):
            raise HyperscalerError("VF %s already holds vGPU type %s" % (vf, _read(ctl)))
        if type_id not in [tid for tid, _name in self._creatable(vf)]:
            raise HyperscalerError("vGPU type %s is not creatable on VF %s" % (type_id, vf))
        self._write(ctl, type_id, "create vGPU type %s on VF %s" % (type_id, vf))
        if _read(ctl) != type_id:
            raise HyperscalerError("VF %s reports type %s after writing %s" % (vf, _read(ctl), type_id))

    def remove_vendor(self, device):
        self.ensure_not_in_use(device)
        ctl = self._pci(device.parent, "nvidia", "current_vgpu_type")
        self._write(ctl, "0", "delete vGPU on VF %s" % device.parent)
        if _read(ctl) not in ("", "0"):
            raise HyperscalerError("VF %s still holds a vGPU after writing 0" % device.parent)

    def remove(self, device):
        if device.style == MDEV:
            self.remove_mdev(device)
        else:
            self.remove_vendor(device)

    def _write(self, path, value, what):
        try:
            self.writer.write(path, value)
        except (IOError, OSError) as exc:
            raise HyperscalerError("failed to %s: %s" % (what, exc))

    # ---------------------------------------------------------------- mdevctl definitions
    def definitions(self):
        """{uuid: {parent, mdev_type, start, attrs, path}} from <root>/etc/mdevctl.d."""
        out = {}
        base = self.path(MDEVCTL_DIR)
        for parent in _listdir(base):
            pdir = os.path.join(base, parent)
            if parent in MDEVCTL_NON_PARENTS or not os.path.isdir(pdir):
                continue
            for name in _listdir(pdir):
                path = os.path.join(pdir, name)
                try:
                    uid = str(uuidlib.UUID(name))
                    data = read_json_object(path)
                except (ValueError, StateFileError):
                    continue  # not a definition mdevctl would load either
                out[uid] = {"parent": parent, "mdev_type": data.get("mdev_type"),
                            "start": data.get("start"), "attrs": data.get("attrs", []), "path": path}
        return out

    def definition_path(self, parent, uid):
        return self.path(MDEVCTL_DIR, parent, uid)

    def write_definition(self, parent, uid, type_id, start):
        # mdevctl's own schema: no extra keys allowed, attrs is a list.
        data = {"mdev_type": type_id, "start": start, "attrs": []}
        write_text(self.definition_path(parent, uid), json.dumps(data, indent=2) + "\n", "the mdevctl definition")

    def remove_definition(self, parent, uid):
        path = self.definition_path(parent, uid)
        if os.path.exists(path):
            try:
                os.unlink(path)
            except OSError as exc:
                raise HyperscalerError("cannot remove the mdevctl definition %s: %s" % (path, exc.strerror or exc))

    # ---------------------------------------------------------------- ownership record
    def load_record(self):
        path = self.path(RECORD_PATH)
        if not os.path.lexists(path):
            return {}
        what = "the vGPU ownership record"
        data = read_json_object(path, what)
        devices = data.get("devices", {})
        if not isinstance(devices, dict) or not all(isinstance(e, dict) for e in devices.values()):
            raise HyperscalerError("%s %s: devices must map each UUID to an object, not %s; this module writes it, "
                                   "so restore it or remove it (devices it listed are then no longer owned)"
                                   % (what, path, json_type(devices) if not isinstance(devices, dict)
                                      else "entries that are not objects"))
        return dict(devices)

    def record_path(self):
        return self.path(RECORD_PATH)

    def save_record(self, devices):
        write_text(self.record_path(), json.dumps({"version": 1, "devices": devices}, indent=2, sort_keys=True) + "\n",
                   "the vGPU ownership record")


def _natural(text):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


# ======================================================================== planning
class Want:
    """One requested vGPU, with its stable identity."""

    def __init__(self, name, index, uid, parent=None, type_name=None, start="auto"):
        self.name = name
        self.index = index
        self.uuid = uid
        self.parent = parent
        self.type = type_name
        self.start = start


def wanted_devices(devices, cluster, need_placement=True):
    """Validate the ``devices`` option; index = occurrence of the name (2 vGPUs for one VM)."""
    seen = {}
    uuids = set()
    out = []
    for i, item in enumerate(devices or []):
        name = item.get("name")
        if not name:
            raise HyperscalerError("devices[%d]: name is required" % i)
        index = seen.get(name, 0)
        seen[name] = index + 1
        uid = normalize_uuid(item["uuid"], "devices[%d] (%s): uuid" % (i, name)) if item.get("uuid") \
            else mdev_uuid(cluster, name, index)
        if uid in uuids:
            raise HyperscalerError("devices[%d] (%s): UUID %s is used twice" % (i, name, uid))
        uuids.add(uid)
        start = item.get("start") or "auto"
        if start not in START_MODES:
            raise HyperscalerError("devices[%d] (%s): start must be auto or manual, not %r" % (i, name, start))
        if need_placement:
            for field in ("parent", "type"):
                if not item.get(field):
                    raise HyperscalerError("devices[%d] (%s): %s is required with state=present"
                                           % (i, name, field))
        out.append(Want(name, index, uid, item.get("parent"), item.get("type"), start))
    return out


class Plan:
    def __init__(self):
        self.removals = []     # [(Device, reason)]
        self.creations = []    # [dict(want, style, parent, type_id, type_name, pf)]
        self.kept = []         # [dict(...)] devices already right
        self.def_writes = []   # [(parent, uuid, type_id, start)]
        self.def_removals = []  # [(parent, uuid)]
        self.record = {}
        self.record_changed = False
        self.results = []      # per want, what the module returns

    @property
    def changed(self):
        return bool(self.removals or self.creations or self.def_writes or self.def_removals
                    or self.record_changed)


class VgpuManager:
    """Plan (read-only, validates everything) and apply (changes, with rollback)."""

    def __init__(self, sysfs, cluster):
        self.sysfs = sysfs
        self.cluster = cluster

    def snapshot(self):
        parents = self.sysfs.parents()
        return {"parents": parents, "devices": self.sysfs.devices(parents),
                "defs": self.sysfs.definitions(), "record": self.sysfs.load_record()}

    def _locate(self, snap, uid):
        """The existing device of a stable UUID: the mdev itself, or the VF the record names."""
        for d in snap["devices"]:
            if d.style == MDEV and d.uuid == uid:
                return d
        entry = snap["record"].get(uid)
        if entry and entry.get("style") == VENDOR:
            for d in snap["devices"]:
                if d.style == VENDOR and d.parent == entry.get("address"):
                    return d
        return None

    def plan(self, wants, state="present", persist=True, exclusive=False):
        snap = self.snapshot()
        plan = Plan()
        plan.snapshot = snap
        record = dict(snap["record"])
        if state == "absent":
            for w in wants:
                dev = self._locate(snap, w.uuid)
                if dev:
                    self.sysfs.ensure_not_in_use(dev)
                    plan.removals.append((dev, "absent"))
                if w.uuid in snap["defs"]:
                    plan.def_removals.append((snap["defs"][w.uuid]["parent"], w.uuid))
                record.pop(w.uuid, None)
                plan.results.append({"name": w.name, "index": w.index, "uuid": w.uuid,
                                     "state": "absent", "removed": dev is not None})
        else:
            self._plan_present(snap, plan, wants, record, persist)
            if exclusive:
                keep = set(w.uuid for w in wants)
                for uid, entry in sorted(snap["record"].items()):
                    if uid in keep or entry.get("cluster") != self.cluster:
                        continue
                    dev = self._locate(snap, uid)
                    if dev:
                        self.sysfs.ensure_not_in_use(dev)
                        plan.removals.append((dev, "exclusive"))
                    if uid in snap["defs"]:
                        plan.def_removals.append((snap["defs"][uid]["parent"], uid))
                    record.pop(uid, None)
        plan.record = record
        plan.record_changed = record != snap["record"]
        # Before anything changes: a definition or record that cannot be written would otherwise
        # fail after the devices were created or removed.
        for parent, uid, _type_id, _start in plan.def_writes:
            check_writable(self.sysfs.definition_path(parent, uid), "the mdevctl definition")
        if plan.record_changed:
            check_writable(self.sysfs.record_path(), "the vGPU ownership record")
        return plan

    def _plan_present(self, snap, plan, wants, record, persist):
        parents = snap["parents"]
        taken = {}      # (parent address) -> planned creations count per type
        busy_vfs = set(d.parent for d in snap["devices"] if d.style == VENDOR)
        freed_gpus = set()
        resolved = []
        # Pass 1: resolve everything and decide keep/recreate; no capacity is consumed yet.
        for w in wants:
            cands = self.sysfs.resolve_parent(w.parent, parents)
            type_id, type_name = self.sysfs.resolve_type(w.type, cands, snap["devices"])
            dev = self._locate(snap, w.uuid)
            keep = (dev is not None and dev.type_id == type_id
                    and dev.parent in [c.address for c in cands])
            if dev is not None and not keep:
                self.sysfs.ensure_not_in_use(dev)
                plan.removals.append((dev, "changed"))
                freed_gpus.add(dev.gpu)
                if dev.style == VENDOR:
                    busy_vfs.discard(dev.parent)
            resolved.append((w, cands, type_id, type_name, dev if keep else None))
        # Pass 2: place new devices deterministically (first free create point in VF order).
        for w, cands, type_id, type_name, dev in resolved:
            if dev is not None:
                address, style = dev.parent, dev.style
                plan.kept.append(dev)
            else:
                chosen = None
                maybe = None
                for c in cands:
                    if c.style == VENDOR and c.address in busy_vfs:
                        continue
                    t = c.type(type_id)
                    left = (t.available if t else 0) - taken.get((c.address, type_id), 0)
                    if c.style == VENDOR:
                        left = min(left, 1)
                    if left > 0:
                        chosen = c
                        break
                    if maybe is None and c.gpu in freed_gpus and (c.style == MDEV or t is None):
                        # capacity freed by a removal in this run cannot be read before it happens
                        maybe = c
                chosen = chosen or maybe
                if chosen is None:
                    raise HyperscalerError(self._none_available(w, cands, type_id, type_name),
                                           device=w.name)
                taken[(chosen.address, type_id)] = taken.get((chosen.address, type_id), 0) + 1
                if chosen.style == VENDOR:
                    busy_vfs.add(chosen.address)
                address, style = chosen.address, chosen.style
                plan.creations.append({"want": w, "style": style, "parent": address,
                                       "type_id": type_id, "type_name": type_name, "pf": chosen.pf})
            persisted = False
            if style == MDEV and persist:
                persisted = True
                cur = snap["defs"].get(w.uuid)
                if cur is None or (cur["parent"], cur["mdev_type"], cur["start"]) != (address, type_id, w.start):
                    if cur is not None and cur["parent"] != address:
                        plan.def_removals.append((cur["parent"], w.uuid))
                    plan.def_writes.append((address, w.uuid, type_id, w.start))
            elif style == MDEV:
                persisted = w.uuid in snap["defs"]
            pf = next((c.pf for c in cands if c.address == address), None)
            record[w.uuid] = {"cluster": self.cluster, "name": w.name, "index": w.index,
                              "style": style, "parent": normalize_bdf(w.parent), "address": address,
                              "type": type_id, "type_name": type_name, "start": w.start}
            plan.results.append({
                "name": w.name, "index": w.index, "uuid": w.uuid, "style": style,
                "parent": normalize_bdf(w.parent), "address": address, "pf": pf,
                "type": type_id, "type_name": type_name, "short_name": short_name(type_name),
                "start": w.start, "persisted": persisted,
                "hostdev": hostdev(style, uuid=w.uuid, address=address)})

    def _none_available(self, w, cands, type_id, type_name):
        where = cands[0].pf or cands[0].address
        counts = ", ".join("%s=%s" % (c.address, (c.type(type_id).available if c.type(type_id) else 0))
                           for c in cands)
        msg = ("no vGPU instance available for %s: type %s (%s) on parent %s (available_instances: %s)"
               % (w.name, type_id, type_name, where, counts))
        if is_mig_backed(type_name):
            msg += ("; %s is MIG-backed: enable MIG mode and create the GPU instances first"
                    % short_name(type_name))
        return msg

    # ------------------------------------------------------------------ apply
    def apply(self, plan):
        removed, created = [], []
        try:
            for dev, _reason in plan.removals:
                self.sysfs.remove(dev)
                removed.append(dev)
            for c in plan.creations:
                if c["style"] == MDEV:
                    self.sysfs.create_mdev(c["parent"], c["type_id"], c["want"].uuid)
                else:
                    self.sysfs.create_vendor(c["parent"], c["type_id"])
                created.append(c)
        except HyperscalerError as exc:
            rollback = self._rollback(created, removed)
            raise HyperscalerError(
                "%s; rolled back this run's changes: %s" % (exc.msg, "; ".join(rollback) or "nothing to undo"),
                rolled_back=rollback, **exc.details)
        for parent, uid in plan.def_removals:
            self.sysfs.remove_definition(parent, uid)
        for parent, uid, type_id, start in plan.def_writes:
            self.sysfs.write_definition(parent, uid, type_id, start)
        if plan.record_changed:
            self.sysfs.save_record(plan.record)

    def _rollback(self, created, removed):
        done = []
        for c in reversed(created):
            try:
                if c["style"] == MDEV:
                    dev = self.sysfs.mdev_device(c["want"].uuid)
                    if dev:
                        self.sysfs.remove_mdev(dev)
                    done.append("removed mdev %s" % c["want"].uuid)
                else:
                    self.sysfs.remove_vendor(Device(VENDOR, c["parent"], c["type_id"]))
                    done.append("deleted vGPU on VF %s" % c["parent"])
            except HyperscalerError as exc:
                done.append("FAILED to undo creation on %s: %s" % (c["parent"], exc.msg))
        for dev in reversed(removed):
            # Best effort: put back what this run removed (same UUID / VF and type).
            try:
                if dev.style == MDEV:
                    self.sysfs.create_mdev(dev.parent, dev.type_id, dev.uuid)
                else:
                    self.sysfs.create_vendor(dev.parent, dev.type_id)
                done.append("re-created %s" % dev.describe())
            except HyperscalerError as exc:
                done.append("FAILED to re-create %s: %s" % (dev.describe(), exc.msg))
        return done


def device_view(devices, defs, record):
    """Sorted list of dicts describing host vGPU state (used for diff before/after)."""
    owners = {}
    for uid, entry in record.items():
        owners[entry.get("address") if entry.get("style") == VENDOR else uid] = (uid, entry)
    out = []
    for d in devices:
        uid, entry = owners.get(d.key, (d.uuid, {}))
        type_name = d.type_name
        if entry.get("type") == d.type_id and entry.get("type_name"):
            # a full vendor-vfio card no longer lists the name; the record remembers it
            type_name = entry["type_name"]
        item = {"id": d.key, "style": d.style, "parent": d.parent, "type": d.type_id,
                "type_name": type_name, "owner": entry.get("name")}
        if d.style == MDEV:
            item["defined"] = defs[d.uuid]["start"] if d.uuid in defs else None
        else:
            item["uuid"] = uid
        out.append(item)
    # Defined but not running mdevs are part of the state too (mdevctl starts them at boot).
    active = set(d.uuid for d in devices if d.style == MDEV)
    for uid, dfn in defs.items():
        if uid not in active:
            out.append({"id": uid, "style": MDEV, "parent": dfn["parent"], "type": dfn["mdev_type"],
                        "type_name": None, "owner": record.get(uid, {}).get("name"),
                        "defined": dfn["start"], "active": False})
    return sorted(out, key=lambda i: i["id"])


def predicted_view(plan):
    """device_view after applying ``plan`` (for check mode), from the snapshot and the plan."""
    snap = plan.snapshot
    gone = set(d.key for d, _reason in plan.removals)
    devices = [d for d in snap["devices"] if d.key not in gone]
    for c in plan.creations:
        if c["style"] == MDEV:
            devices.append(Device(MDEV, c["parent"], c["type_id"], c["type_name"], uuid=c["want"].uuid))
        else:
            devices.append(Device(VENDOR, c["parent"], c["type_id"], c["type_name"]))
    devices.sort(key=lambda d: d.key)
    defs = dict((u, dict(v)) for u, v in snap["defs"].items())
    for parent, uid in plan.def_removals:
        if uid in defs and defs[uid]["parent"] == parent:
            del defs[uid]
    for parent, uid, type_id, start in plan.def_writes:
        defs[uid] = {"parent": parent, "mdev_type": type_id, "start": start, "attrs": []}
    return device_view(devices, defs, plan.record)
