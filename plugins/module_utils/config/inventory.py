# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Hosts, groups and variables of the emulated data centre, as plain data.

A pure function of a validated ClusterConfig, used by the inventory plugin (and
cached by it as JSON-able data). The names here are an interface that roles and
playbooks rely on; docs/inventory.md lists them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import posixpath
import re

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    CLOUD_WORKER_ROLES,
    partition_members,
    slurm_time_display,
    slurm_time_minutes,
)

# Group layout: parent -> children; a VM joins its role's groups, hpc and cloud come through the children.
# These groups always exist (empty without their cluster), so a play's `hosts:` never names a missing group.
GROUP_CHILDREN = {
    "hpc": ["hpc_controller", "hpc_compute"],
    "cloud": ["cloud_control_plane", "cloud_workers"],
}
ROLE_GROUPS = {
    "controller": ["hpc_controller"],
    "compute": ["hpc_compute"],
    "control_plane": ["cloud_control_plane"],
    "cpu_worker": ["cloud_workers"],
    "gpu_worker": ["cloud_workers"],
}
ALL_GROUPS = sorted(set(GROUP_CHILDREN) | set(c for cs in GROUP_CHILDREN.values() for c in cs)
                    | set(g for gs in ROLE_GROUPS.values() for g in gs) | {"hypervisors"})
# Only with clusters.cloud.platform kubernetes: the groups Kubespray expects, fed from ours.
KUBESPRAY_CHILDREN = {
    "cloud": ["k8s_control_plane", "k8s_worker_cpu", "k8s_worker_gpu"],
    "k8s_cluster": ["kube_control_plane", "kube_node"],
}
KUBESPRAY_ROLE_GROUPS = {
    "control_plane": ["k8s_control_plane", "kube_control_plane", "etcd"],
    "cpu_worker": ["k8s_worker_cpu", "kube_node"],
    "gpu_worker": ["k8s_worker_gpu", "kube_node"],
}
KUBESPRAY_GROUPS = sorted(set(KUBESPRAY_CHILDREN) | set(c for cs in KUBESPRAY_CHILDREN.values() for c in cs)
                          | set(g for gs in KUBESPRAY_ROLE_GROUPS.values() for g in gs))
_LOCAL_URI = re.compile(r"^[a-z0-9]+:///")  # no host part: libvirt on this machine
# scripts/hyperscaler-lab writes <root>/<metadata.name>/netns (the namespace name) while a lab is up.
LAB_STATE_ROOT = "/run/aihow-hyperscaler"
# The namespace `hyperscaler-lab up` creates is LAB_NETNS_PREFIX + metadata.name: scripts/hyperscaler-lab
# (`netns NAME`) defines it for shell and playbooks; a unit test keeps the two equal.
LAB_NETNS_PREFIX = "hs-"


def slurm_settings(config):
    slurm = config.data["clusters"]["hpc"]["slurm_config"]
    names = [p if isinstance(p, str) else p["name"] for p in slurm["partitions"]]
    default = slurm.get("default_partition") or names[0]
    details = []
    for part, name in zip(slurm["partitions"], names):
        max_time = (part.get("max_time") if isinstance(part, dict) else None) or slurm["max_job_time"]
        # Members are the inventory group slurm_partition_<name>; not repeated here, because group vars
        # are copied into every host (1,000 names x 1,000 hosts on a large cluster). max_time_minutes
        # (None: UNLIMITED) lets hpc_verify.yml ask for one minute more and expect a refusal.
        details.append({
            "name": name,
            "group": "slurm_partition_%s" % name,
            "max_time": max_time,
            "max_time_minutes": slurm_time_minutes(max_time),
            "default": name == default,
        })
    return {
        "cluster_name": slurm["cluster_name"], "partitions": names, "partition_details": details,
        "default_partition": default, "max_job_time": slurm["max_job_time"],
        "accounting": slurm["accounting"], "qos": slurm["qos"],
        "qos_settings": qos_settings(slurm) if slurm["accounting"] else [],
        "mpi_default": slurm["mpi_default"],
    }


