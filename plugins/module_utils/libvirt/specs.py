# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The libvirt objects of a cluster.yaml, as the specs ``libvirt_cluster`` / ``libvirt_converge`` take.

A pure function of a validated ClusterConfig (no libvirt, no file access): one NAT network per
cluster network, the directory pool, and per VM its overlay on the cluster's golden image, its seed
ISO, its NIC with the node's stable MAC, CPU/memory and GPU devices from the plan. docs/vms.md
describes the mapping.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import seed as cloud_init_seed
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import check_writable
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as config_model
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import ssh as libvirt_ssh
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import CLUSTERS, OWNER_PREFIX, mdev_uuid
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


def network_name(config, network, owner_prefix=OWNER_PREFIX):
    """libvirt network name of a cluster network: hs-<metadata.name>-<network>."""
    return "%s%s-%s" % (owner_prefix, config.name, network)


def pool_spec(config, owner_prefix=OWNER_PREFIX):
    """The directory pool; its name carries the owner prefix (pools have no metadata to mark ownership)."""
    pool = config.data["hypervisor"]["storage_pool"]
    name = pool["name"]
    if not name.startswith(owner_prefix):
        name = owner_prefix + name
    return {"name": name, "path": pool["path"]}


def image_paths(config, images=None):
    """{cluster: golden image path}: ``images`` (name -> path) wins, else <images.cache_dir>/<name>.qcow2."""
    images = images or {}
    section = config.data["images"]
    out = {}
    for cluster in CLUSTERS:
        if cluster not in config.data["clusters"]:
            continue
        name = section[cluster]["name"]
        out[cluster] = images.get(name) or os.path.join(section["cache_dir"], "%s.qcow2" % name)
    return out


def seed_iso_path(seed_dir, node):
    return os.path.join(seed_dir, "%s-seed.iso" % node.vm_name)


def network_specs(config, nodes=None, owner_prefix=OWNER_PREFIX):
    """One NAT network per cluster network that has nodes, with a static DHCP + DNS entry per node."""
    nodes = config.nodes if nodes is None else nodes
    out = []
    for net_name in sorted(config.data["global"]["networks"]):
        members = [n for n in nodes if n.network == net_name]
        if not members:
            continue  # a network no VM here uses is not created on this hypervisor
        net = config.network(net_name)
        out.append({
            "name": network_name(config, net_name, owner_prefix),
            "subnet": net["subnet"],
            "bridge": net["bridge"],
            "gateway": net["gateway"],
            # nat: false gives an isolated network (no forward element): the VMs reach each other only.
            "forward": "nat" if net.get("nat", True) else "none",
            "domain": net["domain"],
            "hosts": [{"mac": n.mac, "name": n.name, "ip": n.ip_address} for n in members],
            # Short and fully qualified names, so VMs resolve each other either way.
            "dns_hosts": [{"ip": n.ip_address, "hostnames": [n.name, "%s.%s" % (n.name, net["domain"])]}
                          for n in members],
        })
    return out


def gpu_devices(config, node):
    """libvirt GPU specs of a node from the plan.

    simulator backend: metadata only. nvml: a whole GPU is a managed PCI hostdev; a MIG slice is the
    MIG-backed vGPU (mdev) that vgpu_mdev creates for this VM, whose UUID is identity.mdev_uuid(<metadata.name>,
    <vm_name>, <index of the slice among the VM's slices>), the same derivation vgpu_mdev uses.
    """
    simulated = config.plan.get("backend") == "simulator"
    out = []
    mig_index = 0
    for gpu in config.plan.get("nodes", {}).get(node.name, []):
        meta = dict((k, gpu[k]) for k in ("model", "profile") if gpu.get(k))
        if simulated:
            out.append(dict(meta, kind="simulated"))
        elif gpu["kind"] == "whole":
            out.append(dict(meta, kind="pci", address=gpu["pci_address"]))
        else:
            out.append(dict(meta, kind="mdev", uuid=mdev_uuid(config.name, node.vm_name, mig_index)))
            mig_index += 1
    return out


