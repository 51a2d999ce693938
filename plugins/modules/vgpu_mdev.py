#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vgpu_mdev
short_description: Create, persist and remove NVIDIA vGPU devices (mdev or vendor-specific VFIO)
version_added: "0.1.0"
description:
  - Manages NVIDIA vGPU devices on a KVM host through sysfs, for both host styles, detected per parent.
  - C(mdev) hosts (vGPU up to 16; A100/A30 on SR-IOV, where the VFs are the mdev parents) get an mdev
    per device, created by writing its UUID to C(mdev_supported_types/<type>/create), and a
    persistent mdevctl definition in C(/etc/mdevctl.d/<parent>/<uuid>) so C(mdevctl list -d) shows it.
  - C(vendor-vfio) hosts (vGPU 17+, Ada/Hopper/Blackwell) get a vGPU per SR-IOV VF, created by writing
    the type id to C(nvidia/current_vgpu_type); the VF is then the PCI device handed to the VM.
  - Everything is validated before anything changes (parents, types, free instances, devices in use).
    When a creation fails midway, the devices created by this run are removed again (and the ones it
    removed are re-created) before the task fails.
  - A device that a running VM holds open (a process has its C(/dev/vfio/<group>) or VFIO cdev open)
    is never removed; the task fails instead and names the process.
  - Devices this module creates are recorded in C(<sysfs_root>/var/lib/aihow-hyperscaler/vgpu.json),
    because mdevctl's definition schema has no room for an owner; I(exclusive) only removes devices
    listed there.
author:
  - aihow engineering (@aihow)
options:
  devices:
    description:
      - The vGPU devices wanted (I(state=present)) or to remove (I(state=absent)).
      - A name that appears more than once gets one device per occurrence (index 0, 1, ...).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Owner of the device, usually the VM or node name; with I(cluster) and the index it
          gives the stable UUID.
        type: str
        required: true
      parent:
        description:
          - PCI address of the parent, e.g. C(0000:41:00.0) (the domain may be left out).
          - An mdev parent or a VF is used as given; for an SR-IOV PF a free VF is picked, the first
            one in C(virtfnN) order that can take the type (deterministic).
          - Required with I(state=present).
        type: str
      type:
        description:
          - vGPU type, by type id (C(nvidia-558), C(1414)) or by vGPU name (C(A100-4C), C(NVIDIA A100-4C)).
          - Required with I(state=present).
        type: str
      uuid:
        description:
          - mdev UUID. Default is C(stable_uuid(cluster, name, index)), so re-runs and rebuilds give
            the same UUID. On vendor-vfio hosts it is the key of the ownership record.
        type: str
      start:
        description: mdevctl start mode persisted with the definition (C(auto) starts it at boot).
        type: str
        choices: [auto, manual]
        default: auto
  cluster:
    description: Cluster name, part of the stable UUIDs and the scope of I(exclusive).
    type: str
    default: hyperscaler
  state:
    description: C(present) creates (or corrects) the devices; C(absent) removes them and their definitions.
    type: str
    choices: [present, absent]
    default: present
  persist:
    description:
      - Write mdevctl definitions for mdev devices. With C(false) existing definitions are left alone.
      - vendor-vfio devices have no mdevctl definition; their start mode is kept in the ownership record.
    type: bool
    default: true
  exclusive:
    description: With I(state=present), also remove devices of the same I(cluster) that this module
      created earlier and that are no longer listed. Devices it did not create are never touched.
    type: bool
    default: false
  sysfs_root:
    description: Root under which C(sys/), C(etc/mdevctl.d) and C(var/lib) are used; tests and the GPU
      simulator point it at a generated tree. It must be an existing directory.
    type: path
    default: /
  proc_root:
    description: Where to look for processes holding the devices open. Default C(/proc) when
      I(sysfs_root=/), else C(<sysfs_root>/proc). When given it must be an existing directory, since a missing
      one would skip the in-use check.
    type: path
  simulate:
    description:
      - Apply the kernel's side effects of each sysfs write to the tree (see vgpu_sysfs_sim), for playbooks
        run against a simulated tree. Refused with I(sysfs_root=/).
    type: bool
    default: false
