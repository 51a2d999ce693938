# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The NVML operations the GPU modules need, behind one small interface.

:class:`NvmlBackend` is the interface (devices are addressed by NVML index, GPU
instances by GI id, compute instances by (GI id, CI id), so no handle leaks out).
:class:`PynvmlBackend` implements it over nvidia-ml-py and is the production
default; ``nvml_simulator.SimulatedNvml`` implements it over a JSON state file.

Errors are our own classes (:class:`NotSupported`, :class:`InUse`, ...), mapped
from ``pynvml.NVMLError`` codes, so callers never import pynvml.

Two pynvml traps handled here: GI calls take the profile's real id
(``info.id``), not the NVML_GPU_INSTANCE_PROFILE_* index; and
``nvmlDeviceSetMigMode`` returns the activation status instead of raising it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess
from collections import namedtuple

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.pci import normalize_bus_id
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import (
    NVML_GI_PROFILE_COUNT, NVML_CI_PROFILE_COUNT)

MIG_DISABLE = 0
MIG_ENABLE = 1
CI_ENGINE_SHARED = 0

# nvml.h return codes
SUCCESS = 0
ERR_INVALID_ARGUMENT = 2
ERR_NOT_SUPPORTED = 3
ERR_NO_PERMISSION = 4
ERR_NOT_FOUND = 6
ERR_DRIVER_NOT_LOADED = 9
ERR_LIBRARY_NOT_FOUND = 12
ERR_RESET_REQUIRED = 16
ERR_IN_USE = 19
ERR_INSUFFICIENT_RESOURCES = 23


class NvmlError(Exception):
    """An NVML call failed. ``code`` is the nvml.h return code, ``op`` the operation."""

    code = 999

    def __init__(self, msg, op=None, code=None):
        super(NvmlError, self).__init__(msg)
        self.msg = msg
        self.op = op
        if code is not None:
            self.code = code


class InvalidArgument(NvmlError):
    code = ERR_INVALID_ARGUMENT


class NotSupported(NvmlError):
    code = ERR_NOT_SUPPORTED


class NoPermission(NvmlError):
    code = ERR_NO_PERMISSION


class NotFound(NvmlError):
    code = ERR_NOT_FOUND


class ResetRequired(NvmlError):
    code = ERR_RESET_REQUIRED


class InUse(NvmlError):
    code = ERR_IN_USE


class InsufficientResources(NvmlError):
    code = ERR_INSUFFICIENT_RESOURCES


class NvmlUnavailable(NvmlError):
    """No NVML: library or driver missing (discovery falls back to sysfs)."""


class BackendInputError(NvmlError):
    """The backend's own inputs are unusable (the simulator's state file or GPU spec).

    A user error whose message already names the option and says what is valid, so modules report
    it as it is and discovery does not mistake it for "no NVML on this host".
    """


ERROR_CLASSES = {
    ERR_INVALID_ARGUMENT: InvalidArgument,
    ERR_NOT_SUPPORTED: NotSupported,
    ERR_NO_PERMISSION: NoPermission,
    ERR_NOT_FOUND: NotFound,
    ERR_RESET_REQUIRED: ResetRequired,
    ERR_IN_USE: InUse,
    ERR_INSUFFICIENT_RESOURCES: InsufficientResources,
    ERR_DRIVER_NOT_LOADED: NvmlUnavailable,
    ERR_LIBRARY_NOT_FOUND: NvmlUnavailable,
}
ERRORS_BY_NAME = dict((cls.__name__, cls) for cls in
                      (InvalidArgument, NotSupported, NoPermission, NotFound, ResetRequired, InUse,
                       InsufficientResources, NvmlUnavailable, NvmlError))


def error_for_code(code, msg, op=None):
    cls = ERROR_CLASSES.get(code, NvmlError)
    return cls(msg, op=op, code=code)