def domain_spec(config, node, image, seed_dir, accelerator, pool, owner_prefix=OWNER_PREFIX):
    return {
        "name": node.vm_name,
        # The golden image's name (images.<cluster>.name), so a run can point it at another file.
        "image": config.data["images"][node.cluster]["name"],
        "cluster": config.name,
        "node": node.name,
        "role": "%s-%s" % (node.cluster, node.role),
        "vcpus": node.cpu_cores,
        "memory_mib": node.memory_mib,
        "accelerator": accelerator,
        "tcg_tb_cache_mib": config.data["hypervisor"]["tcg_tb_cache_mb"],
        "disk": {
            "path": os.path.join(pool["path"], "%s.qcow2" % node.vm_name),
            "backing_path": image,
            "capacity_gib": node.disk_gb,
            "format": "qcow2",
        },
        "seed_iso": seed_iso_path(seed_dir, node) if seed_dir else None,
        "nics": [{"network": network_name(config, node.network, owner_prefix), "mac": node.mac}],
        "gpus": gpu_devices(config, node),
        "ssh_host": node.ip_address,
    }


def cluster_specs(config, images=None, seed_dir=None, accelerator=None, hypervisor_host=None,
                  owner_prefix=OWNER_PREFIX):
    """{"pool", "networks", "domains"} for libvirt_converge.converge.

    images: {image name: qcow2 path} overriding <images.cache_dir>/<name>.qcow2. seed_dir: where the
    seed ISOs are (default: the pool directory). accelerator: kvm|tcg once resolved (None leaves it to
    the module). hypervisor_host: only the VMs placed on that host (default: every VM).
    """
    nodes = list(config.nodes)
    if hypervisor_host is not None:
        known = [h["name"] for h in config.hypervisor_hosts()]
        if hypervisor_host not in known:
            raise HyperscalerError("hypervisor host %r is not in %s (known: %s)"
                                   % (hypervisor_host, config.source, ", ".join(known)))
        nodes = [n for n in nodes if n.hypervisor_host == hypervisor_host]
    pool = pool_spec(config, owner_prefix)
    paths = image_paths(config, images)
    seed_dir = seed_dir or pool["path"]
    for n in nodes:
        if n.ip_address is None:  # a validated config always has one; guard against partial configs
            raise HyperscalerError("node %s has no IP address in %s" % (n.name, config.source))
    domains = [domain_spec(config, n, paths[n.cluster], seed_dir, accelerator, pool, owner_prefix) for n in nodes]
    return {"pool": pool, "networks": network_specs(config, nodes, owner_prefix), "domains": domains}


# --------------------------------------------------------------------------- the module's view

def seed_identities(config, specs):
    """[{path, vm_name, hostname, user, domain}] of every domain's seed ISO: what its files are made of."""
    user = config.data["ssh"]["user"]
    out = []
    for dom in specs["domains"]:
        node = config.node(dom["node"])
        out.append({"path": dom["seed_iso"], "vm_name": node.vm_name, "hostname": node.name, "user": user,
                    "domain": config.network(node.network)["domain"]})
    return out


def seed_specs(identities, ssh_public_key):
    """[{path, files}] for every seed; files is None without a key (enough to remove them)."""
    out = []
    for seed in identities:
        files = None
        if ssh_public_key:
            files = cloud_init_seed.seed_files(seed["vm_name"], seed["hostname"], seed["user"], ssh_public_key,
                                               seed["domain"])
        out.append({"path": seed["path"], "files": files})
    return out


def inventory_specs(config, hypervisor_host):
    """The libvirt specs of one hypervisor host, built on the Ansible controller (the inventory plugin).

    vms.yml and destroy.yml pass them to libvirt_cluster as ``specs``, so a hypervisor needs no
    cluster.yaml: {"pool", "networks", "domains", "seeds" (identities), "accelerator" (requested)}.
    """
    specs = cluster_specs(config, hypervisor_host=hypervisor_host)
    specs["seeds"] = seed_identities(config, specs)
    specs["accelerator"] = config.data["hypervisor"]["accelerator"]
    return specs


def _rebased(path, directory):
    return os.path.join(directory, os.path.basename(path)) if directory and path else path


