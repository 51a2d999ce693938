# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""A simulated NVML backend, faithful to the documented driver behaviour.

It implements :class:`nvml_backend.NvmlBackend` over a JSON state file, so
playbooks can run against it and tests can inspect it. Where NVIDIA's go-nvml
mock is known to be unfaithful (docs/gpu-partitioning.md), this follows the
driver instead:

* MIG mode has a current and a pending state: SetMigMode sets pending, a GPU
  reset makes it current (refused with InUse while processes run). A reset
  also drops every GPU/compute instance, as on real GPUs.
* GI profile info carries the real profile id (``info.id``), not the index.
* GI creation enforces the allowed starts (bad start: InvalidArgument), the
  memory-slice overlap rule and the per-profile maximum (InsufficientResources).
* GI ids depend on the placement (observed: H100 1g at slot s gets 7+s; A100
  3g at 0:4 gets 2 and at 4:4 gets 1), from a per-geometry slot table.
* Destroying a GI that still has CIs, or a GI/CI with processes, is InUse.
* GI operations with MIG disabled, and any MIG call on a non-MIG GPU, are
  NotSupported; mutating calls without root are NoPermission.

State file (written atomically after every mutating call)::

    {"version": 1, "root": true,
     "faults": [{"op": "create_gpu_instance", "after": 2, "error": "InsufficientResources"}],
     "gpus": [{"model": "A100-80GB", "pci_device_id": "0x20b2", "pci_bus_id": "0000:65:00.0", "uuid": "GPU-...",
               "mig": {"current": 1, "pending": 1},
               "gpu_instances": [{"id": 2, "profile_id": 9, "start": 0, "size": 4,
                                  "compute_instances": [{"id": 0, "profile_id": 2, "start": 0,
                                                         "size": 3, "uuid": "MIG-..."}]}],
               "processes": [{"pid": 4242, "gi_id": 2, "ci_id": 0}]}]}

A fault fires on the call of ``op`` that comes after ``after`` successful ones
(optional ``gpu``: only calls for that index; ``times``: how often, default 1).

``pci_device_id`` is the variant's id (an H200 NVL is 0x233b); files without it use the model's
first id. A spec or state file the simulator cannot use raises BackendInputError naming the option
(``simulator_spec[1].model``, ``simulator_state: <path>``) and the field, before any NVML call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.pci import normalize_bus_id
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import (
    StateFileError, json_type, read_json_object, write_text)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_uuid
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    ERRORS_BY_NAME, ERR_IN_USE, BackendInputError, CiProfileInfo, ComputeInstance, GiProfileInfo, GpuInstance, InUse,
    InsufficientResources, InvalidArgument, MigDevice, NoPermission, NotFound, NotSupported, NvmlBackend,
    NvmlError, MIG_DISABLE, MIG_ENABLE)

STATE_VERSION = 1
# The option names the modules (and the role) use; messages name them so the reader knows what to fix.
STATE_OPTION = "simulator_state"
SPEC_OPTION = "simulator_spec"

# Driver auto-placement order for one-slice profiles on 8-slice GPUs (observed with -cgi 19x7).
_ONE_SLICE_AUTO_ORDER = (6, 4, 5, 0, 1, 2, 3)


def _slot_ids(memory_slices):
    """GI id per (size, start) slot: a binary tree over the memory slices.

    8 slices: whole GPU 0; halves 4:4 -> 1 and 0:4 -> 2 (A100 observation);
    quarters 3..6; single slices 7+s (H100 observation). 4-slice GPUs (A30)
    follow the same pattern (not observed). Two GIs can only share a slot if
    they overlap, which the driver forbids, so ids are unique.
    """
    ids = {(memory_slices, 0): 0}
    next_id = 1
    size = memory_slices // 2
    while size >= 1:
        starts = list(range(0, memory_slices, size))
        if size == memory_slices // 2:
            starts.reverse()  # the upper half gets the lower id
        for start in starts:
            ids[(size, start)] = next_id
            next_id += 1
        size //= 2
    return ids


def default_bus_id(position):
    return "0000:%02x:00.0" % (0x17 + 0x10 * position)


