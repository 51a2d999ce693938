# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Converge the MIG layout of a host's GPUs: mode, GPU instances at explicit
placements, compute instances; with check mode, diff and rollback.

Inputs: a mig-parted config (``version: v1``, ``mig-configs``, a label) or the
per-GPU layout of the cluster.yaml plan. Unlike mig-parted, the placement is
part of the state: a GI of the right profile at another start is a change.
mig-parted configs are read by gpu/mig/parted.py, the state file by gpu/mig/persistence.py.
Existing instances stay where they are whenever the target allows it
(``mig_placement.solve`` with the current layout).

Apply order per run: mode changes (and resets when allowed), then for every
GPU: destroy unwanted CIs, destroy unwanted GIs, create GIs at their
placements, create CIs. Every step is journalled; when one fails, the journal
is undone in reverse (the prior layout is restored) before the error is raised.

:func:`apply_saved` re-applies the saved layout (what the boot-time unit runs).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from collections import Counter

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.pci import normalize_bus_id
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import placement as mig_placement
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig.parted import (
    ci_name, entry_matches, gi_groups_from_mig_devices, unmatched_entries, validate_mig_parted)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig.persistence import (
    DEFAULT_PERSIST_PATH, layout_document, load_layout, save_layout)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    MIG_ENABLE, NotSupported, NvmlError)


# ================================================================ current state
def gpu_model(backend, index):
    """The catalog model of GPU ``index`` (by PCI device id, else by name); HyperscalerError if unknown."""
    pci = backend.pci_info(index)
    dev_id = "0x%04x" % (pci["device_id"] >> 16)
    try:
        return gpu_catalog.resolve_model(dev_id)
    except gpu_catalog.UnknownGpuModel:
        pass
    name = backend.name(index)
    try:
        return gpu_catalog.resolve_model(name)
    except gpu_catalog.UnknownGpuModel as exc:
        raise HyperscalerError("GPU %d (%s, PCI device id %s): %s. Its MIG geometry cannot be planned; with a mig-parted "
              "config, a device-filter can leave it out" % (index, pci["bus_id"], dev_id, exc))


def read_gpu(backend, index):
    """The GPU's layout as this module reports it (with GI/CI ids and MIG UUIDs)."""
    pci = backend.pci_info(index)
    model = gpu_model(backend, index)
    out = {"index": index, "pci_address": pci["bus_id"], "uuid": backend.uuid(index), "model": model.name,
           "model_key": model.key, "mig_capable": model.mig_capable, "mig_enabled": False,
           "mig_pending": None, "instances": []}
    if not model.mig_capable:
        return out
    try:
        current, pending = backend.mig_mode(index)
    except NotSupported:
        out["mig_capable"] = False
        return out
    out["mig_enabled"] = current == MIG_ENABLE
    out["mig_pending"] = (pending == MIG_ENABLE) if pending != current else None
    if current != MIG_ENABLE:
        return out
    uuids = dict(((d.gi_id, d.ci_id), d.uuid) for d in backend.mig_devices(index))
    for gi in backend.all_gpu_instances(index):
        prof = model.profile_by_id(gi.profile_id)
        name = prof.name if prof else "profile-id-%d" % gi.profile_id
        cis = []
        # The CI profile's slice count is its compute-slice count.
        slices = dict((info.id, info.slice_count) for info in backend.ci_profiles(index, gi.id))
        for ci in backend.all_compute_instances(index, gi.id):
            c = slices.get(ci.profile_id, ci.size or 1)
            cis.append({"ci_id": ci.id, "profile": ci_name(prof, c) if prof else str(ci.profile_id),
                        "compute_slices": c, "uuid": uuids.get((gi.id, ci.id))})
        out["instances"].append({"profile": name, "start": gi.start, "size": gi.size, "gi_id": gi.id,
                                 "compute_instances": cis})
    return out


def diff_view(layout):
    """Per-GPU view for --diff: no ids or UUIDs, which change on re-creation."""
    view = {"mig_enabled": layout["mig_enabled"], "instances": [
        {"profile": i["profile"], "start": i["start"], "size": i["size"],
         "compute_instances": [c["profile"] for c in i["compute_instances"]]}
        for i in sorted(layout["instances"], key=lambda i: i["start"])]}
    if layout.get("mig_pending") is not None:
        view["mig_pending"] = layout["mig_pending"]
    return view


