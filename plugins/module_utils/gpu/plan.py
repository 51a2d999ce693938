# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The GPU allocation plan: which node gets which whole GPU or MIG slice.

Deterministic (same config, same plan) and exact: a MIG request that adds up
but cannot be placed under the real placement rules is rejected here, with the
reason, not discovered at apply time. The algorithm is documented in
docs/gpu-plan.md:

1. Whole GPUs: devices without MIG (or with ``mig_capable: false``) in file
   order, then MIG-capable devices from the end of the list, so the first MIG
   GPUs stay free for slicing. hpc takes its share first, then cloud.
2. MIG instances: every requested instance (largest first) is assigned to a
   MIG GPU by a complete depth-first search whose per-GPU test is the exact
   placement solver; dead ends are memoised on the canonical multiset of GPU
   states, so an infeasible request is proven infeasible quickly.
3. Each GPU's instances get explicit placements (mig_placement.solve).
4. Per cluster, resources (whole GPUs, then MIG instances by GPU and start)
   are dealt round-robin to the cluster's GPU-enabled nodes in name order.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import Counter, namedtuple

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import CLUSTERS
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import placement as mig_placement

_GENERIC = None  # a bare slice count: the GPU's smallest allowed profile

# One MIG GPU of the pool: its index in gpu_allocation.devices, the device entry, its catalog model and
# the profile names it may be sliced into.
PoolGpu = namedtuple("PoolGpu", ["index", "dev", "model", "allowed"])


def empty_plan():
    return {"strategy": None, "backend": None, "devices": [], "nodes": {}}


def _device_profiles(dev, model):
    allowed = dev.get("allowed_mig_profiles")
    names = model.profile_names()
    return [n for n in names if allowed is None or n in allowed]


def _generic_profile(model, allowed):
    plain = [model.profile(n) for n in allowed if "+" not in n] or [model.profile(n) for n in allowed]
    return min(plain, key=lambda p: (p.size, p.compute_slices, p.memory_mb)).name


class _Pool:
    """The MIG GPUs of the plan and the exact multi-GPU assignment search."""

    STEP_LIMIT = 200000

    def __init__(self, devices):
        self.devices = devices  # list of PoolGpu
        self.fit_cache = {}
        self.steps = 0

    def resolve(self, pos, profile):
        gpu = self.devices[pos]
        if profile is _GENERIC:
            return _generic_profile(gpu.model, gpu.allowed)
        return profile if profile in gpu.allowed else None

    def fits(self, pos, counter):
        model = self.devices[pos].model
        key = (model.key, tuple(sorted(counter.items())))
        if key not in self.fit_cache:
            self.fit_cache[key] = mig_placement.fits(model, dict(counter))
        return self.fit_cache[key]

    def device_class(self, pos):
        gpu = self.devices[pos]
        return (gpu.model.key, tuple(gpu.allowed), gpu.dev.get("hypervisor_host"))

    def assign(self, items):
        """items: list of (cluster, profile or _GENERIC). Returns per-device lists or None."""
        state = [Counter() for gpu in self.devices]
        chosen = [[] for gpu in self.devices]
        dead = set()

        def canonical(k):
            return (k, tuple(sorted((self.device_class(p), tuple(sorted(state[p].items())))
                                    for p in range(len(self.devices)))))

        def go(k):
            if k == len(items):
                return True
            self.steps += 1
            if self.steps > self.STEP_LIMIT:
                raise mig_placement.PlacementError("the search gave up after %d steps" % self.STEP_LIMIT)
            key = canonical(k)
            if key in dead:
                return False
            tried = set()
            for pos in range(len(self.devices)):
                name = self.resolve(pos, items[k][1])
                if name is None:
                    continue
                sig = (self.device_class(pos), tuple(sorted(state[pos].items())))
                if sig in tried:
                    continue  # an identical GPU in an identical state was already tried
                tried.add(sig)
                state[pos][name] += 1
                if self.fits(pos, state[pos]):
                    chosen[pos].append((items[k][0], name))
                    if go(k + 1):
                        return True
                    chosen[pos].pop()
                state[pos][name] -= 1
                if not state[pos][name]:
                    del state[pos][name]
            dead.add(key)
            return False

        return chosen if go(0) else None


def _size_hint(pool, profile):
    if profile is _GENERIC:
        return 1
    sizes = [gpu.model.profile(profile).size for gpu in pool.devices if gpu.model.profile(profile)]
    return max(sizes) if sizes else 0


def _mig_items(checker, alloc, pool):
    items = []
    base = ["global", "gpu_allocation", "mig_slices"]
    offered = set()
    for gpu in pool.devices:
        offered.update(gpu.allowed)
    for cluster in CLUSTERS:
        req = alloc["mig_slices"].get(cluster, 0)
        if isinstance(req, int):
            items.extend([(cluster, _GENERIC)] * req)
            continue
        for profile, count in sorted(req.items()):
            if count and profile not in offered:
                checker.add(base + [cluster, profile], "no MIG GPU left for slicing offers %s (they offer: %s)"
                            % (profile, ", ".join(sorted(offered)) or "nothing: no MIG-capable GPU is free"))
                continue
            items.extend([(cluster, profile)] * count)
    items.sort(key=lambda item: (-_size_hint(pool, item[1]), CLUSTERS.index(item[0]), item[1] or ""))
    return items