def specs_with_overrides(specs, images=None, seed_dir=None):
    """Copy of inventory specs with golden images by name (``images``) and seed ISOs in ``seed_dir``."""
    images = images or {}
    domains = []
    for dom in specs.get("domains") or []:
        dom = dict(dom)
        disk = dict(dom.get("disk") or {})
        if dom.get("image") in images:
            disk["backing_path"] = images[dom["image"]]
        dom["disk"] = disk
        dom["seed_iso"] = _rebased(dom.get("seed_iso"), seed_dir)
        domains.append(dom)
    seeds = [dict(seed, path=_rebased(seed["path"], seed_dir)) for seed in specs.get("seeds") or []]
    return dict(specs, domains=domains, seeds=seeds)


def module_specs(params):
    """What libvirt_cluster converges: the controller-built ``specs``, explicit specs, or those of ``config``.

    {"pool", "networks", "domains", "accelerator" (requested), "seeds"}.
    """
    wants_seeds = params.get("state") == "absent" or params.get("ssh_public_key")
    if params.get("specs"):
        for key in ("domains", "seeds"):
            items = params["specs"].get(key)
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise HyperscalerError("specs.%s must be a list of mappings (the inventory's hyperscaler_libvirt_specs "
                                       "of this hypervisor)" % key)
        built = specs_with_overrides(params["specs"], params.get("images"), params.get("seed_dir"))
        return {"pool": built.get("pool"), "networks": built.get("networks") or [], "domains": built["domains"],
                "accelerator": params.get("accelerator") or built.get("accelerator") or "auto",
                "seeds": seed_specs(built["seeds"], params.get("ssh_public_key")) if wants_seeds else []}
    if not params.get("config"):
        return {"pool": params.get("pool"), "networks": params.get("networks") or [],
                "domains": params.get("domains") or [], "accelerator": params.get("accelerator") or "auto",
                "seeds": []}
    try:
        config = config_model.load_cluster_config(params["config"])
    except config_model.ConfigError as exc:
        raise HyperscalerError(str(exc), issues=[i.as_dict() for i in exc.issues])
    specs = cluster_specs(config, params.get("images"), params.get("seed_dir"), None,
                          params.get("hypervisor_host"), params.get("owner_prefix") or OWNER_PREFIX)
    specs["seeds"] = seed_specs(seed_identities(config, specs), params.get("ssh_public_key")) if wants_seeds else []
    specs["accelerator"] = params.get("accelerator") or config.data["hypervisor"]["accelerator"]
    return specs


def converge_seeds(seeds, state, check_mode=False):
    """Write (present) or remove (absent) seed ISOs: ({path: action}, [change entries]).

    Every path is checked first (in check mode too), so an unusable seed_dir fails naming it before
    any ISO is written; a write that still fails is reported with the path, not as a traceback.
    """
    done, changes = {}, []
    if state != "absent":
        for seed in seeds:
            check_writable(seed["path"], "seed_dir")  # a HyperscalerError naming seed_dir
    for seed in seeds:
        path = seed["path"]
        try:
            if state == "absent":
                changed = cloud_init_seed.remove_seed(path, check_mode)
                action = "removed" if changed else "absent"
            else:
                changed = cloud_init_seed.write_seed(path, seed["files"], check_mode)
                action = "written" if changed else "unchanged"
        except (IOError, OSError) as exc:
            raise HyperscalerError("seed_dir: cannot %s the seed ISO %s: %s"
                                   % ("remove" if state == "absent" else "write", path, exc.strerror or exc))
        done[path] = action
        if changed:
            changes.append({"kind": "seed", "name": path, "action": "delete" if state == "absent" else "write"})
    return done, changes


def netns_port_probe(netns, python=sys.executable, run=subprocess.run):
    """A probe(host, port, timeout) that connects from inside a network namespace (lab mode)."""
    def probe(host, port, timeout):
        code = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))"
        try:
            done = run(["ip", "netns", "exec", netns, python, "-c", code, host, str(port), str(timeout)],
                       capture_output=True, timeout=timeout + 10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0
    return probe


def netns_ssh_wait(netns, probe=None):
    """A wait function for libvirt_converge.converge(ssh_wait=...) probing from ``netns``."""
    probe = probe or netns_port_probe(netns)

    def wait(host, port, timeout):
        return libvirt_ssh.wait_for_ssh(host, port, timeout, probe=probe)
    return wait