# ====================================================================== targets
class Target:
    """What one GPU should look like. ``groups``: [(profile, [c...], start or None)]."""

    def __init__(self, index, enabled, groups, explicit, required, source):
        self.index = index
        self.enabled = enabled
        self.groups = groups
        self.explicit = explicit  # placements given (plan) rather than computed
        self.required = required  # selected by index/address: a non-MIG GPU is an error, not a skip
        self.source = source


def targets_from_mig_parted(backend, config, selected):
    """(targets, warnings, unmatched): unmatched lists the entries that select no GPU here."""
    entries = validate_mig_parted(config, selected)
    targets = {}
    warnings = []
    gpus = [(index, backend.pci_info(index)) for index in range(backend.device_count())]
    unmatched = unmatched_entries(entries, selected, gpus)
    if unmatched:
        # mig-parted skips such entries silently; a typo in a filter would then look like success.
        one = len(unmatched) == 1
        here = ", ".join("%d: %s 0x%08X" % (i, pci["bus_id"], pci["device_id"]) for i, pci in gpus) or "none"
        warnings.append("%s %s no GPU on this host and %s not applied; GPUs here (index: PCI address, "
                        "device-filter id): %s" % ("; ".join("%s (%s)" % (u["entry"], u["selects"]) for u in unmatched),
                                                   "selects" if one else "select", "is" if one else "are", here))
    for index, pci in gpus:
        matched = [e for e in entries if entry_matches(e, index, pci)]
        if not matched:
            continue
        # mig-parted applies every matching entry in turn, so the last one wins.
        entry = matched[-1]
        if len(set(json.dumps([e["enabled"], e["mig_devices"]], sort_keys=True) for e in matched)) > 1:
            warnings.append("GPU %d (%s) matches entries %s of %s with different settings; the last one applies, "
                            "as with mig-parted" % (index, pci["bus_id"], ", ".join(str(e["position"]) for e in matched),
                                                    selected))
        model = gpu_model(backend, index)
        where = "mig-configs.%s[%d] (GPU %d, %s)" % (selected, entry["position"], index, model.name)
        groups = []
        if model.mig_capable and entry["enabled"]:
            groups = [(name, cs, None) for name, cs in gi_groups_from_mig_devices(model, entry["mig_devices"], where)]
        targets[index] = Target(index, entry["enabled"], groups, False, entry["devices"] != "all", where)
    return targets, warnings, unmatched