def _aggregate_reason(pool, items):
    """Why nothing fits, in numbers, where a simple count already shows it."""
    demand = 0
    for _cluster, profile in items:
        sizes = [gpu.model.profile(pool.resolve(pos, profile)).compute_slices
                 for pos, gpu in enumerate(pool.devices) if pool.resolve(pos, profile)]
        demand += min(sizes) if sizes else 0
    supply = sum(max(p.compute_slices for p in gpu.model.mig_profiles) for gpu in pool.devices)
    if demand > supply:
        return "It needs %d compute slices; those GPUs hold %d." % (demand, supply)
    return None


def _pool_reason(pool, items):
    """The exact reason an assignment failed, where one rule shows it; None for a combinatorial dead end.

    After _aggregate_reason (compute slices): a profile wanted more often than the GPUs offering it
    allow in total, then more memory slices than the GPUs have. On one GPU these three rules are the
    whole story for every catalog geometry (checked exhaustively), so what is left is a split across GPUs.
    """
    wanted = Counter(profile for _cluster, profile in items if profile is not _GENERIC)
    for profile, count in sorted(wanted.items()):
        offering = [gpu for pos, gpu in enumerate(pool.devices) if pool.resolve(pos, profile)]
        allowed = sum(gpu.model.profile(profile).max_count for gpu in offering)
        if count > allowed:
            limit = mig_placement.max_count_text(offering[0].model, offering[0].model.profile(profile))
            if len(offering) == 1:
                return "%s; %d wanted on the one GPU left for slicing that offers it (%s)." % (
                    limit, count, offering[0].dev["id"])
            return "%s; %d wanted, and the %d GPUs left for slicing that offer it (%s) allow %d in all." % (
                limit, count, len(offering), ", ".join(g.dev["id"] for g in offering), allowed)
    demand = 0
    for _cluster, profile in items:
        sizes = [gpu.model.profile(pool.resolve(pos, profile)).size
                 for pos, gpu in enumerate(pool.devices) if pool.resolve(pos, profile)]
        demand += min(sizes) if sizes else 0
    supply = sum(gpu.model.memory_slices for gpu in pool.devices)
    if demand > supply:
        generic = sum(1 for _cluster, profile in items if profile is _GENERIC)
        shown = ", ".join(["%d x %s" % (n, p) for p, n in sorted(wanted.items())] +
                          (["%d slice%s" % (generic, "" if generic == 1 else "s")] if generic else []))
        return "The instances (%s) need %d memory slices; those GPUs have %d." % (shown, demand, supply)
    return None


def _describe_request(alloc):
    parts = []
    for cluster in CLUSTERS:
        req = alloc["mig_slices"].get(cluster, 0)
        if isinstance(req, int):
            if req:
                parts.append("%s: %d slice%s" % (cluster, req, "" if req == 1 else "s"))
        else:
            shown = ", ".join("%d x %s" % (n, p) for p, n in sorted(req.items()) if n)
            if shown:
                parts.append("%s: %s" % (cluster, shown))
    return "; ".join(parts)


