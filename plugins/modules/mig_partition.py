#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: mig_partition
short_description: Partition NVIDIA GPUs into MIG instances at explicit placements
version_added: "0.1.0"
description:
  - Sets the MIG mode of the host's GPUs and creates the GPU instances (GIs) and compute instances (CIs)
    wanted, each GI at an explicit memory-slice placement.
  - Takes either a mig-parted config (I(mig_config) or I(mig_config_file) with I(selected_config)) or the
    per-GPU layout of the cluster.yaml GPU plan (I(layout)).
  - Unlike mig-parted, the placement is part of the state, so a run is idempotent on placements too.
    Instances that already exist stay in place whenever the target allows it.
  - Order of work is mode first, then for each GPU unwanted CIs, unwanted GIs, new GIs and their CIs.
    If a step fails midway, the steps already done are undone, which restores the prior layout, and
    then the task fails. A mode change or a reset is not undone.
  - A MIG mode change becomes current only after a GPU reset. The module resets a GPU only when
    I(allow_reset=true) and the GPU runs no processes. Otherwise it reports the GPU in C(reset_required),
    and it fails when instances are wanted on it.
  - The applied layout is written to I(persist_path) so that a boot-time unit can re-apply it,
    because MIG instances do not survive a reboot.
author:
  - aihow engineering (@aihow)
options:
  mig_config:
    description:
      - "A mig-parted config as a mapping (C(version: v1), C(mig-configs)). It is validated as mig-parted does:
        only C(v1) is accepted, unknown keys are errors, a non-empty C(mig-devices) map with all counts zero is
        rejected, and C(mig-devices) must be empty when C(mig-enabled) is false."
      - Every entry whose C(device-filter) (C(0xDDDDVVVV[:0xSSSSVVVV])) and C(devices) (C(all) or a list of
        GPU indices) match a GPU is applied to it. When several entries match, the last one wins, as in mig-parted.
        An entry that matches no GPU is reported in C(unmatched_entries) and in a warning.
      - Compute-instance forms such as C(1c.2g.20gb) are supported. Consecutive entries with the same GI profile
        share the GI while its compute slices last, so C(1c.2g.20gb) with count 2 gives one 2g GI with two 1c CIs.
    type: dict
  mig_config_file:
    description:
      - Path of a mig-parted config file (YAML or JSON, UTF-8) on the managed host. Use it instead of I(mig_config).
    type: path
  selected_config:
    description: The label under C(mig-configs) to apply. It is required with I(mig_config) or I(mig_config_file).
    type: str
  layout:
    description:
      - The per-GPU layout from the cluster.yaml GPU plan. Each instance's placement is honoured exactly.
      - A GPU that is not listed is left alone.
    type: list
    elements: dict
    suboptions:
      pci_address:
        description: PCI address of the GPU, for example C(0000:65:00.0). The domain may be left out.
        type: str
        required: true
      mig_enabled:
        description: Wanted MIG mode. The default is true when I(instances) is not empty.
        type: bool
      instances:
        description: GPU instances, in the plan's C(mig_layout) shape.
        type: list
        elements: dict
        default: []
        suboptions:
          profile:
            description: GI profile name, for example C(3g.40gb).
            type: str
            required: true
          start:
            description: First memory slice. When it is left out, a start is computed.
            type: int
          size:
            description: Memory slices. It is checked against the profile when given.
            type: int
          compute_instances:
            description: CI names, for example C([1c.3g.40gb, 2c.3g.40gb]). The default is one CI that spans the GI.
            type: list
            elements: str
          cluster:
            description: Informational (from the plan). It is ignored.
            type: str
          node:
            description: Informational (from the plan). It is ignored.
            type: str
  allow_reset:
    description: Reset a GPU whose MIG mode change is pending. The module does this only when the GPU runs no processes.
    type: bool
    default: false
  backend:
    description: C(nvml) uses the real driver through nvidia-ml-py. C(simulator) uses the JSON state file in I(simulator_state).
    type: str
    choices: [nvml, simulator]
    default: nvml
  simulator_state:
    description:
      - State file of the NVML simulator. It is required with I(backend=simulator).
      - When it does not exist it is created from I(simulator_spec); an existing file that is not the simulator's
        JSON state fails the task, naming the file and what is wrong.
    type: path
  simulator_spec:
    description:
      - "GPUs for a new simulator state file, for example C([{model: A100-80GB, pci_address: 0000:65:00.0}])."
      - C(model) is a catalog model key, name or PCI device id; a variant's name (C(NVIDIA H200 NVL)) or id gives
        that variant's PCI device id and name. A model the catalog does not know fails the task, listing the known ones.
    type: list
    elements: raw
  persist_path:
    description:
      - Where the applied layout is saved for re-application at boot. An empty string disables saving.
      - A path that cannot be written (a directory, or below a regular file) fails the task, in check mode too.
    type: str
    default: /etc/aihow-hyperscaler/mig-layout.json