def targets_from_layout(backend, layout):
    """The plan's per-GPU layout: [{pci_address, mig_enabled, instances: [{profile, start, size}]}]."""
    targets = {}
    for pos, item in enumerate(layout):
        where = "layout[%d]" % pos
        bus = normalize_bus_id(item.get("pci_address"))
        if bus is None:
            raise HyperscalerError("%s.pci_address %r is not a PCI address" % (where, item.get("pci_address")))
        try:
            index = backend.index_by_pci_bus_id(bus)
        except NvmlError:
            raise HyperscalerError("%s: no GPU at PCI address %s on this host" % (where, bus))
        if index in targets:
            raise HyperscalerError("%s: GPU %s is listed twice" % (where, bus))
        model = gpu_model(backend, index)
        instances = item.get("instances") or []
        enabled = item.get("mig_enabled")
        if enabled is None:
            enabled = bool(instances)
        if instances and not enabled:
            raise HyperscalerError("%s: instances are listed but mig_enabled is false" % where)
        groups = []
        for k, inst in enumerate(instances):
            iw = "%s.instances[%d]" % (where, k)
            prof = model.profile(str(inst.get("profile", "")))
            if prof is None:
                valid = ", ".join(model.profile_names()) or "none"
                raise HyperscalerError("%s: %s has no MIG profile %r (valid: %s)" % (iw, model.name, inst.get("profile"), valid))
            start = inst.get("start")
            if start is not None and start not in prof.starts:
                raise HyperscalerError("%s: %s cannot start at memory slice %s on %s (allowed starts: %s)"
                      % (iw, prof.name, start, model.name, ", ".join(map(str, prof.starts))))
            if inst.get("size") is not None and inst["size"] != prof.size:
                raise HyperscalerError("%s: %s occupies %d memory slices, not %s" % (iw, prof.name, prof.size, inst["size"]))
            cis = inst.get("compute_instances")
            if cis:
                shapes = []
                for ci in cis:
                    try:
                        gi_name, c = gpu_catalog.parse_mig_device_name(str(ci)) if isinstance(ci, str) \
                            else (prof.name, ci)
                    except ValueError as exc:
                        raise HyperscalerError("%s.compute_instances: %s, for example %s" % (iw, exc, ci_name(prof, 1)))
                    if gi_name != prof.name:
                        raise HyperscalerError("%s: compute instance %r does not belong to a %s GPU instance" % (iw, ci, prof.name))
                    shapes.append(c or prof.compute_slices)
                valid = [s.compute_slices for s in model.ci_profiles(prof)]
                bad = [s for s in shapes if s not in valid]
                if bad or sum(shapes) > prof.compute_slices:
                    raise HyperscalerError("%s: compute instances %s do not fit a %s GPU instance (shapes: %s; at most %d compute "
                          "slices)" % (iw, cis, prof.name, ", ".join(ci_name(prof, s) for s in valid),
                                       prof.compute_slices))
            else:
                shapes = [prof.compute_slices]
            groups.append((prof.name, sorted(shapes, reverse=True), start))
        targets[index] = Target(index, bool(enabled), groups, True, True, where)
    return targets


def place(model, target, current_instances):
    """[(profile, start, size, [c...])] for the target, keeping current GIs where possible."""
    names = [g[0] for g in target.groups]
    if not names:
        return []
    if target.explicit and all(g[2] is not None for g in target.groups):
        placed = [mig_placement.Placed(g[0], g[2], model.profile(g[0]).size) for g in target.groups]
        problem = _explicit_problem(model, placed)
        if problem:
            raise HyperscalerError("%s: infeasible MIG layout on %s: %s" % (target.source, model.name, problem))
        return [(p.profile, p.start, p.size, g[1]) for p, g in zip(placed, target.groups)]
    fixed = [mig_placement.Placed(g[0], g[2], model.profile(g[0]).size) for g in target.groups if g[2] is not None]
    current = fixed + [mig_placement.Placed(i["profile"], i["start"], i["size"]) for i in current_instances
                       if model.profile(i["profile"])]
    try:
        placed = mig_placement.solve(model, names, current=current)
    except mig_placement.PlacementError as exc:
        raise HyperscalerError("%s: infeasible MIG layout: %s" % (target.source, exc))
    missing = [f for f in fixed if f not in placed]
    if missing:
        raise HyperscalerError("%s: infeasible MIG layout on %s: the given placements %s cannot all be kept"
              % (target.source, model.name, ", ".join("%s at %d" % (m.profile, m.start) for m in missing)))
    # Give each placed GI a CI list: existing GIs keep a matching CI list when the target has one.
    pool = [list(g) for g in target.groups]
    current_cis = dict(((i["profile"], i["start"]),
                        sorted((c["compute_slices"] for c in i["compute_instances"]), reverse=True))
                       for i in current_instances)
    out = [None] * len(placed)
    for k, p in enumerate(placed):
        have = current_cis.get((p.profile, p.start))
        for g in pool:
            if g[0] == p.profile and (g[2] == p.start or (g[2] is None and g[1] == have)):
                out[k] = (p.profile, p.start, p.size, g[1])
                pool.remove(g)
                break
    for k, p in enumerate(placed):
        if out[k] is None:
            for g in pool:
                if g[0] == p.profile and g[2] is None:
                    out[k] = (p.profile, p.start, p.size, g[1])
                    pool.remove(g)
                    break
    return out