def build_state(spec):
    """Initial state from a spec: a list of model keys/names or dicts
    {model, pci_address?, mig_enabled?, uuid?, subsystem_id?}; plus optional top-level {root, gpus}.

    A bad spec raises BackendInputError naming the entry (``simulator_spec[1].model``) and what is valid.
    """
    if isinstance(spec, dict):
        gpus_spec = spec.get("gpus", [])
        root = spec.get("root", True)
    else:
        gpus_spec = spec or []
        root = True
    if not isinstance(gpus_spec, list):
        raise BackendInputError("%s must be a list of GPUs, not %s" % (SPEC_OPTION, json_type(gpus_spec)), op="init")
    gpus = []
    seen = {}
    for pos, item in enumerate(gpus_spec):
        where = "%s[%d]" % (SPEC_OPTION, pos)
        if not isinstance(item, dict):
            item = {"model": item}
        if "model" not in item:
            raise BackendInputError("%s: model is required (a catalog model name, key or PCI device id)" % where,
                                    op="init")
        model = _spec_model(item["model"], where + ".model")
        bus_id = normalize_bus_id(item.get("pci_address") or default_bus_id(pos))
        if bus_id is None:
            raise BackendInputError("%s.pci_address %r is not a PCI address (expected e.g. 0000:65:00.0)"
                                    % (where, item.get("pci_address")), op="init")
        if bus_id in seen:
            raise BackendInputError("%s.pci_address %s is already used by %s[%d]"
                                    % (where, bus_id, SPEC_OPTION, seen[bus_id]), op="init")
        seen[bus_id] = pos
        mode = MIG_ENABLE if item.get("mig_enabled") else MIG_DISABLE
        gpus.append({
            "model": model.key,
            # The device id of the variant named (an H200 NVL is 0x233b, not the H200 SXM's 0x2335).
            "pci_device_id": gpu_catalog.device_id_for(item["model"], model),
            "pci_bus_id": bus_id,
            "uuid": item.get("uuid") or "GPU-" + stable_uuid("sim-gpu", model.key, bus_id),
            "mig": {"current": mode, "pending": mode} if model.mig_capable else None,
            "gpu_instances": [],
            "processes": [],
        })
        if "subsystem_id" in item:
            try:
                gpus[-1]["subsystem_id"] = int(str(item["subsystem_id"]), 0)
            except ValueError:
                raise BackendInputError("%s.subsystem_id %r is not a number (e.g. 0x147E10DE)"
                                        % (where, item["subsystem_id"]), op="init")
    return {"version": STATE_VERSION, "root": bool(root), "faults": [], "gpus": gpus}


def _model(name):
    if name in gpu_catalog.MODELS_BY_KEY:
        return gpu_catalog.MODELS_BY_KEY[name]
    return gpu_catalog.resolve_model(name)


def _spec_model(name, where):
    try:
        return _model(name)
    except gpu_catalog.UnknownGpuModel as exc:
        raise BackendInputError("%s: %s" % (where, exc), op="init")


def _bad_state(path, problem):
    # "...json has no gpus list", but "...json: gpus[0].uuid must be a string"
    sep = ": " if problem.startswith(("gpus", "faults")) else " "
    return BackendInputError("%s: %s%s%s; fix it, or remove it (with %s given, a new one is created)"
                             % (STATE_OPTION, path, sep, problem, SPEC_OPTION), op="init")


def _int_field(obj, key):
    return isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool)


