# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Filters gpu_assignment_textfile, dcgm_counters_csv, dcgm_exporter_env: GPU monitoring files from the GPU plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.aihow.hyperscaler.plugins.module_utils.monitoring import gpu as gpu_metrics


def _gpus(value, name):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s expects the list hyperscaler_gpus, got %r" % (name, value))
    for item in value:
        if not isinstance(item, dict):
            raise AnsibleFilterError("%s: every GPU assignment is a dict, got %r" % (name, item))
    return list(value)


def gpu_assignment_textfile(gpus, cluster, node_name, vm_name):
    """The node exporter textfile of the node's GPU assignments (module_utils/monitoring/gpu.py)."""
    try:
        return gpu_metrics.assignment_textfile(_gpus(gpus, "gpu_assignment_textfile"), cluster, node_name, vm_name)
    except ValueError as exc:
        raise AnsibleFilterError("gpu_assignment_textfile: %s" % exc)


def dcgm_counters_csv(gpus):
    """dcgm-exporter's collectors CSV for the node's real GPUs ('' without any)."""
    return gpu_metrics.dcgm_counters_csv(_gpus(gpus, "dcgm_counters_csv"))


def dcgm_exporter_env(gpus, listen_address, collectors_path):
    """dcgm-exporter's environment file for the node's real GPUs ('' without any)."""
    return gpu_metrics.dcgm_exporter_environment(_gpus(gpus, "dcgm_exporter_env"), listen_address, collectors_path)


class FilterModule(object):
    def filters(self):
        return {
            "gpu_assignment_textfile": gpu_assignment_textfile,
            "dcgm_counters_csv": dcgm_counters_csv,
            "dcgm_exporter_env": dcgm_exporter_env,
        }