def build_plan(checker, models, nodes):
    """Compute the plan from the validated config (``checker.data``); problems go to ``checker``."""
    data = checker.data
    alloc = data["global"]["gpu_allocation"]
    default_host = data["hypervisor"]["hosts"][0]["name"]
    devices = alloc["devices"]
    base = ["global", "gpu_allocation"]
    plan = {"strategy": alloc["strategy"], "backend": alloc["backend"], "devices": [], "nodes": {}}
    dev_plans = {}
    for i, dev in enumerate(devices):
        model = models[i]
        dev_plans[i] = {
            "id": dev["id"], "pci_address": dev["pci_address"].lower(), "model": model.name,
            "model_key": model.key, "architecture": model.architecture,
            "hypervisor_host": dev.get("hypervisor_host") or default_host,
            "mode": "unused", "node": None, "cluster": None, "mig_layout": [], "mig_devices": {},
        }

    def mig_ok(i):
        return models[i].mig_capable and devices[i].get("mig_capable") is not False

    # 1. whole GPUs
    whole = dict((c, alloc["whole_gpus"].get(c, 0) if alloc["strategy"] != "mig" else 0) for c in CLUSTERS)
    candidates = [i for i in range(len(devices)) if not mig_ok(i)] + \
                 [i for i in reversed(range(len(devices))) if mig_ok(i)]
    wanted_whole = whole["hpc"] + whole["cloud"]
    if wanted_whole > len(candidates):
        checker.add(base + ["whole_gpus"], "asks for %d whole GPUs (hpc %d, cloud %d) but global.gpu_allocation.devices "
                    "lists %d" % (wanted_whole, whole["hpc"], whole["cloud"], len(candidates)))
        return None
    taken = candidates[:wanted_whole]
    owners = ["hpc"] * whole["hpc"] + ["cloud"] * whole["cloud"]
    whole_by_cluster = dict((c, []) for c in CLUSTERS)
    for i, cluster in sorted(zip(taken, owners)):
        dev_plans[i]["mode"] = "whole"
        dev_plans[i]["cluster"] = cluster
        whole_by_cluster[cluster].append(i)

    # 2. MIG instances onto the remaining MIG GPUs
    pool_idx = [i for i in range(len(devices)) if mig_ok(i) and i not in taken] \
        if alloc["strategy"] != "whole" else []
    pool = _Pool([PoolGpu(i, devices[i], models[i], _device_profiles(devices[i], models[i])) for i in pool_idx])
    issues_before = len(checker.issues)
    items = _mig_items(checker, alloc, pool)
    if len(checker.issues) != issues_before:
        return None
    mig_by_cluster = dict((c, []) for c in CLUSTERS)
    if items:
        if not pool.devices:
            checker.add(base + ["mig_slices"], "asks for MIG instances (%s) but no MIG-capable GPU is left for "
                        "slicing%s" % (_describe_request(alloc),
                                       " (%d are given whole)" % len(taken) if taken else ""))
            return None
        # The counting rules first: they refuse an impossible request (400 slices) at once, where the
        # search would spend its whole step budget proving it.
        reason = _aggregate_reason(pool, items) or _pool_reason(pool, items)
        chosen = None
        if reason is None:
            try:
                chosen = pool.assign(items)
            except mig_placement.PlacementError as exc:
                reason = str(exc)
        if chosen is None:
            capacity = ", ".join("%s (%s)" % (gpu.dev["id"], gpu.model.name) for gpu in pool.devices)
            checker.add(base + ["mig_slices"], "the MIG request (%s) does not fit on the GPUs left for slicing: %s. "
                        "%s" % (_describe_request(alloc), capacity,
                                reason or "No assignment to GPUs satisfies the MIG placement rules "
                                "(memory-slice starts and sizes, per-GPU maximum counts); "
                                "see docs/gpu-plan.md"))
            return None
        for pos, assigned in enumerate(chosen):
            if not assigned:
                continue
            i = pool.devices[pos].index
            names = [name for _cluster, name in assigned]
            placed = mig_placement.solve(models[i], names)
            queue = dict((name, [c for c, n in assigned if n == name]) for name in names)
            dev_plans[i]["mode"] = "mig"
            dev_plans[i]["mig_devices"] = dict(Counter(names))
            for p in placed:
                cluster = queue[p.profile].pop(0)
                inst = {"profile": p.profile, "start": p.start, "size": p.size, "cluster": cluster, "node": None}
                dev_plans[i]["mig_layout"].append(inst)
                mig_by_cluster[cluster].append((i, inst))

    # 3. deal resources to nodes
    for cluster in CLUSTERS:
        resources = [("whole", i, None) for i in whole_by_cluster[cluster]] + \
                    [("mig", i, inst) for i, inst in mig_by_cluster[cluster]]
        gpu_nodes = [n for n in nodes if n.cluster == cluster and n.gpu_enabled]
        if resources and not gpu_nodes:
            key = "whole_gpus" if whole_by_cluster[cluster] else "mig_slices"
            checker.add(base + [key, cluster], "%d GPU resource%s allocated to the %s cluster but none of its nodes "
                        "has gpu_enabled: true" % (len(resources), " is" if len(resources) == 1 else "s are", cluster))
            continue
        if len(gpu_nodes) > len(resources):
            starved = gpu_nodes[len(resources):]
            checker.add(starved[0].config_path + ".gpu_enabled",
                        "%d %s node%s %s gpu_enabled but the plan gives the cluster only %d GPU resource%s "
                        "(whole_gpus.%s + mig_slices.%s); %s would get none: allocate more or set gpu_enabled: false"
                        % (len(gpu_nodes), cluster, "" if len(gpu_nodes) == 1 else "s",
                           "has" if len(gpu_nodes) == 1 else "have", len(resources),
                           "" if len(resources) == 1 else "s", cluster, cluster,
                           ", ".join(n.name for n in starved)))
            continue
        for k, (kind, i, inst) in enumerate(resources):
            node = gpu_nodes[k % len(gpu_nodes)]
            dev = dev_plans[i]
            if dev["hypervisor_host"] != node.hypervisor_host:
                checker.add(base + ["devices", i, "hypervisor_host"],
                            "%s is on hypervisor host %s but the plan gives it to %s, which runs on %s"
                            % (dev["id"], dev["hypervisor_host"], node.name, node.hypervisor_host))
            assignment = {
                "kind": kind, "gpu_id": dev["id"], "pci_address": dev["pci_address"], "model": dev["model"],
                "model_key": dev["model_key"], "profile": None, "placement_start": None,
                "placement_size": None, "slurm_gres_type": models[i].slurm_type,
            }
            if kind == "whole":
                dev["node"] = node.name
            else:
                inst["node"] = node.name
                assignment.update(profile=inst["profile"], placement_start=inst["start"],
                                  placement_size=inst["size"], slurm_gres_type=inst["profile"])
            plan["nodes"].setdefault(node.name, []).append(assignment)
    plan["devices"] = [dev_plans[i] for i in range(len(devices))]
    return plan