notes:
  - Check mode and diff mode are supported. The diff shows each GPU's mode and instances (profile, placement and CIs).
  - Requires nvidia-ml-py and root with I(backend=nvml). A reset runs C(nvidia-smi -r -i <bus id>).
requirements:
  - nvidia-ml-py (only for I(backend=nvml))
seealso:
  - module: aihow.hyperscaler.gpu_discovery
"""

EXAMPLES = r"""
- name: Apply a mig-parted config label
  aihow.hyperscaler.mig_partition:
    mig_config:
      version: v1
      mig-configs:
        balanced:
          - device-filter: ["0x20B210DE"]
            devices: all
            mig-enabled: true
            mig-devices: {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}
    selected_config: balanced
    allow_reset: true

- name: Apply the plan's layout (explicit placements)
  aihow.hyperscaler.mig_partition:
    layout:
      - pci_address: "0000:65:00.0"
        instances:
          - {profile: 3g.40gb, start: 0, size: 4}
          - {profile: 2g.20gb, start: 4, size: 2}
          - {profile: 1g.10gb, start: 6, size: 1}
    allow_reset: true

- name: Try it against the simulator
  aihow.hyperscaler.mig_partition:
    backend: simulator
    simulator_state: /tmp/nvml-sim.json
    simulator_spec: [{model: A100-80GB, pci_address: "0000:65:00.0", mig_enabled: true}]
    persist_path: /tmp/mig-layout.json
    layout:
      - pci_address: "0000:65:00.0"
        instances: [{profile: 7g.80gb, start: 0}]
"""

RETURN = r"""
gpus:
  description: Layout of each GPU the run touched, after the run (predicted in check mode, where ids are null).
  returned: always
  type: list
  elements: dict
  contains:
    index: {description: NVML index., type: int}
    pci_address: {description: PCI address., type: str}
    uuid: {description: GPU UUID., type: str}
    model: {description: Catalog model name., type: str}
    mig_capable: {description: Whether the GPU supports MIG., type: bool}
    mig_enabled: {description: Current MIG mode., type: bool}
    mig_pending: {description: "Pending MIG mode when it differs from the current one, else null.", type: bool}
    instances:
      description: GPU instances with C(profile), C(start), C(size), C(gi_id) and C(compute_instances)
        (C(ci_id), C(profile), C(compute_slices) and C(uuid), the MIG device UUID).
      type: list
      elements: dict
  sample:
    - {index: 0, pci_address: "0000:65:00.0", model: NVIDIA A100 80GB, mig_enabled: true, mig_pending: null,
       instances: [{profile: 3g.40gb, start: 0, size: 4, gi_id: 2,
                    compute_instances: [{ci_id: 0, profile: 3g.40gb, compute_slices: 3, uuid: "MIG-..."}]}]}
actions:
  description: The steps taken (or, in check mode, that would be taken).
  returned: always
  type: list
  elements: str
reset_required:
  description: PCI addresses of GPUs whose MIG mode change waits for a reset.
  returned: always
  type: list
  elements: str