def _explicit_problem(model, placed):
    mask = 0
    for p in sorted(placed, key=lambda p: p.start):
        bits = ((1 << p.size) - 1) << p.start
        if mask & bits:
            return "%s at %d:%d overlaps another instance" % (p.profile, p.start, p.size)
        mask |= bits
    for name, count in Counter(p.profile for p in placed).items():
        prof = model.profile(name)
        if count > prof.max_count:
            return "%s, %d given" % (mig_placement.max_count_text(model, prof), count)
    return None


# ======================================================================== apply
class _Journal:
    """Undo log: each entry knows how to revert one completed step."""

    def __init__(self, backend):
        self.backend = backend
        self.steps = []

    def add(self, kind, index, **data):
        self.steps.append(dict(kind=kind, index=index, **data))

    def rollback(self):
        errors = []
        for step in reversed(self.steps):
            b, i = self.backend, step["index"]
            try:
                if step["kind"] == "created_ci":
                    b.destroy_compute_instance(i, step["gi_id"], step["ci_id"])
                elif step["kind"] == "created_gi":
                    b.destroy_gpu_instance(i, step["gi_id"])
                elif step["kind"] == "destroyed_gi":
                    new = b.create_gpu_instance(i, step["profile_id"], (step["start"], step["size"]))
                    # Later (earlier-in-time) CI re-creations refer to the old GI id.
                    for other in self.steps:
                        if other["index"] == i and other.get("gi_id") == step["gi_id"]:
                            other["gi_id"] = new.id
                elif step["kind"] == "destroyed_ci":
                    b.create_compute_instance(i, step["gi_id"], step["ci_profile_id"])
            except NvmlError as exc:
                errors.append("undo %s on GPU %d: %s" % (step["kind"], i, exc))
        return errors


def _ci_profile_id(backend, index, gi_id, c):
    for info in backend.ci_profiles(index, gi_id):
        if info.slice_count == c:
            return info.id
    raise NotSupported("GPU instance %d offers no %d-slice compute instance" % (gi_id, c))


def _gi_profile_id(backend, index, model, name):
    prof = model.profile(name)
    info = backend.gi_profile_info(index, prof.nvml_index)
    return info.id  # the real id, which every GI call takes (not the NVML index)