notes:
  - Supports check mode (plans and reports, changes nothing) and diff mode (device list before/after).
  - Needs root on a real host (sysfs writes, reading C(/proc/*/fd)).
  - MIG-backed types (e.g. C(A100-1-5C)) need MIG mode enabled and GPU instances created first.
seealso:
  - name: mdevctl
    description: Persistent mediated device management.
    link: https://github.com/mdevctl/mdevctl
"""

EXAMPLES = r"""
- name: One A100-4C per compute node (SR-IOV A100, VFs picked automatically)
  aihow.hyperscaler.vgpu_mdev:
    cluster: lab
    devices:
      - {name: hpc-compute-01, parent: "0000:41:00.0", type: A100-4C}
      - {name: hpc-compute-02, parent: "0000:41:00.0", type: nvidia-558}
  register: vgpus

- name: Hopper host with vGPU 17 (vendor-specific VFIO), keep only what is listed
  aihow.hyperscaler.vgpu_mdev:
    cluster: lab
    exclusive: true
    devices:
      - {name: k8s-gpu-01, parent: "0000:c1:00.0", type: "NVIDIA H200X-35C", start: manual}

- name: Remove a node's vGPU
  aihow.hyperscaler.vgpu_mdev:
    cluster: lab
    state: absent
    devices:
      - {name: hpc-compute-02}

- name: Against the GPU simulator's tree
  aihow.hyperscaler.vgpu_mdev:
    cluster: lab
    sysfs_root: /var/lib/hyperscaler-sim
    simulate: true
    devices:
      - {name: hpc-compute-01, parent: "0000:3b:00.0", type: V100DX-2Q}
"""

RETURN = r"""
devices:
  description: The requested devices as they are (or, in check mode, would be) after the run.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Owner name., type: str, returned: always, sample: hpc-compute-01}
    index: {description: Occurrence of the name in I(devices)., type: int, returned: always, sample: 0}
    uuid: {description: Stable UUID (the mdev UUID on mdev hosts)., type: str, returned: always,
           sample: 7cf938d0-7189-5c27-a144-3ca3617823ef}
    style: {description: "C(mdev) or C(vendor-vfio).", type: str, returned: state=present, sample: mdev}
    parent: {description: Requested parent (normalised)., type: str, returned: state=present, sample: "0000:41:00.0"}
    address: {description: "Where the device lives: the mdev parent or the VF.", type: str, returned: state=present,
              sample: "0000:41:00.4"}
    pf: {description: Physical function when I(address) is a VF., type: str, returned: state=present,
         sample: "0000:41:00.0"}
    type: {description: Type id., type: str, returned: state=present, sample: nvidia-558}
    type_name: {description: vGPU type name., type: str, returned: state=present, sample: NVIDIA A100-4C}
    short_name: {description: Last token of the name., type: str, returned: state=present, sample: A100-4C}
    start: {description: Start mode., type: str, returned: state=present, sample: auto}
    persisted: {description: Whether an mdevctl definition exists for it., type: bool, returned: state=present}
    hostdev:
      description: What libvirt needs; C(type=mdev) with the UUID, or C(type=pci) with the VF address,
        plus a ready C(<hostdev>) XML snippet.
      type: dict
      returned: state=present
      sample: {type: mdev, model: vfio-pci, uuid: 7cf938d0-7189-5c27-a144-3ca3617823ef}
    removed: {description: Whether a device was removed., type: bool, returned: state=absent}
removed:
  description: Devices removed by this run (absent, exclusive, or re-created with another type/parent).
  returned: always
  type: list
  elements: dict
  sample: [{id: 0000:c1:00.5, style: vendor-vfio, type: "1432", reason: exclusive}]
"""

import os

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import HyperscalerModule, ModuleResult
from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu.sysfs import (
    VgpuManager, VgpuSysfs, check_roots, device_view, predicted_view, wanted_devices)


class VgpuMdevModule(HyperscalerModule):
    argument_spec = dict(
        devices=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            parent=dict(type="str"),
            type=dict(type="str"),
            uuid=dict(type="str"),
            start=dict(type="str", choices=["auto", "manual"], default="auto"),
        )),
        cluster=dict(type="str", default="hyperscaler"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        persist=dict(type="bool", default=True),
        exclusive=dict(type="bool", default=False),
        sysfs_root=dict(type="path", default="/"),
        proc_root=dict(type="path"),
        simulate=dict(type="bool", default=False),
    )

    def logic(self):
        p = self.params
        writer = None
        check_roots(p["sysfs_root"], p["proc_root"])
        if p["simulate"]:
            if os.path.abspath(p["sysfs_root"]) == "/":
                raise HyperscalerError("simulate=true needs sysfs_root pointing at a simulated tree, not /")
            # only a simulated run needs the simulator; keep it out of the production path
            from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu.simulator import SimSysfsWriter
            writer = SimSysfsWriter(p["sysfs_root"])
        sysfs = VgpuSysfs(p["sysfs_root"], proc_root=p["proc_root"], writer=writer)
        manager = VgpuManager(sysfs, p["cluster"])
        wants = wanted_devices(p["devices"], p["cluster"], need_placement=p["state"] == "present")
        plan = manager.plan(wants, state=p["state"], persist=p["persist"], exclusive=p["exclusive"])
        snap = plan.snapshot
        before = device_view(snap["devices"], snap["defs"], snap["record"])
        removed = [{"id": d.key, "style": d.style, "parent": d.parent, "type": d.type_id, "reason": why}
                   for d, why in plan.removals]
        if self.check_mode or not plan.changed:
            after = predicted_view(plan)
        else:
            manager.apply(plan)
            now = manager.snapshot()
            after = device_view(now["devices"], now["defs"], now["record"])
        return ModuleResult(plan.changed, {"devices": before}, {"devices": after},
                            devices=plan.results, removed=removed)


def main():
    VgpuMdevModule().run()


if __name__ == "__main__":
    main()
