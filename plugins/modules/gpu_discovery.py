#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_discovery
short_description: Discover NVIDIA GPUs through NVML and PCI sysfs
version_added: "0.1.0"
description:
  - Lists the host's NVIDIA GPUs by joining NVML (real or simulated) with PCI sysfs (C(<sysfs_root>/sys/bus/pci/devices)).
  - Returns them in the C(global.gpu_allocation.devices) shape of cluster.yaml (C(id), C(pci_address), C(model),
    C(mig_capable), C(allowed_mig_profiles)), plus facts such as memory, MIG mode (current and pending),
    bound driver, IOMMU group and SR-IOV VFs.
  - Without NVML (no driver, no nvidia-ml-py), sysfs alone is used. C(nvml_available) is then false and
    C(nvml_error) says why.
  - Never changes anything. C(changed) is always false, and check mode is safe.
author:
  - aihow engineering (@aihow)
options:
  backend:
    description: C(nvml) uses the real driver, C(simulator) uses the simulator state in I(simulator_state), and C(none) reads sysfs only.
    type: str
    choices: [nvml, simulator, none]
    default: nvml
  simulator_state:
    description:
      - State file of the NVML simulator. It is required with I(backend=simulator).
      - A file that is missing or not the simulator's JSON state fails the task (naming the file); it does not
        fall back to sysfs, which happens only when NVML itself cannot be used.
    type: path
  sysfs_root:
    description:
      - Root under which C(sys/bus/pci/devices) is read. Use it for tests and chroots.
      - It must be an existing directory; otherwise the task fails rather than report no GPUs.
    type: path
    default: /
  id_prefix:
    description: Prefix of the generated device ids (C(GPU-0), C(GPU-1), ... in PCI address order).
    type: str
    default: GPU-
"""

EXAMPLES = r"""
- name: Discover GPUs
  aihow.hyperscaler.gpu_discovery:
  register: gpus

- name: Show them in cluster.yaml shape
  ansible.builtin.debug:
    msg: "{{ gpus.devices | map('dict2items') | list }}"
"""

RETURN = r"""
devices:
  description: One entry per GPU, in PCI address order.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Generated id (I(id_prefix) + position)., type: str}
    pci_address: {description: Normalised PCI address., type: str}
    model: {description: Catalog model name (or the NVML name for unknown models)., type: str}
    mig_capable: {description: Whether the GPU supports MIG., type: bool}
    allowed_mig_profiles: {description: MIG profiles of the model (only when MIG capable)., type: list, elements: str}
    facts: {description: "model_key, pci_device_id, nvml_index, uuid, name, memory_mb, mig_mode {current, pending},
      driver, iommu_group, sriov {total_vfs, num_vfs}, sources.", type: dict}
  sample:
    - {id: GPU-0, pci_address: "0000:65:00.0", model: NVIDIA A100 80GB, mig_capable: true,
       allowed_mig_profiles: [1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb],
       facts: {driver: nvidia, iommu_group: 42, mig_mode: {current: enabled, pending: enabled}}}
nvml_available:
  description: Whether NVML answered.
  returned: always
  type: bool
nvml_error:
  description: Why NVML could not be used (null when it could).
  returned: always
  type: str
"""

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import discovery as gpu_discovery
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import HyperscalerModule, ModuleResult
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    BackendInputError, NvmlError)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.factory import make_backend


class GpuDiscovery(HyperscalerModule):
    argument_spec = dict(
        backend=dict(type="str", choices=["nvml", "simulator", "none"], default="nvml"),
        simulator_state=dict(type="path"),
        sysfs_root=dict(type="path", default="/"),
        id_prefix=dict(type="str", default="GPU-"),
    )
    required_if = [("backend", "simulator", ("simulator_state",))]

    def logic(self):
        p = self.params
        backend, error = None, None
        if p["backend"] != "none":
            try:
                backend = make_backend(p["backend"], p["simulator_state"])
            except BackendInputError as exc:
                # A bad simulator state is the task's input, not a host without NVML: fail, do not fall back.
                raise HyperscalerError(exc.msg)
            except NvmlError as exc:
                error = exc.msg
        try:
            found = gpu_discovery.discover(backend, p["sysfs_root"], p["id_prefix"])
        except BackendInputError as exc:
            raise HyperscalerError(exc.msg)
        if error:
            found["nvml_error"] = error
        return ModuleResult(changed=False, **found)


def main():
    GpuDiscovery().run()


if __name__ == "__main__":
    main()