def converge(backend, targets, check_mode=False, allow_reset=False):
    """Bring the GPUs in ``targets`` to their layouts. Returns a dict with
    changed, before, after (lists of layouts), actions, reset_required."""
    before, after, actions, reset_required, plans = {}, {}, [], [], []
    for index in sorted(targets):
        target = targets[index]
        cur = read_gpu(backend, index)
        before[index] = cur
        model = gpu_catalog.MODELS_BY_KEY[cur["model_key"]]
        if not cur["mig_capable"]:
            if target.enabled and target.required:
                raise HyperscalerError("%s: GPU %s (%s) is not MIG capable; MIG GPUs: %s" % (
                    target.source, cur["pci_address"], model.name,
                    ", ".join(m.name for m in gpu_catalog.GPU_MODELS if m.mig_capable)))
            after[index] = cur  # mig-parted skips non-MIG GPUs selected by 'all'
            continue
        pending_now = cur["mig_pending"] if cur["mig_pending"] is not None else cur["mig_enabled"]
        mode_change = pending_now != target.enabled  # SetMigMode is needed
        # The wanted mode is not current yet: only a reset activates it.
        needs_reset = cur["mig_enabled"] != target.enabled
        busy = backend.processes(index)
        if needs_reset and allow_reset and busy:
            raise HyperscalerError("GPU %s is busy (PIDs %s): it cannot be reset to %s MIG mode; stop the processes first"
                  % (cur["pci_address"], ", ".join(map(str, busy)), "enable" if target.enabled else "disable"),
                  pids=busy)
        if needs_reset and not allow_reset and target.groups:
            # Nothing has changed yet: say so before asking for a reset.
            raise HyperscalerError("MIG mode %s is pending on GPU %s: instances can only be created after a GPU reset; "
                                   "set allow_reset: true (the GPU must be idle) or reboot and re-run"
                                   % ("enable" if target.enabled else "disable", cur["pci_address"]),
                                   reset_required=[cur["pci_address"]])
        # The instances the GPU will have right after the mode step.
        base = cur["instances"] if (cur["mig_enabled"] and target.enabled) else []
        layout = place(model, target, base) if target.enabled else []
        keep, remove_gi, reset_ci, create = _diff(base, layout)
        remove_all = cur["instances"] if (cur["mig_enabled"] and not target.enabled) else []
        for inst in remove_gi + reset_ci + remove_all:
            pids = backend.processes(index, inst["gi_id"])
            if pids:
                raise HyperscalerError("GPU %s is busy: GPU instance %d (%s at %d:%d) runs processes %s; it is not changed"
                      % (cur["pci_address"], inst["gi_id"], inst["profile"], inst["start"], inst["size"],
                         ", ".join(map(str, pids))), pids=pids)
        plans.append((index, target, cur, model, mode_change, needs_reset, layout, keep, remove_gi, reset_ci,
                      create, remove_all))

    journal = _Journal(backend)
    changed = False
    try:
        for (index, target, cur, model, mode_change, needs_reset, layout, keep, remove_gi, reset_ci, create,
             remove_all) in plans:
            pci = cur["pci_address"]
            if mode_change or needs_reset:
                for inst in remove_all:
                    changed = True
                    _destroy(backend, journal, index, model, inst, actions, pci, check_mode, destroy_gi=True)
            if mode_change:
                changed = True
                actions.append("%s: set MIG mode %s" % (pci, "enabled" if target.enabled else "disabled"))
                if not check_mode:
                    status = backend.set_mig_mode(index, target.enabled)
                    if status:
                        actions.append("%s: activation status %d (a reset is needed)" % (pci, status))
            if needs_reset:
                if allow_reset:
                    changed = True
                    actions.append("%s: reset the GPU to activate the MIG mode" % pci)
                    if not check_mode:
                        backend.reset(index)
                else:
                    reset_required.append(pci)
            if mode_change or needs_reset:
                if not target.enabled or (needs_reset and not allow_reset):
                    continue
            for inst in remove_gi:
                changed = True
                _destroy(backend, journal, index, model, inst, actions, pci, check_mode, destroy_gi=True)
            for inst, cs in reset_ci:
                changed = True
                _destroy(backend, journal, index, model, inst, actions, pci, check_mode, destroy_gi=False)
                _create_cis(backend, journal, index, model, inst["gi_id"], inst["profile"], cs, actions, pci,
                            check_mode)
            for name, start, size, cs in create:
                changed = True
                actions.append("%s: create GPU instance %s at %d:%d" % (pci, name, start, size))
                gi_id = None
                if not check_mode:
                    gi = backend.create_gpu_instance(index, _gi_profile_id(backend, index, model, name), (start, size))
                    journal.add("created_gi", index, gi_id=gi.id)
                    gi_id = gi.id
                _create_cis(backend, journal, index, model, gi_id, name, cs, actions, pci, check_mode)
    except (NvmlError, HyperscalerError) as exc:
        errors = journal.rollback()
        restored = [read_gpu(backend, i) for i in sorted(targets)]
        raise HyperscalerError("MIG layout change failed at step %r: %s; %s" % (
            actions[-1] if actions else "start", getattr(exc, "msg", str(exc)),
            "rolled back to the prior layout" if not errors else "rollback incomplete: " + "; ".join(errors)),
            actions=actions, restored=restored, rollback_errors=errors)

    for (index, target, cur, model, mode_change, needs_reset, layout, keep, remove_gi, reset_ci, create,
         remove_all) in plans:
        if check_mode:
            after[index] = _predict(cur, target, layout, needs_reset and not allow_reset)
        else:
            after[index] = read_gpu(backend, index)
    return {"changed": changed, "before": [before[i] for i in sorted(before)],
            "after": [after[i] for i in sorted(after)], "actions": actions, "reset_required": reset_required}


def _diff(base, layout):
    """Split into kept GIs, GIs to remove, kept GIs whose CIs change, GIs to create."""
    by_slot = dict(((i["profile"], i["start"]), i) for i in base)
    keep, reset_ci, create = [], [], []
    used = set()
    for name, start, size, cs in layout:
        inst = by_slot.get((name, start))
        if inst is None:
            create.append((name, start, size, cs))
            continue
        used.add(id(inst))
        have = sorted((c["compute_slices"] for c in inst["compute_instances"]), reverse=True)
        if have == sorted(cs, reverse=True):
            keep.append(inst)
        else:
            reset_ci.append((inst, cs))
    remove_gi = [i for i in base if id(i) not in used]
    return keep, remove_gi, reset_ci, create