def container_settings(config):
    """cluster.yaml's clusters.hpc.containers resolved for the container roles (hyperscaler_containers on `hpc`).

    The registry listens on the controller's cluster address: its host:port is the name every node pulls
    from, and the one the registry's certificate is made out to.
    """
    containers = config.data["clusters"]["hpc"]["containers"]
    controller = config.nodes_of("hpc", "controller")[0]
    enabled = containers["runtime"] != "none" and containers["registry"]["enabled"]
    host = controller.ip_address or controller.name
    address = "%s:%d" % (host, containers["registry"]["port"])
    image = containers["image"]
    return {
        "runtime": containers["runtime"],
        "registry": {"enabled": enabled, "host": host, "port": containers["registry"]["port"],
                     "address": address, "server": controller.name},
        "image": {"name": image["name"], "tag": image["tag"],
                  "ref": "%s/%s:%s" % (address, image["name"], image["tag"])},
    }


def qos_settings(slurm):
    """cluster.yaml's QoS as the slurm role's slurm_qos: [{name, settings: {Priority, MaxWall, Flags}}].

    Values are written as ``sacctmgr show qos`` prints them, so the role can compare before it
    changes anything: MaxWall as [D-]HH:MM:SS, and -1 (no limit, printed as nothing) for UNLIMITED.
    A QoS without max_wall leaves MaxWall as it is. Flags=DenyOnLimit makes sbatch refuse a job over
    a limit at submission; without it the job would wait forever (reason QOSMaxWallDurationPerJobLimit).
    max_wall_minutes (None: no limit) is for hpc_verify.yml's refusal check. Empty without accounting
    (the config model refuses QoS other than the default then): there is no slurmdbd to keep them.
    """
    out = []
    for qos in slurm["qos"]:
        settings = {"Priority": qos["priority"], "Flags": "DenyOnLimit"}
        if "max_wall" in qos:
            settings["MaxWall"] = slurm_time_display(qos["max_wall"]) or "-1"
        out.append({"name": qos["name"], "settings": settings,
                    "max_wall_minutes": slurm_time_minutes(qos["max_wall"]) if "max_wall" in qos else None})
    return out


def served_models(config):
    """[(name, alias, [worker host names, in node order])] of mlops.serving.models."""
    workers = [n.name for n in config.nodes if n.cluster == "cloud" and n.role in CLOUD_WORKER_ROLES]
    out = []
    for model in config.data["mlops"]["serving"]["models"]:
        listed = model.get("workers")
        out.append((model["name"], model["alias"], [w for w in workers if listed is None or w in listed]))
    return out


def mlops_settings(config):
    """cluster.yaml's mlops section resolved for the roles (hyperscaler_mlops on `all`).

    Addresses and URLs are worked out here, so neither the cloud VMs nor the HPC training job need
    cluster.yaml: tracking.host is the control plane's address, allowed_networks starts with the cloud
    cluster's own network. ``training`` is there only when there is an HPC cluster to train on.
    Which workers serve a model is not here but in each worker's hyperscaler_model_server: group
    vars are copied into every host, and the worker lists of 3 models served by 500 workers made
    ``ansible-inventory --list`` of 1,000 hosts take 39 s and 1.1 GB instead of 6.5 s and 180 MB.
    """
    data = config.data
    mlops = data["mlops"]
    control_plane = config.nodes_of("cloud", "control_plane")[0]
    artifacts = dict(mlops["tracking"]["artifacts"])
    artifacts["destination"] = (artifacts["path"] if artifacts["store"] == "local"
                                else "s3://%s" % artifacts["s3_bucket"])
    networks = []
    for name in [data["clusters"]["cloud"]["network"]] + list(mlops["allowed_networks"]):
        if name not in [n["name"] for n in networks]:
            networks.append({"name": name, "subnet": data["global"]["networks"][name]["subnet"]})
    port = mlops["tracking"]["port"]
    out = {
        "experiment": mlops["experiment"],
        "credentials_dir": posixpath.join(mlops["credentials_dir"].rstrip("/") or "/", config.name),
        "tracking": {"host": control_plane.ip_address, "port": port,
                     "url": "http://%s:%d" % (control_plane.ip_address, port), "artifacts": artifacts},
        "database": dict(mlops["database"], host=control_plane.ip_address),
        "serving": {"port": mlops["serving"]["port"],
                    "models": [{"name": m["name"], "alias": m["alias"]} for m in mlops["serving"]["models"]]},
        "allowed_networks": networks,
        "promotion": dict(mlops["promotion"]),
    }
    if "training" in mlops:
        out["training"] = dict(mlops["training"])
    out["finetune"] = finetune_settings(config)
    return out


