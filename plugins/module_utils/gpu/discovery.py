# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Find the host's NVIDIA GPUs: NVML (real or simulated) joined with PCI sysfs.

Devices come back in the cluster.yaml device shape (id, pci_address, model,
mig_capable, allowed_mig_profiles) plus facts. Sysfs alone is enough (no
driver loaded, no nvidia-ml-py): the model then comes from the PCI device id
and the MIG mode is unknown. Nothing is ever changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.pci import normalize_bus_id
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    MIG_ENABLE, BackendInputError, NotSupported, NvmlError)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.sysfs import link_basename as _link_base, read_attr as _read

PCI_DEVICES = "sys/bus/pci/devices"
# PCI class 0x03xxxx (display) and 0x0302 (3D controller, datacenter GPUs).
_GPU_CLASSES = ("0x03",)


def _int(text):
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return None


def check_sysfs_root(sysfs_root):
    """HyperscalerError unless ``sysfs_root`` is a directory: a typo must not look like "no GPUs"."""
    if not os.path.exists(sysfs_root):
        raise HyperscalerError("sysfs_root: %s does not exist; give the directory that holds sys/bus/pci/devices "
                               "(/ on a real host, the simulated tree's root otherwise)" % sysfs_root)
    if not os.path.isdir(sysfs_root):
        raise HyperscalerError("sysfs_root: %s is not a directory; give the directory that holds "
                               "sys/bus/pci/devices (/ on a real host)" % sysfs_root)


def sysfs_gpus(sysfs_root="/"):
    """{bdf: facts} for NVIDIA display/3D PCI functions that are physical functions.

    A root without sys/bus/pci/devices has no PCI devices (an empty tree); one that cannot be read
    is an error, since an answer of "no GPUs" would be wrong.
    """
    base = os.path.join(sysfs_root, PCI_DEVICES)
    try:
        names = sorted(os.listdir(base))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return {}
        raise HyperscalerError("sysfs_root: cannot list %s: %s" % (base, exc.strerror or exc))
    out = {}
    for name in names:
        bdf = normalize_bus_id(name)
        path = os.path.join(base, name)
        vendor = _int(_read(os.path.join(path, "vendor")))
        if bdf is None or vendor != gpu_catalog.NVIDIA_VENDOR_ID:
            continue
        pci_class = _read(os.path.join(path, "class"))
        if pci_class is not None and not pci_class.lower().startswith(_GPU_CLASSES):
            continue  # audio/USB functions of consumer boards
        if os.path.exists(os.path.join(path, "physfn")):
            continue  # SR-IOV VFs belong to their PF
        device = _int(_read(os.path.join(path, "device")))
        total_vfs = _int(_read(os.path.join(path, "sriov_totalvfs")))
        out[bdf] = {
            "vendor_id": "0x%04x" % vendor,
            "device_id": "0x%04x" % device if device is not None else None,
            "driver": _link_base(os.path.join(path, "driver")),
            "iommu_group": _int(_link_base(os.path.join(path, "iommu_group"))),
            "sriov": None if total_vfs is None else {
                "total_vfs": total_vfs, "num_vfs": _int(_read(os.path.join(path, "sriov_numvfs"))) or 0},
        }
    return out


def _model_for(device_id, name=None):
    for candidate in (device_id, name):
        if candidate:
            try:
                return gpu_catalog.resolve_model(candidate)
            except gpu_catalog.UnknownGpuModel:
                continue
    return None


def nvml_gpus(backend):
    """{bdf: facts} from NVML; raises NvmlError when NVML cannot be used."""
    backend.init()
    try:
        out = {}
        for index in range(backend.device_count()):
            pci = backend.pci_info(index)
            facts = {"index": index, "name": backend.name(index), "uuid": backend.uuid(index),
                     "device_id": "0x%04x" % (pci["device_id"] >> 16), "memory": backend.memory(index),
                     "mig_mode": None}
            try:
                current, pending = backend.mig_mode(index)
                facts["mig_mode"] = {"current": "enabled" if current == MIG_ENABLE else "disabled",
                                     "pending": "enabled" if pending == MIG_ENABLE else "disabled"}
            except NotSupported:
                pass
            out[pci["bus_id"]] = facts
        return out
    finally:
        try:
            backend.shutdown()
        except NvmlError:
            pass


def discover(backend=None, sysfs_root="/", id_prefix="GPU-"):
    """Returns {'devices': [...], 'nvml_available': bool, 'nvml_error': str|None}."""
    check_sysfs_root(sysfs_root)
    nvml, nvml_error = {}, None
    if backend is not None:
        try:
            nvml = nvml_gpus(backend)
        except BackendInputError:
            raise  # the simulator's own input is broken: a user error, not "no NVML here"
        except NvmlError as exc:
            nvml_error = exc.msg
    sysfs = sysfs_gpus(sysfs_root)
    devices = []
    for position, bdf in enumerate(sorted(set(nvml) | set(sysfs))):
        n, s = nvml.get(bdf), sysfs.get(bdf)
        model = _model_for((n or s or {}).get("device_id"), n and n["name"])
        mig_mode = n["mig_mode"] if n else None
        mig_capable = bool(model and model.mig_capable) and (n is None or mig_mode is not None)
        dev = {
            "id": "%s%d" % (id_prefix, position),
            "pci_address": bdf,
            "model": model.name if model else (n["name"] if n else "unknown NVIDIA GPU %s" % s["device_id"]),
            "mig_capable": mig_capable,
            "allowed_mig_profiles": model.profile_names() if mig_capable else None,
            "facts": {
                "model_key": model.key if model else None,
                "pci_device_id": (n or s)["device_id"],
                "nvml_index": n["index"] if n else None,
                "uuid": n["uuid"] if n else None,
                "name": n["name"] if n else None,
                "memory_mb": n["memory"]["total_mb"] if n else (model.total_memory_mb if model else None),
                "mig_mode": mig_mode,
                "driver": s["driver"] if s else None,
                "iommu_group": s["iommu_group"] if s else None,
                "sriov": s["sriov"] if s else None,
                "sources": [x for x, present in (("nvml", n), ("sysfs", s)) if present],
            },
        }
        if dev["allowed_mig_profiles"] is None:
            del dev["allowed_mig_profiles"]
        devices.append(dev)
    return {"devices": devices, "nvml_available": nvml_error is None and backend is not None,
            "nvml_error": nvml_error}