GiProfileInfo = namedtuple("GiProfileInfo", [
    "id", "nvml_index", "slice_count", "instance_count", "memory_mb", "multiprocessors", "copy_engines"])
CiProfileInfo = namedtuple("CiProfileInfo", ["id", "nvml_index", "slice_count", "instance_count",
                                             "multiprocessors"])
GpuInstance = namedtuple("GpuInstance", ["id", "profile_id", "start", "size"])
ComputeInstance = namedtuple("ComputeInstance", ["gi_id", "id", "profile_id", "start", "size"])
MigDevice = namedtuple("MigDevice", ["uuid", "gi_id", "ci_id"])


class NvmlBackend:
    """Interface. Subclasses implement the primitive calls; listing helpers are shared."""

    def init(self):
        raise NotImplementedError

    def shutdown(self):
        raise NotImplementedError

    def device_count(self):
        raise NotImplementedError

    def index_by_pci_bus_id(self, bus_id):
        """NVML index of the GPU at ``bus_id`` (any BDF spelling); NotFound if none."""
        raise NotImplementedError

    def name(self, index):
        raise NotImplementedError

    def uuid(self, index):
        raise NotImplementedError

    def pci_info(self, index):
        """{'bus_id': '0000:65:00.0', 'device_id': 0x20B210DE (device<<16|vendor), 'subsystem_id': ...}."""
        raise NotImplementedError

    def memory(self, index):
        """{'total_mb', 'used_mb', 'free_mb'}."""
        raise NotImplementedError

    def mig_mode(self, index):
        """(current, pending), each MIG_ENABLE or MIG_DISABLE; NotSupported without MIG."""
        raise NotImplementedError

    def set_mig_mode(self, index, enabled):
        """Request a MIG mode; returns the activation status (0 or an nvml.h code), never raises it."""
        raise NotImplementedError

    def gi_profile_info(self, index, nvml_index):
        """GiProfileInfo for an NVML_GPU_INSTANCE_PROFILE_* index (its ``id`` is the real profile id)."""
        raise NotImplementedError

    def gpu_instances(self, index, profile_id):
        """GpuInstance list of one profile (by real profile id)."""
        raise NotImplementedError

    def create_gpu_instance(self, index, profile_id, placement=None):
        """Create a GI at ``placement`` = (start, size), or where the driver chooses (None)."""
        raise NotImplementedError

    def destroy_gpu_instance(self, index, gi_id):
        raise NotImplementedError

    def gi_remaining_capacity(self, index, profile_id):
        raise NotImplementedError

    def gi_possible_placements(self, index, profile_id):
        """[(start, size)] where one more instance of the profile fits now."""
        raise NotImplementedError

    def ci_profile_info(self, index, gi_id, ci_nvml_index):
        raise NotImplementedError

    def compute_instances(self, index, gi_id, ci_profile_id):
        raise NotImplementedError

    def create_compute_instance(self, index, gi_id, ci_profile_id):
        raise NotImplementedError

    def destroy_compute_instance(self, index, gi_id, ci_id):
        raise NotImplementedError

    def mig_devices(self, index):
        """MigDevice list (uuid, GI id, CI id) of the GPU."""
        raise NotImplementedError

    def processes(self, index, gi_id=None):
        """PIDs running on the GPU, or only on GPU instance ``gi_id``."""
        raise NotImplementedError

    def reset(self, index):
        """GPU reset (makes a pending MIG mode current); InUse when processes run."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared helpers
    def gi_profiles(self, index):
        """Every GI profile the GPU supports (NVML index order), as mig-parted walks them."""
        out = []
        for nvml_index in range(NVML_GI_PROFILE_COUNT):
            try:
                out.append(self.gi_profile_info(index, nvml_index))
            except (NotSupported, InvalidArgument):
                continue
        return out

    def ci_profiles(self, index, gi_id):
        out = []
        for nvml_index in range(NVML_CI_PROFILE_COUNT):
            try:
                out.append(self.ci_profile_info(index, gi_id, nvml_index))
            except (NotSupported, InvalidArgument):
                continue
        return out

    def all_gpu_instances(self, index):
        """Every GI of the GPU sorted by placement start."""
        found = []
        for info in self.gi_profiles(index):
            found.extend(self.gpu_instances(index, info.id))
        return sorted(found, key=lambda gi: (gi.start, gi.id))

    def all_compute_instances(self, index, gi_id):
        found = []
        for info in self.ci_profiles(index, gi_id):
            found.extend(self.compute_instances(index, gi_id, info.id))
        return sorted(found, key=lambda ci: (ci.start, ci.id))


def _load_pynvml():
    try:
        import pynvml  # noqa: F401 - lazily: the collection must import without nvidia-ml-py
    except ImportError:
        return None
    return pynvml


# Test seam: tests replace this with a fake module of the same shape.
PYNVML_LOADER = _load_pynvml


def _run_reset(bus_id):
    """pynvml has no reset call; mig-parted uses ``nvidia-smi -r -i <busid>`` too."""
    proc = subprocess.run(["nvidia-smi", "-r", "-i", bus_id], stdout=subprocess.PIPE, check=False,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    return proc.returncode, proc.stdout


RESET_RUNNER = _run_reset


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class PynvmlBackend(NvmlBackend):
    """The real backend over nvidia-ml-py (``import pynvml``)."""

    def __init__(self, nvml=None):
        self._nvml = nvml
        self._handles = {}

    @property
    def nvml(self):
        if self._nvml is None:
            self._nvml = PYNVML_LOADER()
            if self._nvml is None:
                raise NvmlUnavailable("the Python library nvidia-ml-py (pynvml) is not installed", op="init")
        return self._nvml

    def _call(self, op, fn, *args):
        nvml = self.nvml
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            raise error_for_code(code, "%s failed: %s" % (op, exc), op=op)

    def _dev(self, index):
        if index not in self._handles:
            self._handles[index] = self._call("DeviceGetHandleByIndex", self.nvml.nvmlDeviceGetHandleByIndex, index)
        return self._handles[index]

    def _gi(self, index, gi_id):
        return self._call("DeviceGetGpuInstanceById", self.nvml.nvmlDeviceGetGpuInstanceById,
                          self._dev(index), gi_id)

    def _ci(self, index, gi_id, ci_id):
        return self._call("GpuInstanceGetComputeInstanceById", self.nvml.nvmlGpuInstanceGetComputeInstanceById,
                          self._gi(index, gi_id), ci_id)

    def init(self):
        self._call("Init", self.nvml.nvmlInit)

    def shutdown(self):
        self._handles = {}
        self._call("Shutdown", self.nvml.nvmlShutdown)

    def device_count(self):
        return self._call("DeviceGetCount", self.nvml.nvmlDeviceGetCount)

    def index_by_pci_bus_id(self, bus_id):
        wanted = normalize_bus_id(bus_id)
        for index in range(self.device_count()):
            if self.pci_info(index)["bus_id"] == wanted:
                return index
        raise NotFound("no NVML device at PCI address %s" % bus_id, op="DeviceGetHandleByPciBusId")

    def name(self, index):
        return _text(self._call("DeviceGetName", self.nvml.nvmlDeviceGetName, self._dev(index)))

    def uuid(self, index):
        return _text(self._call("DeviceGetUUID", self.nvml.nvmlDeviceGetUUID, self._dev(index)))

    def pci_info(self, index):
        info = self._call("DeviceGetPciInfo", self.nvml.nvmlDeviceGetPciInfo, self._dev(index))
        return {"bus_id": normalize_bus_id(_text(info.busId)), "device_id": int(info.pciDeviceId),
                "subsystem_id": int(info.pciSubSystemId)}

    def memory(self, index):
        info = self._call("DeviceGetMemoryInfo", self.nvml.nvmlDeviceGetMemoryInfo, self._dev(index))
        mb = 1024 * 1024
        return {"total_mb": int(info.total) // mb, "used_mb": int(info.used) // mb, "free_mb": int(info.free) // mb}

    def mig_mode(self, index):
        current, pending = self._call("DeviceGetMigMode", self.nvml.nvmlDeviceGetMigMode, self._dev(index))
        return int(current), int(pending)

    def set_mig_mode(self, index, enabled):
        mode = self.nvml.NVML_DEVICE_MIG_ENABLE if enabled else self.nvml.NVML_DEVICE_MIG_DISABLE
        # Returns activationStatus: the call itself can succeed while activation needs a reset.
        return int(self._call("DeviceSetMigMode", self.nvml.nvmlDeviceSetMigMode, self._dev(index), mode))

    def gi_profile_info(self, index, nvml_index):
        info = self._call("DeviceGetGpuInstanceProfileInfo", self.nvml.nvmlDeviceGetGpuInstanceProfileInfo,
                          self._dev(index), nvml_index)
        return GiProfileInfo(int(info.id), nvml_index, int(info.sliceCount), int(info.instanceCount),
                             int(info.memorySizeMB), int(info.multiprocessorCount), int(info.copyEngineCount))

    def _gi_info(self, handle):
        info = self._call("GpuInstanceGetInfo", self.nvml.nvmlGpuInstanceGetInfo, handle)
        return GpuInstance(int(info.id), int(info.profileId), int(info.placement.start), int(info.placement.size))

    def gpu_instances(self, index, profile_id):
        nvml = self.nvml
        dev = self._dev(index)
        cap = 8  # at most 7 GIs of one profile exist on any MIG GPU
        array = (nvml.c_nvmlGpuInstance_t * cap)()
        count = nvml.c_uint(0)
        self._call("DeviceGetGpuInstances", nvml.nvmlDeviceGetGpuInstances, dev, profile_id, array,
                   nvml.byref(count))
        return [self._gi_info(array[i]) for i in range(count.value)]

    def create_gpu_instance(self, index, profile_id, placement=None):
        nvml = self.nvml
        dev = self._dev(index)
        if placement is None:
            handle = self._call("DeviceCreateGpuInstance", nvml.nvmlDeviceCreateGpuInstance, dev, profile_id)
        else:
            placement = nvml.c_nvmlGpuInstancePlacement_t(int(placement[0]), int(placement[1]))
            # The C side takes a pointer to the placement struct.
            handle = self._call("DeviceCreateGpuInstanceWithPlacement", nvml.nvmlDeviceCreateGpuInstanceWithPlacement,
                                dev, profile_id, nvml.byref(placement))
        return self._gi_info(handle)

    def destroy_gpu_instance(self, index, gi_id):
        self._call("GpuInstanceDestroy", self.nvml.nvmlGpuInstanceDestroy, self._gi(index, gi_id))

    def gi_remaining_capacity(self, index, profile_id):
        return int(self._call("DeviceGetGpuInstanceRemainingCapacity",
                              self.nvml.nvmlDeviceGetGpuInstanceRemainingCapacity, self._dev(index), profile_id))

    def gi_possible_placements(self, index, profile_id):
        nvml = self.nvml
        dev = self._dev(index)
        count = nvml.c_uint(0)
        # First call with no array gets the count (nvml.h two-call convention).
        self._call("DeviceGetGpuInstancePossiblePlacements", nvml.nvmlDeviceGetGpuInstancePossiblePlacements,
                   dev, profile_id, None, nvml.byref(count))
        if not count.value:
            return []
        array = (nvml.c_nvmlGpuInstancePlacement_t * count.value)()
        self._call("DeviceGetGpuInstancePossiblePlacements", nvml.nvmlDeviceGetGpuInstancePossiblePlacements,
                   dev, profile_id, array, nvml.byref(count))
        return [(int(array[i].start), int(array[i].size)) for i in range(count.value)]

    def ci_profile_info(self, index, gi_id, ci_nvml_index):
        info = self._call("GpuInstanceGetComputeInstanceProfileInfo",
                          self.nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo,
                          self._gi(index, gi_id), ci_nvml_index, self.nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
        return CiProfileInfo(int(info.id), ci_nvml_index, int(info.sliceCount), int(info.instanceCount),
                             int(info.multiprocessorCount))

    def _ci_info(self, gi_id, handle):
        info = self._call("ComputeInstanceGetInfo", self.nvml.nvmlComputeInstanceGetInfo, handle)
        return ComputeInstance(gi_id, int(info.id), int(info.profileId), int(info.placement.start),
                               int(info.placement.size))

    def compute_instances(self, index, gi_id, ci_profile_id):
        nvml = self.nvml
        gi = self._gi(index, gi_id)
        array = (nvml.c_nvmlComputeInstance_t * 8)()
        count = nvml.c_uint(0)
        self._call("GpuInstanceGetComputeInstances", nvml.nvmlGpuInstanceGetComputeInstances, gi, ci_profile_id,
                   array, nvml.byref(count))
        return [self._ci_info(gi_id, array[i]) for i in range(count.value)]

    def create_compute_instance(self, index, gi_id, ci_profile_id):
        handle = self._call("GpuInstanceCreateComputeInstance", self.nvml.nvmlGpuInstanceCreateComputeInstance,
                            self._gi(index, gi_id), ci_profile_id)
        return self._ci_info(gi_id, handle)

    def destroy_compute_instance(self, index, gi_id, ci_id):
        self._call("ComputeInstanceDestroy", self.nvml.nvmlComputeInstanceDestroy, self._ci(index, gi_id, ci_id))

    def mig_devices(self, index):
        nvml = self.nvml
        dev = self._dev(index)
        out = []
        for i in range(int(self._call("DeviceGetMaxMigDeviceCount", nvml.nvmlDeviceGetMaxMigDeviceCount, dev))):
            try:
                mig = self._call("DeviceGetMigDeviceHandleByIndex", nvml.nvmlDeviceGetMigDeviceHandleByIndex, dev, i)
            except NotFound:
                continue  # slots without a MIG device are NOT_FOUND
            out.append(MigDevice(_text(self._call("DeviceGetUUID", nvml.nvmlDeviceGetUUID, mig)),
                                 int(self._call("DeviceGetGpuInstanceId", nvml.nvmlDeviceGetGpuInstanceId, mig)),
                                 int(self._call("DeviceGetComputeInstanceId", nvml.nvmlDeviceGetComputeInstanceId,
                                                mig))))
        return out

    def processes(self, index, gi_id=None):
        nvml = self.nvml
        dev = self._dev(index)
        procs = list(self._call("DeviceGetComputeRunningProcesses", nvml.nvmlDeviceGetComputeRunningProcesses, dev))
        procs += list(self._call("DeviceGetGraphicsRunningProcesses", nvml.nvmlDeviceGetGraphicsRunningProcesses, dev))
        pids = set()
        for proc in procs:
            # In MIG mode the parent's process list carries each process's GI id.
            if gi_id is not None and getattr(proc, "gpuInstanceId", None) != gi_id:
                continue
            pids.add(int(proc.pid))
        return sorted(pids)

    def reset(self, index):
        bus_id = self.pci_info(index)["bus_id"]
        if self.processes(index):
            raise InUse("GPU %s has running processes; not resetting" % bus_id, op="reset")
        rc, output = RESET_RUNNER(bus_id)
        if rc != 0:
            raise NvmlError("nvidia-smi -r -i %s failed (rc %d): %s" % (bus_id, rc, output.strip()), op="reset")
        self._handles.pop(index, None)  # handles are stale after a reset