def finetune_settings(config):
    """mlops.finetune resolved for the llm_finetune role: the partition and the paths filled in."""
    data = config.data
    finetune = dict(data["mlops"]["finetune"])
    hpc = data["clusters"].get("hpc")
    if hpc is not None and "partition" not in finetune:
        slurm = hpc["slurm_config"]
        first = slurm["partitions"][0]
        finetune["partition"] = slurm.get("default_partition") or (first if isinstance(first, str) else first["name"])
    shared = posixpath.join(data["storage"]["shared"]["mount_path"], "finetune")
    finetune.setdefault("dataset", posixpath.join(shared, "data", "train.jsonl"))
    finetune.setdefault("output_dir", posixpath.join(shared, "runs"))
    return finetune


def model_server_settings(config, served):
    """{worker: hyperscaler_model_server}: the port and the models each cloud worker serves ([] when none)."""
    port = config.data["mlops"]["serving"]["port"]
    out = dict((n.name, {"port": port, "models": []}) for n in config.nodes
               if n.cluster == "cloud" and n.role in CLOUD_WORKER_ROLES)
    for name, alias, workers in served:
        for worker in workers:
            out[worker]["models"].append({"name": name, "alias": alias})
    return out


def node_gpus(config, node):
    """The node's GPU assignments with the device file each one has inside the VM."""
    simulated = config.plan.get("backend") == "simulator"
    out = []
    for k, gpu in enumerate(config.plan["nodes"].get(node.name, [])):
        item = dict(gpu)
        item["simulated"] = simulated
        # A passed-through GPU or a (MIG-backed) vGPU shows up in the guest as /dev/nvidiaN;
        # with the simulator there is no device, so the roles create a placeholder file.
        item["device_file"] = ("/dev/hyperscaler-gpu%d" if simulated else "/dev/nvidia%d") % k
        out.append(item)
    return out


def _hypervisor_vars(host, local_python=None):
    uri = host["uri"]
    out = {"hyperscaler_libvirt_uri": uri, "hyperscaler_hypervisor": host}
    if _LOCAL_URI.match(uri):
        out.update(ansible_connection="local", ansible_host="127.0.0.1")
        if local_python:
            # Modules on a local hypervisor run with Ansible's own Python: it has the collection's Python
            # dependencies (libvirt-python), and interpreter discovery can pick a broken shim (pyenv).
            out["ansible_python_interpreter"] = local_python
    else:
        m = re.match(r"^[a-z0-9+]+://(?:(?P<user>[^@/]+)@)?(?P<host>[^/:]+)", uri)
        if m:
            out["ansible_host"] = m.group("host")
            if m.group("user"):
                out["ansible_user"] = m.group("user")
    return out


def lab_netns(config, state_root=None):
    """The network namespace the VMs live in (lab mode), or None.

    lab_mode disabled: None. enabled: the running lab's namespace, else the one `hyperscaler-lab up`
    will create (hs-<metadata.name>). auto: the running lab's namespace when its state file exists.
    """
    mode = config.data["hypervisor"].get("lab_mode", "auto")
    if mode == "disabled":
        return None
    root = state_root or os.environ.get("HYPERSCALER_LAB_STATE_ROOT") or LAB_STATE_ROOT  # as the script
    path = os.path.join(root, config.name, "netns")
    try:
        with open(path) as handle:
            name = handle.read().strip()
    except (IOError, OSError):
        name = None
    if name:
        return name
    return LAB_NETNS_PREFIX + config.name if mode == "enabled" else None


def lab_ssh_args(netns):
    """SSH options that tunnel to a guest through the lab namespace (needs root for `ip netns exec`).

    Host keys are not recorded: lab guests are rebuilt with new keys, and they are reachable only
    through the namespace, so there is no one in between to check for.
    """
    return ('-o ProxyCommand="ip netns exec %s nc %%h %%p" -o UserKnownHostsFile=/dev/null '
            '-o StrictHostKeyChecking=no' % netns)


