# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Human-readable and JSON views of a validated cluster.yaml.

Shared by the ``cluster_config`` module (returned as ``report``) and by the command-line validator
(config/cli.py, ``scripts/hyperscaler-config``) so both print the same thing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _slice_map(device, memory_slices):
    """One character per memory slice: which instance (a, b, ...) occupies it, '.' if free."""
    cells = ["."] * memory_slices
    for k, inst in enumerate(device["mig_layout"]):
        for s in range(inst["start"], inst["start"] + inst["size"]):
            cells[s] = "abcdefghijklmnopqrstuvwxyz"[k % 26]
    return "".join(cells)


def summary(config):
    """A JSON-able summary: nodes with resources and GPUs, devices with their layout."""
    nodes = []
    for n in config.nodes:
        nodes.append({"name": n.name, "cluster": n.cluster, "role": n.role, "cpu_cores": n.cpu_cores,
                      "memory_gb": n.memory_gb, "disk_gb": n.disk_gb, "ip_address": n.ip_address,
                      "hypervisor_host": n.hypervisor_host,
                      "gpus": config.plan["nodes"].get(n.name, [])})
    return {"name": config.name, "description": config.data["metadata"]["description"],
            "source": config.source, "nodes": nodes,
            "gpu_strategy": config.plan["strategy"], "gpu_backend": config.plan["backend"],
            "gpu_devices": config.plan["devices"]}


def render_text(config):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import MODELS_BY_KEY

    description = config.data["metadata"]["description"]
    lines = ["%s: valid (%d nodes)" % (config.source, len(config.nodes))] + ([description] if description else []) + [
        "", "%-24s %-14s %5s %8s %7s  %-15s %s" % ("NODE", "ROLE", "vCPU", "MEM GiB", "DISK", "ADDRESS", "GPUS")]
    for n in config.nodes:
        gpus = ", ".join(
            "%s:%s@%s" % (g["gpu_id"], g["profile"], g["placement_start"]) if g["kind"] == "mig"
            else "%s (whole)" % g["gpu_id"] for g in config.plan["nodes"].get(n.name, [])) or "-"
        lines.append("%-24s %-14s %5d %8s %7d  %-15s %s" % (n.name, n.role, n.cpu_cores, n.memory_gb, n.disk_gb,
                                                            n.ip_address, gpus))
    devices = config.plan["devices"]
    if devices:
        lines += ["", "GPU plan (strategy %s, backend %s):" % (config.plan["strategy"], config.plan["backend"])]
        for d in devices:
            model = MODELS_BY_KEY[d["model_key"]]
            if d["mode"] == "mig":
                layout = ", ".join("%s@%d:%d->%s" % (i["profile"], i["start"], i["size"], i["node"])
                                   for i in d["mig_layout"])
                slices = _slice_map(d, model.memory_slices)
                lines.append("  %-8s %-13s %-22s MIG [%s] %s" % (d["id"], d["pci_address"], model.name, slices, layout))
            elif d["mode"] == "whole":
                lines.append("  %-8s %-13s %-22s whole -> %s" % (d["id"], d["pci_address"], model.name, d["node"]))
            else:
                lines.append("  %-8s %-13s %-22s unused" % (d["id"], d["pci_address"], model.name))
    return "\n".join(lines)
