# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""GPU metrics from the cluster's GPU plan: the assignment textfile of each node and the DCGM exporter's
configuration for nodes with real GPUs. Pure functions of the inventory's variables.

``hyperscaler_gpus`` (inventory: config/inventory.py node_gpus) lists, per node, the whole GPUs and MIG
slices the plan gives it: kind ``whole`` or ``mig``, gpu_id, pci_address, model, profile, placement,
slurm_gres_type, simulated, device_file. A MIG slice of a real plan (backend nvml) reaches the VM as a
MIG-backed vGPU (mdev) whose UUID is identity.mdev_uuid(<metadata.name>, <vm_name>, <index among the
node's slices>), the derivation vgpu_mdev and the VM definitions use (libvirt/specs.py gpu_devices).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import mdev_uuid
from ansible_collections.aihow.hyperscaler.plugins.module_utils.monitoring.slurm import escape_label

ASSIGNMENT_METRIC = "hyperscaler_gpu_assignment"
ASSIGNED_METRIC = "hyperscaler_gpu_assigned"


def gpu_assignments(gpus, cluster, vm_name):
    """The node's GPU assignments, each with its index on the node and, for a real MIG slice, its mdev UUID."""
    out = []
    mig_index = 0
    for index, gpu in enumerate(gpus or []):
        kind = gpu.get("kind")
        if kind not in ("whole", "mig"):
            raise ValueError("GPU assignment %d has kind %r (expected whole or mig)" % (index, kind))
        mdev = ""
        if kind == "mig":
            if not gpu.get("simulated"):
                mdev = mdev_uuid(cluster, vm_name, mig_index)
            mig_index += 1
        out.append(dict(gpu, index=index, mdev_uuid=mdev))
    return out


def assignment_textfile(gpus, cluster, node_name, vm_name):
    """The node exporter textfile (Prometheus text format) of the node's GPU assignments.

    One ``hyperscaler_gpu_assignment`` series (value 1) per whole GPU or MIG slice the plan assigns to the
    node, and ``hyperscaler_gpu_assigned`` (their count; 0 for a node without GPUs, so that the series
    exists on every node). The node's name is the label ``slurm_node`` here: Prometheus' own ``node``
    target label names the scraped host already.
    """
    base = [("lab", cluster), ("slurm_node", node_name), ("vm", vm_name)]
    lines = [
        "# HELP %s GPU resource of the cluster plan assigned to this node (whole GPU or MIG slice; 1 each)."
        % ASSIGNMENT_METRIC,
        "# TYPE %s gauge" % ASSIGNMENT_METRIC,
    ]
    items = gpu_assignments(gpus, cluster, vm_name)
    for gpu in items:
        labels = base + [
            ("index", gpu["index"]),
            ("kind", gpu["kind"]),
            ("gpu_id", gpu.get("gpu_id") or ""),
            ("pci_address", gpu.get("pci_address") or ""),
            ("model", gpu.get("model") or ""),
            ("profile", gpu.get("profile") or ""),
            ("placement_start", "" if gpu.get("placement_start") is None else gpu["placement_start"]),
            ("slurm_gres_type", gpu.get("slurm_gres_type") or ""),
            ("device_file", gpu.get("device_file") or ""),
            ("mdev_uuid", gpu["mdev_uuid"]),
            ("simulated", "true" if gpu.get("simulated") else "false"),
        ]
        lines.append("%s{%s} 1" % (ASSIGNMENT_METRIC, ",".join('%s="%s"' % (k, escape_label(v)) for k, v in labels)))
    lines += [
        "# HELP %s GPU resources (whole GPUs and MIG slices) the cluster plan assigns to this node." % ASSIGNED_METRIC,
        "# TYPE %s gauge" % ASSIGNED_METRIC,
        "%s{%s} %d" % (ASSIGNED_METRIC, ",".join('%s="%s"' % (k, escape_label(v)) for k, v in base), len(items)),
    ]
    return "\n".join(lines) + "\n"


# DCGM fields (dcgm-exporter's counters CSV: "field, Prometheus type, help"). Device-level fields hold for a
# whole GPU; on a MIG slice (a MIG-backed vGPU in the VM) utilisation and clocks of the whole GPU are not
# reported, DCGM's profiling fields (DCGM_FI_PROF_*) are per GPU instance instead.
DCGM_COMMON = (
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
)
DCGM_WHOLE = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
)
DCGM_MIG = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active (per GPU instance)."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles the device memory interface is active."),
)


def real_gpus(gpus):
    """The assignments of ``gpus`` that are real GPUs (a plan with backend nvml), not simulated ones."""
    return [g for g in gpus or [] if not g.get("simulated")]


def dcgm_counters(gpus):
    """[(field, type, help)] dcgm-exporter should collect on a node with these GPU assignments.

    Empty when the node has no real GPU (nothing to deploy). Whole GPUs add the device-level fields,
    MIG slices the per-instance profiling fields; the order is fixed so the file is stable.
    """
    real = real_gpus(gpus)
    if not real:
        return []
    kinds = set(g.get("kind") for g in real)
    fields = list(DCGM_COMMON)
    if "whole" in kinds:
        fields += DCGM_WHOLE
    if "mig" in kinds:
        fields += DCGM_MIG
    return fields


def dcgm_counters_csv(gpus):
    """The dcgm-exporter collectors file (``-f``/DCGM_EXPORTER_COLLECTORS) for these assignments; '' when none."""
    fields = dcgm_counters(gpus)
    if not fields:
        return ""
    lines = ["# Generated by aihow.hyperscaler from the cluster's GPU plan: %s." % ", ".join(
        "%s %s" % (g.get("kind"), g.get("profile") or g.get("model") or "") for g in real_gpus(gpus))]
    lines += ["# DCGM field, Prometheus type, help message"]
    lines += ["%s, %s, %s" % field for field in fields]
    return "\n".join(lines) + "\n"


def dcgm_exporter_environment(gpus, listen_address, collectors_path):
    """The dcgm-exporter service's environment file (its documented DCGM_EXPORTER_* variables); '' when none.

    Kubernetes pod mapping off (these are Slurm nodes or plain VMs); with MIG slices the exporter
    labels series by GPU instance (DCGM_EXPORTER_... has no switch for that: it is automatic).
    """
    if not real_gpus(gpus):
        return ""
    lines = [
        "# Generated by aihow.hyperscaler from the cluster's GPU plan (%d GPU resource(s))." % len(real_gpus(gpus)),
        'DCGM_EXPORTER_LISTEN="%s"' % listen_address,
        'DCGM_EXPORTER_COLLECTORS="%s"' % collectors_path,
        'DCGM_EXPORTER_KUBERNETES="false"',
        # Every GPU (and, with MIG, every GPU instance) the VM sees: the plan gave all of them to this node.
        'DCGM_EXPORTER_DEVICES_STR="f"',
    ]
    return "\n".join(lines) + "\n"