def inventory_from_config(config, lab_state_root=None, local_python=None):
    """{"groups": {name: vars}, "children": {parent: [groups]}, "hosts": {name: {"groups", "vars"}}}."""
    data = config.data
    groups = dict((g, {}) for g in ALL_GROUPS)
    children = dict((k, list(v)) for k, v in GROUP_CHILDREN.items())
    hosts = {}
    networks = dict((name, config.network(name)) for name in data["global"]["networks"])
    # Small settings every host needs go on `all`. What only the hypervisors use (the whole GPU plan, images,
    # libvirt settings) goes on `hypervisors`: Ansible copies group vars into every host's vars, and the
    # plan of a large cluster repeated on 1,000 hosts made `ansible-inventory --list` 50x slower.
    groups["all"] = {
        "hyperscaler_cluster_name": config.name,
        "hyperscaler_config_file": config.source,
        "hyperscaler_networks": networks,
        "hyperscaler_ssh": data["ssh"],
        "hyperscaler_storage": data["storage"],
        "hyperscaler_monitoring": data["monitoring"],
    }
    gpu_plan = {"strategy": config.plan["strategy"], "backend": config.plan["backend"],
                "devices": config.plan["devices"]}
    if "gpu_allocation" in data["global"]:
        gpu_plan["simulator_state"] = data["global"]["gpu_allocation"]["simulator_state"]
    groups["hypervisors"] = {
        "hyperscaler_gpu_plan": gpu_plan,
        "hyperscaler_hypervisor_settings": data["hypervisor"],
        "hyperscaler_images": data["images"],
    }
    if "hpc" in data["clusters"]:
        slurm = slurm_settings(config)
        groups["hpc"]["hyperscaler_slurm"] = slurm
        groups["hpc"]["hyperscaler_containers"] = container_settings(config)
        compute = config.nodes_of("hpc", "compute")
        for part_spec, part in zip(data["clusters"]["hpc"]["slurm_config"]["partitions"],
                                   slurm["partition_details"]):
            group = part["group"]
            groups.setdefault(group, {})
            for name in partition_members(part_spec, compute):
                hosts.setdefault(name, {"groups": [], "vars": {}})["groups"].append(group)
    kubespray = False
    if "cloud" in data["clusters"]:
        cloud = data["clusters"]["cloud"]
        groups["cloud"]["hyperscaler_cloud"] = {"platform": cloud["platform"]}
        groups["cloud"]["hyperscaler_kubernetes"] = cloud["kubernetes_config"]
        kubespray = cloud["platform"] == "kubernetes"
        if kubespray:
            for group in KUBESPRAY_GROUPS:
                groups.setdefault(group, {})
            for parent, kids in KUBESPRAY_CHILDREN.items():
                children.setdefault(parent, []).extend(kids)
    model_servers = {}
    if "mlops" in data:
        # On `all`: the HPC training job logs to the tracking server too. About 1 KB, whatever the size.
        groups["all"]["hyperscaler_mlops"] = mlops_settings(config)
        model_servers = model_server_settings(config, served_models(config))
    for node in config.nodes:
        entry = hosts.setdefault(node.name, {"groups": [], "vars": {}})
        role_groups = ROLE_GROUPS[node.role] + (KUBESPRAY_ROLE_GROUPS.get(node.role, []) if kubespray else [])
        entry["groups"] = role_groups + entry["groups"]  # hpc/cloud membership comes via children
        net = networks[node.network]
        node_vars = node.as_dict()
        node_vars.pop("config_path")
        entry["vars"] = {
            "ansible_host": node.ip_address,
            "ansible_user": data["ssh"]["user"],
            "ansible_ssh_private_key_file": data["ssh"]["private_key_file"],
            # Every guest boots one of our Debian 12 golden images: no interpreter discovery round trip.
            "ansible_python_interpreter": "/usr/bin/python3",
            "hyperscaler_node": node_vars,
            "hyperscaler_network": {"name": node.network, "bridge": net["bridge"], "gateway": net["gateway"],
                                    "prefix": net["prefix"], "domain": net["domain"]},
            "hyperscaler_gpus": node_gpus(config, node),
        }
        if node.name in model_servers:
            entry["vars"]["hyperscaler_model_server"] = model_servers[node.name]
    netns = lab_netns(config, lab_state_root)
    if netns:
        # Guests are only reachable from inside the lab namespace; nothing is added outside lab mode.
        # Nor can they reach a package mirror from there: roles install from what the golden image holds.
        for node in config.nodes:
            hosts[node.name]["vars"]["ansible_ssh_common_args"] = lab_ssh_args(netns)
            hosts[node.name]["vars"]["hyperscaler_guest_offline"] = True
    for host in data["hypervisor"]["hosts"]:
        hosts.setdefault(host["name"], {"groups": [], "vars": {}})
        hosts[host["name"]]["groups"].append("hypervisors")
        hosts[host["name"]]["vars"].update(_hypervisor_vars(host, local_python))
    return {"groups": groups, "children": children, "hosts": hosts}
