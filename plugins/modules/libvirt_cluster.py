#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: libvirt_cluster
short_description: Converge the libvirt networks, storage pool, overlay disks and VMs of an emulated cluster
version_added: "0.1.0"
description:
  - Defines, re-defines on drift, starts, stops or removes the libvirt objects of one cluster of the
    emulated data centre, from VM, network and pool specs produced by the collection's config model.
  - Drift is found by comparing normalised XML (what libvirt adds itself is ignored). A drifted domain,
    network or pool is re-defined with the wanted XML, keeping the existing UUID and MAC addresses where
    the spec leaves them open; an active network is destroyed, defined and started again (reported in
    C(notes)); a running domain gets the new definition at its next cold boot (C(restart_required)).
  - Ownership rule. Domains created by this module carry a C(<metadata>) element in the namespace
    C(https://aihow.example/hyperscaler/1); networks and pools are owned when their name starts with
    O(owner_prefix). The module never changes or removes objects it does not own; with O(state=absent)
    it skips them and lists them in RV(skipped), with other states it fails naming them.
  - The accelerator is KVM only when C(/dev/kvm) opens read-write and the CPU flags show vmx or svm;
    otherwise TCG software emulation (C(<domain type='qemu'>), C(<cpu mode='maximum'/>) and a capped
    translation cache), with a warning saying why.
author:
  - aihow engineering (@aihow)
requirements:
  - libvirt-python on the host that runs the module (see requirements-libvirt.txt)
attributes:
  check_mode:
    description: Computes every change (including the XML diffs) and changes nothing.
    support: full
  diff_mode:
    description: Returns the normalised XML of every changed object before and after.
    support: full
options:
  uri:
    description: libvirt connection URI (C(test:///default) is the in-process test driver).
    type: str
    default: qemu:///system
  state:
    description:
      - C(present) defines everything (networks and the pool are also started); domains keep their run state.
      - C(running) and C(stopped) also start (in parallel) or shut down the domains.
      - C(absent) removes the listed domains, their overlay volumes, the networks and the pool, if owned.
    type: str
    choices: [present, running, stopped, absent]
    default: present
  accelerator:
    description:
      - C(auto) picks KVM when usable, else TCG; C(kvm) fails on a host without usable KVM.
      - Default C(hypervisor.accelerator) of O(config) or O(specs) when one is set, else C(auto).
    type: str
    choices: [auto, kvm, tcg]
  specs:
    description:
      - The pool, networks, domains and seed ISOs of one hypervisor host as the inventory plugin builds them on the
        Ansible controller (host variable C(hyperscaler_libvirt_specs) of each hypervisor). vms.yml and destroy.yml
        pass it, so a remote hypervisor needs no cluster.yaml. O(images), O(seed_dir) and O(ssh_public_key)
        apply to it as to O(config).
      - Mutually exclusive with O(config), O(pool), O(networks) and O(domains).
    type: dict
  config:
    description:
      - Path of a cluster.yaml (on the host that runs the module). The pool, networks and domains are derived
        from it (see docs/vms.md) instead of being given in O(pool), O(networks) and O(domains), which are then not
        allowed (mutually exclusive).
    type: path
  images:
    description:
      - With O(specs) or O(config), golden image paths by image name (C(hpc-base), C(cloud-base)); an image not listed is
        C(<images.cache_dir>/<name>.qcow2).
    type: dict
    default: {}
  seed_dir:
    description: With O(specs) or O(config), directory of the cloud-init seed ISOs C(<vm_name>-seed.iso); default the pool directory.
    type: path
  ssh_public_key:
    description:
      - With O(specs) or O(config), the OpenSSH public key (text) installed for C(ssh.user) in every VM. The seed ISOs are
        (re)built when their content changed and removed with O(state=absent). Without it no seed ISO is written
        (the domains still refer to them).
    type: str
  hypervisor_host:
    description: With O(config), only the VMs placed on this C(hypervisor.hosts[].name); default all of them.
    type: str
  ssh_netns:
    description:
      - Network namespace to probe the SSH ports from (lab mode, see scripts/hyperscaler-lab); the probe then runs
        as C(ip netns exec <ssh_netns>) so no traffic to the guests' addresses leaves from this namespace.
    type: str
  owner_prefix:
    description: Name prefix that marks networks and pools as owned by this collection.
    type: str
    default: hs-
  wait_ssh:
    description: With O(state=running), wait until every domain's SSH port answers.
    type: bool
    default: false
  ssh_timeout:
    description: Seconds to wait for SSH per domain (all wait in parallel).
    type: int
    default: 300
  stop_timeout:
    description: Seconds a domain gets to shut down (ACPI) before it is powered off.
    type: int
    default: 60
  pool:
    description: The directory storage pool holding the overlay disks (and usually the golden images).
    type: dict
    suboptions:
      name:
        description: Pool name, starting with O(owner_prefix).
        type: str
        required: true
      path:
        description: Directory of the pool.
        type: path
        required: true
  networks:
    description: NAT networks with DHCP and DNS.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Network name, starting with O(owner_prefix).
        type: str
        required: true
      subnet:
        description: IPv4 subnet in CIDR form, for example C(10.77.0.0/24).
        type: str
        required: true
      bridge:
        description: Bridge device name (at most 15 characters); default C(virbr-<name>) cut to 15.
        type: str
      gateway:
        description: Host address on the bridge; default the first host of O(networks[].subnet).
        type: str
      forward:
        description: Forward mode; C(none) makes an isolated network.
        type: str
        choices: [nat, route, open, none]
        default: nat
      dhcp_range:
        description: First and last address of the dynamic DHCP pool; default the upper half of the subnet.
        type: list
        elements: str
      hosts:
        description: Static DHCP entries.
        type: list
        elements: dict
        default: []
        suboptions:
          mac:
            description: MAC address of the VM's NIC.
            type: str
            required: true
          name:
            description: Host name handed out by DHCP.
            type: str
            required: true
          ip:
            description: Fixed address.
            type: str
            required: true
      dns_hosts:
        description: Extra DNS records served by the network's dnsmasq.
        type: list
        elements: dict
        default: []
        suboptions:
          ip:
            description: Address.
            type: str
            required: true
          hostnames:
            description: Names for the address.
            type: list
            elements: str
            required: true
      domain:
        description: DNS domain of the network (local only).
        type: str
      uuid:
        description: Network UUID; default keep the existing one or let libvirt choose.
        type: str
  domains:
    description: The VMs.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Domain name.
        type: str
        required: true
      uuid:
        description: Domain UUID; default the existing one, else a stable UUID derived from cluster and name.
        type: str
      vcpus:
        description: Number of vCPUs.
        type: int
        default: 1
      memory_mib:
        description: Memory in MiB.
        type: int
        default: 1024
      accelerator:
        description: Per-domain override of O(accelerator).
        type: str
        choices: [auto, kvm, tcg]
      tcg_tb_cache_mib:
        description: TCG translation block cache in MiB (ignored under KVM).
        type: int
        default: 128
      machine:
        description: QEMU machine type.
        type: str
        default: q35
      disk:
        description: The root disk.
        type: dict
        suboptions:
          path:
            description: Path of the disk file; inside O(pool.path) when O(domains[].disk.backing_path) is set.
            type: path
            required: true
          backing_path:
            description: Golden image; when set, the disk is created as a qcow2 overlay on it (never modified).
            type: path
          capacity_gib:
            description:
              - Virtual size of the overlay in GiB.
              - Default the golden image's size, which needs the golden image to be in a libvirt storage pool.
            type: int
          format:
            description: Disk format.
            type: str
            default: qcow2
      seed_iso:
        description: cloud-init NoCloud seed ISO, attached as a read-only CD-ROM.
        type: path
      nics:
        description: Network interfaces, in guest order.
        type: list
        elements: dict
        default: []
        suboptions:
          network:
            description: libvirt network name.
            type: str
            required: true
          mac:
            description: MAC address; default the existing one, else a stable one derived from cluster, name and index.
            type: str
          model:
            description: NIC model.
            type: str
            default: virtio
      console_log:
        description: File the serial console is logged to; default C(/var/log/libvirt/qemu/<name>-console.log).
        type: path
      cluster:
        description: Cluster name (recorded in the metadata, part of the stable ids).
        type: str
      node:
        description: Node name in the cluster; default O(domains[].name).
        type: str
      role:
        description: Node role (recorded in the metadata).
        type: str
      gpus:
        description:
          - GPU assignment. C(pci) is a whole GPU (managed PCI hostdev), C(vf) a vendor-VFIO virtual function
            (PCI hostdev, managed=no), C(mdev) a mediated vGPU, C(simulated) a GPU recorded in the metadata only.
        type: list
        elements: dict
        default: []
        suboptions:
          kind:
            description: Kind of assignment.
            type: str
            required: true
            choices: [pci, vf, mdev, simulated]
          address:
            description: Host PCI address (C(pci), C(vf)), for example C(0000:65:00.0).
            type: str
          uuid:
            description: mdev UUID (C(mdev)).
            type: str
          mdev_type:
            description: mdev type, recorded in the metadata.
            type: str
          model:
            description: GPU model, recorded in the metadata.
            type: str
          profile:
            description: MIG or vGPU profile, recorded in the metadata.
            type: str
      ssh_host:
        description: Address to wait on for SSH; default the network's static DHCP entry for the VM.
        type: str
      ssh_port:
        description: SSH port.
        type: int
        default: 22
notes:
  - Accelerator detection looks at the host the module runs on; with a remote O(uri) set O(accelerator) explicitly.
  - Overlay volumes are never re-created on drift (they hold the guests' data); a different backing store is reported in RV(notes).
"""

EXAMPLES = r"""
- name: Define and start a two-node Slurm cluster under whatever accelerator the host has
  aihow.hyperscaler.libvirt_cluster:
    state: running
    pool:
      name: hs-lab
      path: /var/lib/libvirt/images/hs-lab
    networks:
      - name: hs-lab-net
        subnet: 10.77.0.0/24
        domain: lab.internal
        hosts:
          - {mac: "52:54:00:10:00:01", name: hpc-head, ip: 10.77.0.10}
    domains:
      - name: hpc-head
        cluster: lab
        role: slurm-controller
        vcpus: 2
        memory_mib: 4096
        disk:
          path: /var/lib/libvirt/images/hs-lab/hpc-head.qcow2
          backing_path: /var/lib/libvirt/images/golden/debian-12.qcow2
          capacity_gib: 40
        seed_iso: /var/lib/libvirt/images/hs-lab/hpc-head-seed.iso
        nics:
          - {network: hs-lab-net, mac: "52:54:00:10:00:01"}
      - name: hpc-compute-01
        cluster: lab
        role: slurm-compute
        disk:
          path: /var/lib/libvirt/images/hs-lab/hpc-compute-01.qcow2
          backing_path: /var/lib/libvirt/images/golden/debian-12.qcow2
        nics:
          - {network: hs-lab-net}
        gpus:
          - {kind: pci, address: "0000:65:00.0", model: L40S}
          - {kind: simulated, model: H100, profile: 1g.10gb}
    wait_ssh: true
    ssh_timeout: 600

- name: This hypervisor's VMs as the inventory plugin built them on the controller (what vms.yml does)
  aihow.hyperscaler.libvirt_cluster:
    state: running
    specs: "{{ hyperscaler_libvirt_specs }}"
    ssh_public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
    wait_ssh: true

- name: The whole cluster of a cluster.yaml, with seed ISOs, waiting for SSH from the lab namespace
  aihow.hyperscaler.libvirt_cluster:
    state: running
    config: /etc/hyperscaler/cluster.yaml
    ssh_public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
    seed_dir: /var/lib/aihow-hyperscaler/seed
    wait_ssh: true
    ssh_netns: hs-lab

- name: Show what would change, with XML diffs
  aihow.hyperscaler.libvirt_cluster:
    state: present
    networks: "{{ lab_networks }}"
    domains: "{{ lab_domains }}"
  check_mode: true
  diff: true

- name: Tear the cluster down (objects not created by the collection are left alone)
  aihow.hyperscaler.libvirt_cluster:
    state: absent
    pool: "{{ lab_pool }}"
    networks: "{{ lab_networks }}"
    domains: "{{ lab_domains }}"
"""

RETURN = r"""
changes:
  description: One entry per action taken (or, in check mode, to be taken).
  returned: always
  type: list
  elements: dict
  sample:
    - kind: domain
      name: hpc-compute-01
      action: redefine
      diff: "--- domain/hpc-compute-01 (before)\n+++ domain/hpc-compute-01 (after)\n..."
      before: "<domain ...>"
      after: "<domain ...>"
domains:
  description: Per domain its UUID, MACs, accelerator and whether it runs (absent ones show state absent).
  returned: always
  type: dict
  sample: {hpc-head: {uuid: 0b6c1c3e-..., macs: ["52:54:00:10:00:01"], accelerator: tcg, running: true}}
networks:
  description: Per network its state.
  returned: always
  type: dict
  sample: {hs-lab-net: {state: active}}
accelerator:
  description: The accelerator resolved from O(accelerator) (per-domain overrides are in RV(domains)).
  returned: always
  type: str
  sample: tcg
accelerator_reason:
  description: Why that accelerator was chosen.
  returned: always
  type: str
  sample: "TCG software emulation is used because KVM is not usable: /dev/kvm cannot be opened read-write ..."
notes:
  description: Side effects worth knowing (networks restarted, domains needing a cold boot, forced power-offs).
  returned: always
  type: list
  elements: str
restart_required:
  description: Running domains whose definition changed; the change applies at their next cold boot.
  returned: always
  type: list
  elements: str
skipped:
  description: Objects named in the specs but left alone because this collection does not own them.
  returned: always
  type: list
  elements: dict
  sample: [{kind: domain, name: test, reason: "no aihow.hyperscaler metadata: not created by this collection"}]
ssh:
  description: With O(wait_ssh), per domain whether its SSH port answered.
  returned: always
  type: dict
seeds:
  description: With O(config) and O(ssh_public_key), per seed ISO path what was done (C(written), C(unchanged), C(removed), C(absent)).
  returned: always
  type: dict
  sample: {/var/lib/libvirt/images/hyperscaler/lab-hpc-controller-seed.iso: written}
"""

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import (
    HyperscalerModule,
    ModuleResult,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import converge as libvirt_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import accelerator
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import specs as libvirt_specs

_ACCEL = ["auto", "kvm", "tcg"]


class LibvirtClusterModule(HyperscalerModule):
    argument_spec = dict(
        uri=dict(type="str", default="qemu:///system"),
        state=dict(type="str", choices=["present", "running", "stopped", "absent"], default="present"),
        accelerator=dict(type="str", choices=_ACCEL),
        config=dict(type="path"),
        specs=dict(type="dict"),
        images=dict(type="dict", default={}),
        seed_dir=dict(type="path"),
        ssh_public_key=dict(type="str", no_log=False),
        hypervisor_host=dict(type="str"),
        ssh_netns=dict(type="str"),
        owner_prefix=dict(type="str", default=libvirt_converge.DEFAULT_OWNER_PREFIX),
        wait_ssh=dict(type="bool", default=False),
        ssh_timeout=dict(type="int", default=300),
        stop_timeout=dict(type="int", default=60),
        pool=dict(type="dict", options=dict(
            name=dict(type="str", required=True),
            path=dict(type="path", required=True),
        )),
        networks=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            subnet=dict(type="str", required=True),
            bridge=dict(type="str"),
            gateway=dict(type="str"),
            forward=dict(type="str", choices=["nat", "route", "open", "none"], default="nat"),
            dhcp_range=dict(type="list", elements="str"),
            hosts=dict(type="list", elements="dict", default=[], options=dict(
                mac=dict(type="str", required=True),
                name=dict(type="str", required=True),
                ip=dict(type="str", required=True),
            )),
            dns_hosts=dict(type="list", elements="dict", default=[], options=dict(
                ip=dict(type="str", required=True),
                hostnames=dict(type="list", elements="str", required=True),
            )),
            domain=dict(type="str"),
            uuid=dict(type="str"),
        )),
        domains=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            uuid=dict(type="str"),
            vcpus=dict(type="int", default=1),
            memory_mib=dict(type="int", default=1024),
            accelerator=dict(type="str", choices=_ACCEL),
            tcg_tb_cache_mib=dict(type="int", default=128),
            machine=dict(type="str", default="q35"),
            disk=dict(type="dict", options=dict(
                path=dict(type="path", required=True),
                backing_path=dict(type="path"),
                capacity_gib=dict(type="int"),
                format=dict(type="str", default="qcow2"),
            )),
            seed_iso=dict(type="path"),
            nics=dict(type="list", elements="dict", default=[], options=dict(
                network=dict(type="str", required=True),
                mac=dict(type="str"),
                model=dict(type="str", default="virtio"),
            )),
            console_log=dict(type="path"),
            cluster=dict(type="str"),
            node=dict(type="str"),
            role=dict(type="str"),
            gpus=dict(type="list", elements="dict", default=[], options=dict(
                kind=dict(type="str", required=True, choices=["pci", "vf", "mdev", "simulated"]),
                address=dict(type="str"),
                uuid=dict(type="str"),
                mdev_type=dict(type="str"),
                model=dict(type="str"),
                profile=dict(type="str"),
            )),
            ssh_host=dict(type="str"),
            ssh_port=dict(type="int", default=22),
        )),
    )
    # cluster.yaml or explicit specs, not both (the specs would silently win or lose).
    mutually_exclusive = [("config", "networks"), ("config", "domains"), ("config", "pool"), ("specs", "config"),
                          ("specs", "networks"), ("specs", "domains"), ("specs", "pool")]

    def _resolve_accelerators(self, requested, domain_specs):
        """Module-level accelerator plus per-domain overrides, each detected once."""
        cache = {}

        def resolve(requested):
            if requested not in cache:
                # Module attributes read at call time, so tests can point them at fake files.
                cache[requested] = accelerator.detect_accelerator(requested, accelerator.CPUINFO_PATH, accelerator.KVM_PATH)
            return cache[requested]

        accel, reason = resolve(requested)
        domains = []
        for spec in domain_specs:
            spec = dict(spec)
            spec["accelerator"] = resolve(spec.get("accelerator") or requested)[0]
            domains.append(spec)
        for requested, (got, why) in sorted(cache.items()):
            self.module.log("libvirt_cluster: accelerator %s (requested %s): %s" % (got, requested, why))
            if got == "tcg" and requested == "auto" and self.params["state"] != "absent":
                self.module.warn(why)
        return accel, reason, domains

    def logic(self):
        p = self.params
        wanted = libvirt_specs.module_specs(p)
        requested = wanted["accelerator"]
        if p["state"] == "absent":
            # Nothing is defined when removing, so a host without KVM must not fail here.
            accel, reason, domains = requested, "not used with state=absent", wanted["domains"]
        else:
            accel, reason, domains = self._resolve_accelerators(requested, wanted["domains"])
        seeds = {}
        seed_changes = []
        if wanted["seeds"] and p["state"] != "absent":
            # Before the domains start: cloud-init reads the ISO at first boot.
            seeds, seed_changes = libvirt_specs.converge_seeds(wanted["seeds"], "present", self.check_mode)
        ssh_wait = libvirt_specs.netns_ssh_wait(p["ssh_netns"]) if p["ssh_netns"] else None
        conn = libvirt_converge.connect(p["uri"])
        try:
            result = libvirt_converge.converge(
                conn,
                state=p["state"],
                networks=wanted["networks"],
                pool=wanted["pool"],
                domains=domains,
                check_mode=self.check_mode,
                owner_prefix=p["owner_prefix"],
                wait_ssh=p["wait_ssh"],
                ssh_timeout=p["ssh_timeout"],
                ssh_wait=ssh_wait,
                stop_timeout=p["stop_timeout"],
            )
        finally:
            conn.close()
        if wanted["seeds"] and p["state"] == "absent":
            # After the domains are gone, so no running guest loses its CD-ROM.
            seeds, seed_changes = libvirt_specs.converge_seeds(wanted["seeds"], "absent", self.check_mode)
        result["changes"] = seed_changes + result["changes"]
        changed = result["changed"] or bool(seed_changes)
        # Everything else converge returned goes out as is (changed is ModuleResult's own argument).
        values = dict((k, v) for k, v in result.items() if k != "changed")
        before, after = [], []
        for ch in result["changes"]:
            if ch.get("before") or ch.get("after"):
                header = "# %s/%s (%s)\n" % (ch["kind"], ch["name"], ch["action"])
                before.append(header + (ch.get("before") or ""))
                after.append(header + (ch.get("after") or ""))
        return ModuleResult(
            changed,
            before="".join(before) if changed else None,
            after="".join(after) if changed else None,
            accelerator=accel,
            accelerator_reason=reason,
            seeds=seeds,
            **values
        )


def main():
    LibvirtClusterModule().run()


if __name__ == "__main__":
    main()