def _destroy(backend, journal, index, model, inst, actions, pci, check_mode, destroy_gi):
    gi_id = inst["gi_id"]
    for ci in inst["compute_instances"]:
        actions.append("%s: destroy compute instance %d/%d (%s)" % (pci, gi_id, ci["ci_id"], ci["profile"]))
        if not check_mode:
            cur_gi = gi_id
            ci_profile_id = _ci_profile_id(backend, index, cur_gi, ci["compute_slices"])
            backend.destroy_compute_instance(index, cur_gi, ci["ci_id"])
            journal.add("destroyed_ci", index, gi_id=cur_gi, ci_profile_id=ci_profile_id)
    if destroy_gi:
        actions.append("%s: destroy GPU instance %d (%s at %d:%d)" % (pci, gi_id, inst["profile"], inst["start"],
                                                                      inst["size"]))
        if not check_mode:
            profile_id = model.profile(inst["profile"]).profile_id
            backend.destroy_gpu_instance(index, gi_id)
            journal.add("destroyed_gi", index, gi_id=gi_id, profile_id=profile_id, start=inst["start"],
                        size=inst["size"])


def _create_cis(backend, journal, index, model, gi_id, gi_name, cs, actions, pci, check_mode):
    prof = model.profile(gi_name)
    for c in cs:
        actions.append("%s: create compute instance %s in GPU instance %s" % (
            pci, ci_name(prof, c), gi_id if gi_id is not None else "(new)"))
        if not check_mode:
            ci = backend.create_compute_instance(index, gi_id, _ci_profile_id(backend, index, gi_id, c))
            journal.add("created_ci", index, gi_id=gi_id, ci_id=ci.id)


def _predict(cur, target, layout, pending):
    out = dict(cur)
    if pending:
        out["mig_pending"] = target.enabled
        if not target.enabled:
            out["instances"] = []
        return out
    out["mig_enabled"] = target.enabled
    out["mig_pending"] = None
    existing = dict(((i["profile"], i["start"]), i) for i in cur["instances"]) if cur["mig_enabled"] else {}
    instances = []
    for name, start, size, cs in layout:
        prof = gpu_catalog.MODELS_BY_KEY[cur["model_key"]].profile(name)
        old = existing.get((name, start))
        if old and sorted(c["compute_slices"] for c in old["compute_instances"]) == sorted(cs):
            instances.append(old)
            continue
        instances.append({"profile": name, "start": start, "size": size, "gi_id": old["gi_id"] if old else None,
                          "compute_instances": [{"ci_id": None, "profile": ci_name(prof, c), "compute_slices": c,
                                                 "uuid": None} for c in cs]})
    out["instances"] = sorted(instances, key=lambda i: i["start"])
    return out


def apply_saved(backend, path, allow_reset=True, check_mode=False):
    """Re-apply a saved layout (what the boot-time unit runs). Returns converge()'s result."""
    doc = load_layout(path)
    targets = targets_from_layout(backend, doc["gpus"])
    return converge(backend, targets, check_mode=check_mode, allow_reset=allow_reset)


def run(backend, mig_config=None, selected_config=None, layout=None, check_mode=False, allow_reset=False,
        persist_path=DEFAULT_PERSIST_PATH):
    """The whole module logic over an initialised backend."""
    warnings, unmatched = [], []
    if layout is not None:
        targets = targets_from_layout(backend, layout)
    else:
        targets, warnings, unmatched = targets_from_mig_parted(backend, mig_config, selected_config)
    result = converge(backend, targets, check_mode=check_mode, allow_reset=allow_reset)
    result["warnings"] = warnings
    result["unmatched_entries"] = unmatched
    result["persist_changed"] = False
    if persist_path:
        result["persist_changed"] = save_layout(persist_path, layout_document(result["after"]), check_mode)
    return result