def check_state(state, path):
    """Check a loaded state file's shape; BackendInputError naming the file and the JSON path at fault.

    Only what the simulator relies on is checked, so an old or hand-edited file fails here, once,
    with the field named, instead of somewhere inside an NVML call.
    """
    if state.get("version") != STATE_VERSION:
        raise _bad_state(path, "has version %r, expected %d" % (state.get("version"), STATE_VERSION))
    if not isinstance(state.get("gpus"), list):
        raise _bad_state(path, "has no gpus list")
    faults = state.setdefault("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
        raise _bad_state(path, "faults must be a list of objects")
    for pos, gpu in enumerate(state["gpus"]):
        where = "gpus[%d]" % pos
        if not isinstance(gpu, dict):
            raise _bad_state(path, "%s is %s, not an object" % (where, json_type(gpu)))
        try:
            model = _model(gpu.get("model"))
        except gpu_catalog.UnknownGpuModel as exc:
            raise _bad_state(path, "%s.model: %s" % (where, exc))
        bus = gpu.get("pci_bus_id")
        if not isinstance(bus, str) or normalize_bus_id(bus) != bus:
            raise _bad_state(path, "%s.pci_bus_id %r is not a normalised PCI address (e.g. 0000:65:00.0)"
                             % (where, gpu.get("pci_bus_id")))
        if not isinstance(gpu.get("uuid"), str):
            raise _bad_state(path, "%s.uuid must be a string" % where)
        if "pci_device_id" in gpu and gpu["pci_device_id"] not in model.pci_device_ids:
            raise _bad_state(path, "%s.pci_device_id %r is not a PCI device id of %s (%s)"
                             % (where, gpu["pci_device_id"], model.name, ", ".join(model.pci_device_ids)))
        mig = gpu.get("mig")
        if model.mig_capable:
            if not isinstance(mig, dict) or mig.get("current") not in (MIG_DISABLE, MIG_ENABLE) or \
                    mig.get("pending") not in (MIG_DISABLE, MIG_ENABLE):
                raise _bad_state(path, "%s.mig must be {\"current\": 0|1, \"pending\": 0|1} for %s"
                                 % (where, model.name))
        elif mig is not None:
            raise _bad_state(path, "%s.mig must be null: %s does not support MIG" % (where, model.name))
        for key in ("gpu_instances", "processes"):
            items = gpu.get(key)
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise _bad_state(path, "%s.%s must be a list of objects" % (where, key))
        ints = ("id", "profile_id", "start", "size")
        for k, gi in enumerate(gpu["gpu_instances"]):
            cis = gi.get("compute_instances")
            if not all(_int_field(gi, f) for f in ints) or not isinstance(cis, list) or \
                    not all(isinstance(ci, dict) and all(_int_field(ci, f) for f in ints) for ci in cis):
                raise _bad_state(path, "%s.gpu_instances[%d] needs integer id, profile_id, start, size and a "
                                 "compute_instances list of the same" % (where, k))
        for k, proc in enumerate(gpu["processes"]):
            if not _int_field(proc, "pid"):
                raise _bad_state(path, "%s.processes[%d] needs an integer pid" % (where, k))


class SimulatedNvml(NvmlBackend):
    """NVML over a JSON state file (see the module docstring for the format)."""

    def __init__(self, state_path, spec=None, write_new=True):
        self.path = state_path
        if not os.path.exists(state_path):
            if spec is None:
                raise BackendInputError("%s: %s does not exist and no GPU spec was given (%s) to create it"
                                        % (STATE_OPTION, state_path, SPEC_OPTION), op="init")
            self.state = build_state(spec)
            # A new simulated host is created on disk, except in check mode, which must write nothing.
            if write_new:
                self._save()
        else:
            self.reload()
        self.initialised = False

    # ------------------------------------------------------------------ plumbing
    def reload(self):
        try:
            state = read_json_object(self.path, STATE_OPTION)
        except StateFileError as exc:
            raise BackendInputError(exc.msg, op="init")
        check_state(state, self.path)
        self.state = state

    def _save(self):
        try:
            write_text(self.path, json.dumps(self.state, indent=2, sort_keys=True) + "\n", STATE_OPTION)
        except StateFileError as exc:
            raise BackendInputError(exc.msg, op="save")

    def _fault(self, op, index=None):
        """Raise an injected error when a fault for ``op`` is due (counts persist in the file)."""
        for fault in self.state.get("faults", []):
            if fault.get("op") != op or ("gpu" in fault and fault["gpu"] != index):
                continue
            seen = fault.get("seen", 0)
            fired = fault.get("fired", 0)
            fault["seen"] = seen + 1
            if seen >= fault.get("after", 0) and fired < fault.get("times", 1):
                fault["fired"] = fired + 1
                self._save()
                cls = ERRORS_BY_NAME.get(fault.get("error", "NvmlError"), NvmlError)
                raise cls("injected fault: %s call %d failed with %s" % (op, seen + 1, cls.__name__), op=op)
            self._save()

    def _gpu(self, index):
        if not isinstance(index, int) or not 0 <= index < len(self.state["gpus"]):
            raise InvalidArgument("no GPU with NVML index %r" % (index,), op="DeviceGetHandleByIndex")
        return self.state["gpus"][index]

    def _mig_model(self, index, op):
        gpu = self._gpu(index)
        model = _model(gpu["model"])
        if not model.mig_capable:
            raise NotSupported("%s (GPU %d) does not support MIG" % (model.name, index), op=op)
        return gpu, model

    def _mig_enabled(self, index, op):
        gpu, model = self._mig_model(index, op)
        if gpu["mig"]["current"] != MIG_ENABLE:
            raise NotSupported("MIG mode is not enabled on GPU %d" % index, op=op)
        return gpu, model

    def _need_root(self, op):
        if not self.state.get("root", True):
            raise NoPermission("%s needs root" % op, op=op)

    def _gi(self, gpu, gi_id, op):
        for gi in gpu["gpu_instances"]:
            if gi["id"] == gi_id:
                return gi
        raise NotFound("no GPU instance %r" % (gi_id,), op=op)

    # --------------------------------------------------------------- test helpers
    def add_process(self, index, pid, gi_id=None, ci_id=None):
        self._gpu(index)["processes"].append({"pid": pid, "gi_id": gi_id, "ci_id": ci_id})
        self._save()

    def clear_processes(self, index):
        self._gpu(index)["processes"] = []
        self._save()

    def add_fault(self, op, error, after=0, gpu=None, times=1):
        fault = {"op": op, "error": error, "after": after, "times": times}
        if gpu is not None:
            fault["gpu"] = gpu
        self.state["faults"].append(fault)
        self._save()

    def set_root(self, root):
        self.state["root"] = bool(root)
        self._save()

    # ------------------------------------------------------------------ interface
    def init(self):
        self._fault("init")
        self.initialised = True

    def shutdown(self):
        self.initialised = False

    def device_count(self):
        self._fault("device_count")
        return len(self.state["gpus"])

    def index_by_pci_bus_id(self, bus_id):
        wanted = normalize_bus_id(bus_id)
        for index, gpu in enumerate(self.state["gpus"]):
            if gpu["pci_bus_id"] == wanted:
                return index
        raise NotFound("no NVML device at PCI address %s" % bus_id, op="DeviceGetHandleByPciBusId")

    def _device_id(self, gpu, model):
        # State files written before the variant was recorded: the model's first id, as before.
        return gpu.get("pci_device_id") or model.pci_device_ids[0]

    def name(self, index):
        gpu = self._gpu(index)
        model = _model(gpu["model"])
        return gpu_catalog.device_name(model, self._device_id(gpu, model))

    def uuid(self, index):
        return self._gpu(index)["uuid"]

    def pci_info(self, index):
        gpu = self._gpu(index)
        model = _model(gpu["model"])
        device = int(self._device_id(gpu, model), 16)
        device_id = (device << 16) | gpu_catalog.NVIDIA_VENDOR_ID
        return {"bus_id": gpu["pci_bus_id"], "device_id": device_id, "subsystem_id": gpu.get("subsystem_id", device_id)}

    def memory(self, index):
        gpu = self._gpu(index)
        total = _model(gpu["model"]).total_memory_mb
        used = 512 * len(gpu["processes"])  # a nominal footprint per simulated process
        return {"total_mb": total, "used_mb": used, "free_mb": total - used}

    def mig_mode(self, index):
        gpu, _model = self._mig_model(index, "DeviceGetMigMode")
        return gpu["mig"]["current"], gpu["mig"]["pending"]

    def set_mig_mode(self, index, enabled):
        op = "set_mig_mode"
        gpu, _model = self._mig_model(index, "DeviceSetMigMode")
        self._need_root("DeviceSetMigMode")
        self._fault(op, index)
        mode = MIG_ENABLE if enabled else MIG_DISABLE
        if mode == MIG_DISABLE and gpu["gpu_instances"]:
            raise InUse("GPU %d still has GPU instances; destroy them before disabling MIG" % index, op=op)
        gpu["mig"]["pending"] = mode
        self._save()
        if gpu["mig"]["current"] != mode and gpu["processes"]:
            # The driver could not unbind a busy GPU: the status says so, the call does not raise.
            return ERR_IN_USE
        return 0

    def reset(self, index):
        op = "reset"
        gpu = self._gpu(index)
        self._need_root("reset")
        self._fault(op, index)
        if gpu["processes"]:
            raise InUse("GPU %d has %d running process(es); reset refused" % (index, len(gpu["processes"])),
                        op=op)
        if gpu["mig"] is not None:
            gpu["mig"]["current"] = gpu["mig"]["pending"]
        gpu["gpu_instances"] = []  # MIG instances do not survive a GPU reset
        self._save()

    def gi_profile_info(self, index, nvml_index):
        op = "DeviceGetGpuInstanceProfileInfo"
        if not 0 <= nvml_index < gpu_catalog.NVML_GI_PROFILE_COUNT:
            raise InvalidArgument("GI profile index %d out of range" % nvml_index, op=op)
        _gpu, model = self._mig_enabled(index, op)
        prof = model.profile_by_nvml_index(nvml_index)
        if prof is None:
            raise NotSupported("%s has no GI profile with index %d" % (model.name, nvml_index), op=op)
        return _gi_profile_info(prof)

    def _profile(self, model, profile_id, op):
        prof = model.profile_by_id(profile_id)
        if prof is None:
            raise InvalidArgument("%s has no GI profile id %r" % (model.name, profile_id), op=op)
        return prof

    def gpu_instances(self, index, profile_id):
        op = "DeviceGetGpuInstances"
        gpu, model = self._mig_enabled(index, op)
        self._profile(model, profile_id, op)
        return [GpuInstance(gi["id"], gi["profile_id"], gi["start"], gi["size"])
                for gi in sorted(gpu["gpu_instances"], key=lambda g: g["id"]) if gi["profile_id"] == profile_id]

    def _occupied(self, gpu):
        mask = 0
        for gi in gpu["gpu_instances"]:
            mask |= ((1 << gi["size"]) - 1) << gi["start"]
        return mask

    def _free_starts(self, gpu, prof):
        mask = self._occupied(gpu)
        return [s for s in prof.starts if not mask & (((1 << prof.size) - 1) << s)]

    def _count(self, gpu, prof):
        return sum(1 for gi in gpu["gpu_instances"] if gi["profile_id"] == prof.profile_id)

    def gi_remaining_capacity(self, index, profile_id):
        op = "DeviceGetGpuInstanceRemainingCapacity"
        gpu, model = self._mig_enabled(index, op)
        prof = self._profile(model, profile_id, op)
        # Allowed starts are size-aligned, so free starts never overlap each other.
        return max(0, min(len(self._free_starts(gpu, prof)), prof.max_count - self._count(gpu, prof)))

    def gi_possible_placements(self, index, profile_id):
        op = "DeviceGetGpuInstancePossiblePlacements"
        gpu, model = self._mig_enabled(index, op)
        prof = self._profile(model, profile_id, op)
        if self._count(gpu, prof) >= prof.max_count:
            return []
        return [(s, prof.size) for s in self._free_starts(gpu, prof)]

    def create_gpu_instance(self, index, profile_id, placement=None):
        op = "create_gpu_instance"
        api = "DeviceCreateGpuInstanceWithPlacement" if placement is not None else "DeviceCreateGpuInstance"
        gpu, model = self._mig_enabled(index, api)
        self._need_root(api)
        prof = self._profile(model, profile_id, api)
        self._fault(op, index)
        if self._count(gpu, prof) >= prof.max_count:
            raise InsufficientResources("%s allows at most %d x %s" % (model.name, prof.max_count, prof.name), op=api)
        free = self._free_starts(gpu, prof)
        if placement is not None:
            start, size = int(placement[0]), int(placement[1])
            if start not in prof.starts or size != prof.size:
                raise InvalidArgument("%s cannot be placed at %d:%d (allowed: %s, size %d)"
                                      % (prof.name, start, size, ",".join(map(str, prof.starts)), prof.size), op=api)
            if start not in free:
                raise InsufficientResources("%s at %d:%d overlaps an existing GPU instance"
                                            % (prof.name, start, size), op=api)
        else:
            if not free:
                raise InsufficientResources("no free placement for %s" % prof.name, op=api)
            start = _auto_start(model, prof, free)
        slots = _slot_ids(model.memory_slices)
        used = set(gi["id"] for gi in gpu["gpu_instances"])
        gi_id = slots.get((prof.size, start))
        if gi_id is None or gi_id in used:  # not expected with the slot table; stay unique anyway
            gi_id = min(i for i in range(len(slots) + 16) if i not in used and i not in slots.values())
        gi = {"id": gi_id, "profile_id": prof.profile_id, "start": start, "size": prof.size, "compute_instances": []}
        gpu["gpu_instances"].append(gi)
        gpu["gpu_instances"].sort(key=lambda g: (g["start"], g["id"]))
        self._save()
        return GpuInstance(gi_id, prof.profile_id, start, prof.size)

    def destroy_gpu_instance(self, index, gi_id):
        op = "destroy_gpu_instance"
        gpu, _model = self._mig_enabled(index, "GpuInstanceDestroy")
        self._need_root("GpuInstanceDestroy")
        gi = self._gi(gpu, gi_id, "GpuInstanceDestroy")
        self._fault(op, index)
        if gi["compute_instances"]:
            raise InUse("GPU instance %d still has %d compute instance(s)" % (gi_id, len(gi["compute_instances"])),
                        op="GpuInstanceDestroy")
        if any(p.get("gi_id") == gi_id for p in gpu["processes"]):
            raise InUse("GPU instance %d has running processes" % gi_id, op="GpuInstanceDestroy")
        gpu["gpu_instances"].remove(gi)
        self._save()

    def _ci_shapes(self, model, gi):
        return model.ci_profiles(model.profile_by_id(gi["profile_id"]))

    def ci_profile_info(self, index, gi_id, ci_nvml_index):
        op = "GpuInstanceGetComputeInstanceProfileInfo"
        if not 0 <= ci_nvml_index < gpu_catalog.NVML_CI_PROFILE_COUNT:
            raise InvalidArgument("CI profile index %d out of range" % ci_nvml_index, op=op)
        gpu, model = self._mig_enabled(index, op)
        gi = self._gi(gpu, gi_id, op)
        gi_prof = model.profile_by_id(gi["profile_id"])
        for shape in self._ci_shapes(model, gi):
            if shape.nvml_index == ci_nvml_index:
                sms = gi_prof.multiprocessors * shape.compute_slices // gi_prof.compute_slices
                # CI profile ids equal the NVML_COMPUTE_INSTANCE_PROFILE_* value (nvidia-smi -lcip).
                return CiProfileInfo(shape.nvml_index, shape.nvml_index, shape.compute_slices, shape.max_count, sms)
        raise NotSupported("GPU instance %d (%s) has no CI profile index %d" % (gi_id, gi_prof.name, ci_nvml_index),
                           op=op)

    def _ci_shape(self, model, gi, ci_profile_id, op):
        for shape in self._ci_shapes(model, gi):
            if shape.nvml_index == ci_profile_id:
                return shape
        raise NotSupported("GPU instance %d has no CI profile id %r" % (gi["id"], ci_profile_id), op=op)

    def compute_instances(self, index, gi_id, ci_profile_id):
        op = "GpuInstanceGetComputeInstances"
        gpu, model = self._mig_enabled(index, op)
        gi = self._gi(gpu, gi_id, op)
        self._ci_shape(model, gi, ci_profile_id, op)
        return [ComputeInstance(gi_id, ci["id"], ci["profile_id"], ci["start"], ci["size"])
                for ci in sorted(gi["compute_instances"], key=lambda c: c["id"]) if ci["profile_id"] == ci_profile_id]

    def create_compute_instance(self, index, gi_id, ci_profile_id):
        op = "create_compute_instance"
        api = "GpuInstanceCreateComputeInstance"
        gpu, model = self._mig_enabled(index, api)
        self._need_root(api)
        gi = self._gi(gpu, gi_id, api)
        shape = self._ci_shape(model, gi, ci_profile_id, api)
        self._fault(op, index)
        same = [c for c in gi["compute_instances"] if c["profile_id"] == ci_profile_id]
        if len(same) >= shape.max_count:
            raise InsufficientResources("GPU instance %d allows at most %d CIs of profile %d"
                                        % (gi_id, shape.max_count, ci_profile_id), op=api)
        mask = 0
        for ci in gi["compute_instances"]:
            mask |= ((1 << ci["size"]) - 1) << ci["start"]
        starts = [s for s in shape.starts if not mask & (((1 << shape.compute_slices) - 1) << s)]
        if not starts:
            raise InsufficientResources("GPU instance %d has no free compute slices for a %dc compute instance"
                                        % (gi_id, shape.compute_slices), op=api)
        used = set(c["id"] for c in gi["compute_instances"])
        ci_id = min(i for i in range(16) if i not in used)
        ci = {"id": ci_id, "profile_id": ci_profile_id, "start": starts[0], "size": shape.compute_slices,
              "uuid": "MIG-" + stable_uuid("sim-mig", gpu["uuid"], gi_id, ci_id)}
        gi["compute_instances"].append(ci)
        gi["compute_instances"].sort(key=lambda c: (c["start"], c["id"]))
        self._save()
        return ComputeInstance(gi_id, ci_id, ci_profile_id, starts[0], shape.compute_slices)

    def destroy_compute_instance(self, index, gi_id, ci_id):
        op = "destroy_compute_instance"
        api = "ComputeInstanceDestroy"
        gpu, _model = self._mig_enabled(index, api)
        self._need_root(api)
        gi = self._gi(gpu, gi_id, api)
        self._fault(op, index)
        for ci in gi["compute_instances"]:
            if ci["id"] == ci_id:
                if any(p.get("gi_id") == gi_id and p.get("ci_id") == ci_id for p in gpu["processes"]):
                    raise InUse("compute instance %d/%d has running processes" % (gi_id, ci_id), op=api)
                gi["compute_instances"].remove(ci)
                self._save()
                return
        raise NotFound("GPU instance %d has no compute instance %r" % (gi_id, ci_id), op=api)

    def mig_devices(self, index):
        gpu, _model = self._mig_model(index, "DeviceGetMigDeviceHandleByIndex")
        out = []
        for gi in sorted(gpu["gpu_instances"], key=lambda g: (g["start"], g["id"])):
            for ci in sorted(gi["compute_instances"], key=lambda c: (c["start"], c["id"])):
                out.append(MigDevice(ci["uuid"], gi["id"], ci["id"]))
        return out

    def processes(self, index, gi_id=None):
        gpu = self._gpu(index)
        return sorted(set(p["pid"] for p in gpu["processes"] if gi_id is None or p.get("gi_id") == gi_id))

    def snapshot(self):
        """A deep copy of the state (for tests)."""
        return copy.deepcopy(self.state)


def _auto_start(model, prof, free):
    """Where plain CreateGpuInstance puts a GI: the observed order for one-slice
    profiles on 8-slice GPUs, otherwise the highest free start (keeps low starts,
    which the larger profiles need, free as long as possible)."""
    if prof.size == 1 and model.memory_slices == 8:
        for start in _ONE_SLICE_AUTO_ORDER:
            if start in free:
                return start
    return max(free)


def _gi_profile_info(prof):
    return GiProfileInfo(prof.profile_id, prof.nvml_index, prof.compute_slices, prof.max_count, prof.memory_mb,
                         prof.multiprocessors, prof.copy_engines)
