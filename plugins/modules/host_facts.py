#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_facts
short_description: Read-only facts of a hypervisor host (KVM, IOMMU, VFIO, nouveau, libvirt, resources), optionally checked
version_added: "0.1.0"
description:
  - Reads CPU virtualisation flags, whether KVM is really usable (C(/dev/kvm) opens read-write B(and) the CPU shows
    vmx or svm, the same decision as M(aihow.hyperscaler.libvirt_cluster)), the IOMMU state from the kernel
    (C(/sys/kernel/iommu_groups), C(/sys/class/iommu) and the DMAR/AMD-Vi lines of the kernel log), nouveau and
    VFIO modules, libvirt access, memory and free disk space.
  - With O(needs), evaluates them against what the cluster needs and returns RV(failures) (each with a remediation)
    and RV(warnings_found) (the cluster still runs, e.g. under TCG); warnings are also emitted as Ansible warnings.
    The module never fails because of a check; the caller decides (the role aihow.hyperscaler.host_prereqs does).
  - Changes nothing.
author:
  - aihow engineering (@aihow)
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing is changed, so there is no diff.
    support: none
options:
  pool_path:
    description:
      - Where the VM overlays go (free space is measured there, or at its nearest existing parent).
      - A regular file there, or above it, fails the task (the pool directory could not be created).
    type: path
    default: /var/lib/libvirt/images
  needs:
    description:
      - What the VMs on this host need; without it only facts are returned.
      - Sizes and counts must be 0 or more and I(needs.cpu_overcommit) greater than 0; other values fail the task.
    type: dict
    suboptions:
      vms:
        description: Number of VMs.
        type: int
        default: 0
      vcpus:
        description: Sum of their vCPUs.
        type: int
        default: 0
      memory_mb:
        description: Sum of their memory in MiB.
        type: int
        default: 0
      disk_gb:
        description: Sum of their disk sizes in GiB.
        type: int
        default: 0
      gpu_passthrough:
        description: Whether real GPUs (not simulated ones) are passed to VMs on this host.
        type: bool
        default: false
      accelerator:
        description: The cluster's C(hypervisor.accelerator).
        type: str
        choices: [auto, kvm, tcg]
        default: auto
      tcg_tb_cache_mb:
        description: TCG translation cache per VM.
        type: int
        default: 128
      cpu_overcommit:
        description: vCPUs allowed per host CPU.
        type: float
        default: 4
      reserved_memory_gb:
        description: Host memory kept back from VMs.
        type: float
        default: 2
      lab_mode:
        description: The cluster's C(hypervisor.lab_mode).
        type: str
        choices: [auto, enabled, disabled]
        default: auto
  proc_root:
    description: Root of the proc filesystem (tests point it at a fake tree). It must be an existing directory.
    type: path
    default: /proc
  sys_root:
    description: Root of sysfs (tests point it at a fake tree). It must be an existing directory.
    type: path
    default: /sys
  kvm_path:
    description: The KVM device.
    type: path
    default: /dev/kvm
  modprobe_dir:
    description: modprobe configuration directory searched for C(blacklist nouveau).
    type: path
    default: /etc/modprobe.d
  dmesg_path:
    description:
      - A file holding the kernel log; default run C(dmesg) (an empty log when that is not permitted).
      - When given it must be a readable file; bytes that are not UTF-8 are read as replacement characters.
    type: path
notes:
  - The IOMMU is judged by the kernel's IOMMU groups and units, never by a substring of C(/proc/cmdline).
"""

EXAMPLES = r"""
- name: Facts only
  aihow.hyperscaler.host_facts:
  register: host_check

- name: Checked against three 1 GiB TCG guests
  aihow.hyperscaler.host_facts:
    pool_path: /var/lib/libvirt/images/hyperscaler
    needs: {vms: 3, vcpus: 3, memory_mb: 3072, disk_gb: 24, accelerator: auto}
  register: host_check

- name: Stop on what cannot work
  ansible.builtin.fail:
    msg: "{{ host_check.failures | map(attribute='msg') | join('; ') }}"
  when: host_check.failures | length > 0
"""

RETURN = r"""
host:
  description: The facts.
  returned: always
  type: dict
  contains:
    cpu:
      description: vendor, logical_cpus, virt_flags (vmx/svm found).
      type: dict
    kvm:
      description: usable, accelerator (kvm|tcg), reason, device_exists.
      type: dict
    iommu:
      description: enabled (IOMMU groups exist), groups, units, driver (intel|amd|null), log (matching kernel lines).
      type: dict
    modules:
      description: nouveau_loaded, nouveau_blacklisted, nouveau_blacklist_files, vfio (module -> loaded or built in).
      type: dict
    memory:
      description: total_mb, available_mb.
      type: dict
    disk:
      description: path, measured_at, free_gb.
      type: dict
    libvirt:
      description: socket (the answering libvirt socket or null), served, libvirtd and qemu (paths or null).
      type: dict
  sample:
    kvm: {usable: false, accelerator: tcg, reason: "TCG software emulation is used because ...", device_exists: true}
failures:
  description: Checks the cluster cannot run with (check, msg, remediation); empty without O(needs).
  returned: always
  type: list
  elements: dict
warnings_found:
  description: Degraded but workable (check, msg), also emitted as warnings.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import checks as host_checks
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import (
    HyperscalerModule,
    ModuleResult,
)


class HostFactsModule(HyperscalerModule):
    argument_spec = dict(
        pool_path=dict(type="path", default="/var/lib/libvirt/images"),
        needs=dict(type="dict", options=dict(
            vms=dict(type="int", default=0),
            vcpus=dict(type="int", default=0),
            memory_mb=dict(type="int", default=0),
            disk_gb=dict(type="int", default=0),
            gpu_passthrough=dict(type="bool", default=False),
            accelerator=dict(type="str", choices=["auto", "kvm", "tcg"], default="auto"),
            tcg_tb_cache_mb=dict(type="int", default=128),
            cpu_overcommit=dict(type="float", default=4),
            reserved_memory_gb=dict(type="float", default=2),
            lab_mode=dict(type="str", choices=["auto", "enabled", "disabled"], default="auto"),
        )),
        proc_root=dict(type="path", default="/proc"),
        sys_root=dict(type="path", default="/sys"),
        kvm_path=dict(type="path", default="/dev/kvm"),
        modprobe_dir=dict(type="path", default="/etc/modprobe.d"),
        dmesg_path=dict(type="path"),
    )

    def logic(self):
        p = self.params
        if p["needs"] is not None:
            host_checks.check_needs(p["needs"])  # before reading the host: a typo in needs is the first thing to fix
        facts = host_checks.gather(proc_root=p["proc_root"], sys_root=p["sys_root"], kvm_path=p["kvm_path"],
                                   modprobe_dir=p["modprobe_dir"], dmesg_path=p["dmesg_path"],
                                   pool_path=p["pool_path"])
        failures, warnings = [], []
        if p["needs"] is not None:
            failures, warnings = host_checks.evaluate(facts, p["needs"])
        for w in warnings:
            self.module.warn("%s: %s" % (w["check"], w["msg"]))
        return ModuleResult(False, host=facts, failures=failures, warnings_found=warnings)


def main():
    HostFactsModule().run()


if __name__ == "__main__":
    main()