persist_path:
  description: The layout file written (null when disabled).
  returned: always
  type: str
unmatched_entries:
  description:
    - Entries of the selected mig-parted config whose C(device-filter) and C(devices) select no GPU on this host,
      so they were not applied (mig-parted skips them silently). A warning names them too. Empty with I(layout).
  returned: always
  type: list
  elements: dict
  contains:
    entry: {description: "Which entry, for example C(mig-configs.balanced[1]).", type: str}
    selects: {description: Its device filter and devices., type: str}
  sample: [{entry: "mig-configs.balanced[1]", selects: "device-filter [0x233010DE], devices all"}]
restored:
  description: On failure midway, the layouts after the rollback.
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import converge as mig_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import parted as mig_parted
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import persistence as mig_persistence
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import HyperscalerModule, ModuleResult
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    BackendInputError, NvmlError)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.factory import make_backend

_INSTANCE = dict(
    profile=dict(type="str", required=True), start=dict(type="int"), size=dict(type="int"),
    compute_instances=dict(type="list", elements="str"), cluster=dict(type="str"), node=dict(type="str"))


class MigPartition(HyperscalerModule):
    argument_spec = dict(
        mig_config=dict(type="dict"),
        mig_config_file=dict(type="path"),
        selected_config=dict(type="str"),
        layout=dict(type="list", elements="dict", options=dict(
            pci_address=dict(type="str", required=True), mig_enabled=dict(type="bool"),
            instances=dict(type="list", elements="dict", default=[], options=_INSTANCE))),
        allow_reset=dict(type="bool", default=False),
        backend=dict(type="str", choices=["nvml", "simulator"], default="nvml"),
        simulator_state=dict(type="path"),
        simulator_spec=dict(type="list", elements="raw"),
        persist_path=dict(type="str", default=mig_persistence.DEFAULT_PERSIST_PATH),
    )
    mutually_exclusive = [("mig_config", "mig_config_file", "layout")]
    required_one_of = [("mig_config", "mig_config_file", "layout")]
    required_if = [("backend", "simulator", ("simulator_state",))]

    def _mig_config(self):
        p = self.params
        if p["layout"] is not None:
            return None
        if not p["selected_config"]:
            raise HyperscalerError("selected_config is required with mig_config or mig_config_file")
        if p["mig_config"] is not None:
            return p["mig_config"]
        return mig_parted.load_mig_parted_file(p["mig_config_file"], "mig_config_file")

    def logic(self):
        p = self.params
        config = self._mig_config()
        try:
            backend = make_backend(p["backend"], p["simulator_state"], p["simulator_spec"], check_mode=self.check_mode)
            backend.init()
        except BackendInputError as exc:
            raise HyperscalerError(exc.msg)  # names simulator_state / simulator_spec already
        except NvmlError as exc:
            raise HyperscalerError("cannot open NVML (%s backend): %s" % (p["backend"], exc.msg))
        try:
            result = mig_converge.run(backend, mig_config=config, selected_config=p["selected_config"],
                                      layout=p["layout"], check_mode=self.check_mode, allow_reset=p["allow_reset"],
                                      persist_path=p["persist_path"] or None)
        except NvmlError as exc:
            raise HyperscalerError("NVML call failed: %s" % exc.msg, nvml_error=type(exc).__name__)
        finally:
            try:
                backend.shutdown()
            except NvmlError:
                pass
        for warning in result["warnings"]:
            self.module.warn(warning)
        before = dict((g["pci_address"], mig_converge.diff_view(g)) for g in result["before"])
        after = dict((g["pci_address"], mig_converge.diff_view(g)) for g in result["after"])
        return ModuleResult(
            changed=result["changed"] or result["persist_changed"], before=before, after=after,
            gpus=result["after"], actions=result["actions"], reset_required=result["reset_required"],
            persist_path=p["persist_path"] or None, unmatched_entries=result["unmatched_entries"])


def main():
    MigPartition().run()


if __name__ == "__main__":
    main()
