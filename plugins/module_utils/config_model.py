# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The cluster.yaml model: loaded, checked and completed in this one place.

Everything that reads cluster.yaml (the inventory plugin, the modules, the
command-line validator) calls :func:`load_cluster_config` or
:func:`build_cluster_config` and gets a :class:`ClusterConfig`, or a
:class:`ConfigError` that carries *every* problem found, each with its path in
the file (``clusters.hpc.compute_nodes.ip_range``) and what would be valid.

Order of work: version check -> JSON Schema (schemas/cluster.schema.json, carried as
cluster_schema.py) ->
defaults from the schema's ``default`` keywords -> semantic checks (networks,
addresses, resources, GPUs) -> node list -> GPU allocation plan (gpu_plan.py).
Semantic checks still run when the schema found problems, so one run reports
everything; a check whose input is malformed is skipped (its problem is
already reported by the schema).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import difflib
import ipaddress
import re

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

try:
    import jsonschema
    HAS_JSONSCHEMA = True
except ImportError:  # pragma: no cover - reported by missing_dependency()
    HAS_JSONSCHEMA = False

from ansible_collections.aihow.hyperscaler.plugins.module_utils import gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.cluster_schema import CLUSTER_SCHEMA
from ansible_collections.aihow.hyperscaler.plugins.module_utils.identity import stable_mac

SCHEMA_VERSION = "1.0"
CLUSTERS = ("hpc", "cloud")


class ConfigIssue:
    """One problem: where (dotted path) and what is wrong / what would be valid."""

    def __init__(self, path, message):
        self.path = path or "(top level)"
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.path, self.message)

    def __repr__(self):
        return "ConfigIssue(%r, %r)" % (self.path, self.message)

    def as_dict(self):
        return {"path": self.path, "message": self.message}


class ConfigError(Exception):
    """cluster.yaml is invalid; ``issues`` lists every problem found."""

    def __init__(self, source, issues):
        self.source = source
        self.issues = list(issues)
        lines = ["%s is not a valid cluster configuration (%d problem%s):" % (
            source, len(self.issues), "" if len(self.issues) == 1 else "s")]
        lines.extend("  - %s" % issue for issue in self.issues)
        super(ConfigError, self).__init__("\n".join(lines))


def missing_dependency():
    """Name of a missing Python library the model needs, or None."""
    if not HAS_YAML:
        return "PyYAML"
    if not HAS_JSONSCHEMA:
        return "jsonschema"
    return None


# --------------------------------------------------------------------------- paths

def format_path(parts):
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + str(part)
    return out


# --------------------------------------------------------------------------- schema

def load_schema():
    """The cluster.yaml schema (schemas/cluster.schema.json, carried as cluster_schema.py)."""
    return CLUSTER_SCHEMA


def _resolve(schema, root):
    """Merge a subschema with its $ref target (2020-12 allows siblings of $ref)."""
    seen = 0
    while "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        target = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        merged = dict(target)
        for key, value in schema.items():
            if key == "$ref":
                continue
            if key == "properties" and "properties" in merged:
                props = dict(merged["properties"])
                for name, sub in value.items():
                    props[name] = dict(props.get(name, {}), **sub)
                merged["properties"] = props
            else:
                merged[key] = value
        schema = merged
        seen += 1
    return schema


def _subschema_at(root, path):
    """The (resolved) schema that governs the value at ``path``, best effort."""
    schema = _resolve(root, root)
    for part in path:
        if isinstance(part, int):
            schema = _resolve(schema.get("items", {}), root)
        elif part in schema.get("properties", {}):
            schema = _resolve(schema["properties"][part], root)
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = _resolve(schema["additionalProperties"], root)
        else:
            return {}
    return schema


def _describe_error(err, root):
    """A ConfigIssue for one jsonschema error, worded for a person editing YAML."""
    path = list(err.absolute_path)
    validator = err.validator
    if validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})] \
            if isinstance(err.instance, dict) else []
        issues = []
        for key in extra:
            hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            msg = "unknown key %r" % key
            msg += " (did you mean %r?)" % hint[0] if hint else ""
            msg += "; valid keys: %s" % ", ".join(allowed) if allowed else ""
            issues.append(ConfigIssue(format_path(path + [key]), msg))
        return issues
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        key = missing[0] if missing else err.message
        return [ConfigIssue(format_path(path + [key]), "is required but missing")]
    if validator == "enum":
        return [ConfigIssue(format_path(path), "%r is not allowed; use one of: %s"
                            % (err.instance, ", ".join(str(v) for v in err.validator_value)))]
    if validator == "const":
        return [ConfigIssue(format_path(path), "must be %r" % (err.validator_value,))]
    if validator == "type":
        return [ConfigIssue(format_path(path), "must be of type %s, got %r"
                            % (err.validator_value if isinstance(err.validator_value, str)
                               else " or ".join(err.validator_value), err.instance))]
    if validator in ("minimum", "maximum"):
        sub = _subschema_at(root, path)
        bounds = "between %s and %s" % (sub.get("minimum", "-inf"), sub.get("maximum", "inf"))
        return [ConfigIssue(format_path(path), "%r is out of range; must be %s" % (err.instance, bounds))]
    if validator == "multipleOf":
        return [ConfigIssue(format_path(path), "%r must be a multiple of %s" % (err.instance, err.validator_value))]
    if validator == "pattern":
        sub = _subschema_at(root, path)
        hint = sub.get("description") or "it must match %s" % err.validator_value
        return [ConfigIssue(format_path(path), "%r is not valid: %s" % (err.instance, hint))]
    if validator == "propertyNames":
        return [ConfigIssue(format_path(path), "key %r is not a valid name (%s)"
                            % (err.instance, err.message))]
    if validator == "oneOf":
        sub = _subschema_at(root, path)
        hint = sub.get("description") or "it matches none of the allowed forms"
        return [ConfigIssue(format_path(path), "%r is not valid: %s" % (err.instance, hint))]
    if validator in ("minItems", "minProperties"):
        return [ConfigIssue(format_path(path), "must not be empty")]
    if validator == "uniqueItems":
        return [ConfigIssue(format_path(path), "has duplicate entries")]
    return [ConfigIssue(format_path(path), err.message)]


def schema_issues(data):
    root = load_schema()
    validator = jsonschema.Draft202012Validator(root)
    issues = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        issues.extend(_describe_error(err, root))
    return issues


def apply_defaults(data, schema=None, root=None):
    """Fill in the schema's ``default`` values for absent keys (returns a new object)."""
    root = root or load_schema()
    schema = _resolve(schema if schema is not None else root, root)
    if isinstance(data, dict):
        out = dict(data)
        for name, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out:
                if name not in schema.get("properties", {}):
                    out[name] = apply_defaults(out[name], extra, root)
        return out
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"], root) for item in data]
    return data


# --------------------------------------------------------------------------- addresses

def parse_ip_range(text):
    """'a.b.c.d', 'a.b.c.d-e' or 'a.b.c.d-w.x.y.z' -> list of IPv4Address (ValueError if bad)."""
    first, _dash, last = text.partition("-")
    start = ipaddress.IPv4Address(first.strip())
    if not last:
        return [start]
    last = last.strip()
    if "." in last:
        end = ipaddress.IPv4Address(last)
    else:
        octet = int(last)
        if not 0 <= octet <= 255:
            raise ValueError("last octet %d is not 0-255" % octet)
        end = ipaddress.IPv4Address(int(start) - int(start) % 256 + octet)
    if end < start:
        raise ValueError("range ends (%s) before it starts (%s)" % (end, start))
    return [ipaddress.IPv4Address(i) for i in range(int(start), int(end) + 1)]


# --------------------------------------------------------------------------- model

class Node:
    """One VM of either cluster, with everything derived from cluster.yaml."""

    __slots__ = ("name", "cluster", "role", "index", "cpu_cores", "memory_gb", "disk_gb", "ip_address",
                 "network", "gpu_enabled", "hypervisor_host", "vm_name", "mac", "config_path")

    def __init__(self, **kwargs):
        for key in self.__slots__:
            setattr(self, key, kwargs.get(key))

    @property
    def memory_mb(self):
        return int(round(self.memory_gb * 1024))

    def as_dict(self):
        out = dict((k, getattr(self, k)) for k in self.__slots__)
        out["memory_mb"] = self.memory_mb
        return out


# Host names are part of the interface (documented in docs/inventory.md): keep them stable.
NODE_GROUPS = (
    # cluster, role, config path, name pattern, single node?
    ("hpc", "controller", ("clusters", "hpc", "controller"), "hpc-controller", True),
    ("hpc", "compute", ("clusters", "hpc", "compute_nodes"), "hpc-compute-%02d", False),
    ("cloud", "control_plane", ("clusters", "cloud", "control_plane"), "cloud-control-plane", True),
    ("cloud", "cpu_worker", ("clusters", "cloud", "worker_nodes", "cpu_workers"), "cloud-cpu-worker-%02d", False),
    ("cloud", "gpu_worker", ("clusters", "cloud", "worker_nodes", "gpu_workers"), "cloud-gpu-worker-%02d", False),
)


def _get(data, path):
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


class ClusterConfig:
    """A valid cluster.yaml: ``data`` (defaults filled in), ``nodes`` and the GPU ``plan``."""

    def __init__(self, data, nodes, plan, source):
        self.data = data
        self.nodes = nodes
        self.plan = plan
        self.source = source

    @property
    def name(self):
        return self.data["metadata"]["name"]

    def nodes_of(self, cluster=None, role=None):
        return [n for n in self.nodes if (cluster is None or n.cluster == cluster)
                and (role is None or n.role == role)]

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def network(self, name):
        net = dict(self.data["global"]["networks"][name])
        subnet = ipaddress.IPv4Network(net["subnet"])
        net["name"] = name
        net.setdefault("gateway", str(next(subnet.hosts())))
        net["prefix"] = subnet.prefixlen
        net["netmask"] = str(subnet.netmask)
        return net

    def hypervisor_hosts(self):
        return self.data["hypervisor"]["hosts"]


class _Checker:
    """Collects issues; each semantic check reads ``data`` defensively."""

    def __init__(self, data, schema_failed):
        self.data = data
        self.issues = []
        self.schema_failed = schema_failed

    def add(self, path, message):
        if isinstance(path, (list, tuple)):
            path = format_path(path)
        self.issues.append(ConfigIssue(path, message))

    def run(self, check, *args):
        try:
            return check(self, *args)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            # Only reachable when the schema already reported malformed input.
            if not self.schema_failed:
                raise
            return None


def _check_version(data):
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or not re.match(r"^\d+\.\d+$", version):
        return None  # the schema reports the form
    major, minor = (int(x) for x in version.split("."))
    cur_major, cur_minor = (int(x) for x in SCHEMA_VERSION.split("."))
    if (major, minor) > (cur_major, cur_minor):
        return ConfigIssue("version", "%s is newer than the schema this collection supports (%s); "
                                      "upgrade aihow.hyperscaler" % (version, SCHEMA_VERSION))
    if major < cur_major or (major, minor) not in MIGRATIONS and (major, minor) != (cur_major, cur_minor):
        return ConfigIssue("version", "%s is not a known schema version; supported: %s"
                           % (version, ", ".join(SUPPORTED_VERSIONS)))
    return None


# Older schema versions and how to lift a file to the current one: {(major, minor): function}.
# 1.0 is the first schema version, so there is nothing to migrate yet.
MIGRATIONS = {}
SUPPORTED_VERSIONS = (SCHEMA_VERSION,)


def _check_networks(chk):
    nets = chk.data["global"]["networks"]
    parsed = {}
    bridges = {}
    for name, net in sorted(nets.items()):
        path = ["global", "networks", name]
        try:
            subnet = ipaddress.IPv4Network(net["subnet"], strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = "; did you mean %s?" % ipaddress.IPv4Network(net["subnet"], strict=False)
            except ValueError:
                pass
            chk.add(path + ["subnet"], "%r is not a valid IPv4 CIDR (%s)%s" % (net["subnet"], exc, hint))
            continue
        if subnet.prefixlen > 29:
            chk.add(path + ["subnet"], "%s is too small: use a /29 or larger (VMs need addresses "
                                       "besides network, gateway and broadcast)" % subnet)
            continue
        parsed[name] = subnet
        gateway = net.get("gateway")
        if gateway is not None:
            gw = ipaddress.IPv4Address(gateway)
            if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
                chk.add(path + ["gateway"], "%s is not a host address of %s" % (gw, subnet))
        if net["bridge"] in bridges:
            chk.add(path + ["bridge"], "bridge %r is already used by network %r"
                    % (net["bridge"], bridges[net["bridge"]]))
        bridges[net["bridge"]] = name
    names = sorted(parsed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if parsed[a].overlaps(parsed[b]):
                chk.add(["global", "networks", b, "subnet"], "%s overlaps %s of network %r"
                        % (parsed[b], parsed[a], a))
    return parsed


def _cluster_network(chk, cluster):
    name = chk.data["clusters"][cluster]["network"]
    if name not in chk.data["global"]["networks"]:
        chk.add(["clusters", cluster, "network"], "network %r is not defined in global.networks (defined: %s)"
                % (name, ", ".join(sorted(chk.data["global"]["networks"]))))
        return None
    return name


def _build_nodes(chk, networks):
    """Derive every node (name, resources, address) and check addresses and overrides."""
    data = chk.data
    nodes = []
    hosts = [h["name"] for h in data["hypervisor"]["hosts"]]
    used_ips = {}
    for cluster, role, path, pattern, single in NODE_GROUPS:
        spec = _get(data, path)
        if spec is None:
            continue
        net_name = chk.run(_cluster_network, cluster)
        subnet = networks.get(net_name) if net_name else None
        gateway = None
        if subnet is not None:
            gw = data["global"]["networks"][net_name].get("gateway")
            gateway = ipaddress.IPv4Address(gw) if gw else next(subnet.hosts())
        if single:
            names = [pattern]
            ips_path = list(path) + ["ip_address"]
            try:
                ips = [ipaddress.IPv4Address(spec["ip_address"])]
            except (ValueError, KeyError):
                ips = []
        else:
            count = spec["count"]
            names = [pattern % (i + 1) for i in range(count)]
            ips_path = list(path) + ["ip_range"]
            ips = []
            if count and "ip_range" not in spec:
                chk.add(ips_path, "is required when count is %d (e.g. a range of %d addresses)" % (count, count))
            elif "ip_range" in spec:
                try:
                    ips = parse_ip_range(spec["ip_range"])
                except ValueError as exc:
                    chk.add(ips_path, "%r is not a valid range: %s" % (spec["ip_range"], exc))
                if ips and len(ips) != count:
                    chk.add(ips_path, "%r holds %d address%s but count is %d" % (
                        spec["ip_range"], len(ips), "" if len(ips) == 1 else "es", count))
                    ips = []
        for ip in ips:
            where = format_path(ips_path)
            if subnet is not None:
                if ip not in subnet:
                    chk.add(ips_path, "%s is outside the %s subnet %s" % (ip, cluster, subnet))
                elif ip == subnet.network_address:
                    chk.add(ips_path, "%s is the network address of %s" % (ip, subnet))
                elif ip == subnet.broadcast_address:
                    chk.add(ips_path, "%s is the broadcast address of %s" % (ip, subnet))
                elif ip == gateway:
                    chk.add(ips_path, "%s is the gateway of %s (the host side of the bridge)" % (ip, subnet))
            if str(ip) in used_ips:
                chk.add(ips_path, "%s is also used by %s" % (ip, used_ips[str(ip)]))
            used_ips.setdefault(str(ip), where)
        overrides = spec.get("overrides", {}) if not single else {}
        for bad in sorted(set(overrides) - set(names)):
            chk.add(list(path) + ["overrides", bad], "no such node in this group; its nodes are: %s"
                    % (", ".join(names) or "none (count is 0)"))
        for i, name in enumerate(names):
            merged = dict(spec)
            merged.update(overrides.get(name, {}))
            host = merged.get("hypervisor_host") or hosts[0]
            if host not in hosts:
                where = list(path) + (["overrides", name] if "hypervisor_host" in overrides.get(name, {}) else [])
                chk.add(where + ["hypervisor_host"], "%r is not a hypervisor host; known: %s"
                        % (host, ", ".join(hosts)))
            nodes.append(Node(
                name=name, cluster=cluster, role=role, index=i + 1,
                cpu_cores=merged["cpu_cores"], memory_gb=merged["memory_gb"], disk_gb=merged["disk_gb"],
                ip_address=str(ips[i]) if i < len(ips) else None, network=net_name,
                gpu_enabled=bool(merged.get("gpu_enabled", False)), hypervisor_host=host,
                vm_name="%s-%s" % (data["metadata"]["name"], name),
                mac=stable_mac(data["metadata"]["name"], name), config_path=format_path(path)))
    return nodes


def _check_capacity(chk, nodes):
    hv = chk.data["hypervisor"]
    for i, host in enumerate(hv["hosts"]):
        cap = host.get("capacity")
        if not cap:
            continue
        mine = [n for n in nodes if n.hypervisor_host == host["name"]]
        path = ["hypervisor", "hosts", i, "capacity"]
        vcpus = sum(n.cpu_cores for n in mine)
        if "cpu_cores" in cap and vcpus > cap["cpu_cores"] * hv["cpu_overcommit"]:
            chk.add(path + ["cpu_cores"], "the VMs on %s ask for %d vCPUs; %d cores x cpu_overcommit %s allow %d"
                    % (host["name"], vcpus, cap["cpu_cores"], hv["cpu_overcommit"],
                       int(cap["cpu_cores"] * hv["cpu_overcommit"])))
        memory = sum(n.memory_gb for n in mine)
        if "memory_gb" in cap and memory > cap["memory_gb"] - hv["reserved_memory_gb"]:
            chk.add(path + ["memory_gb"], "the VMs on %s need %s GiB; %s GiB minus reserved_memory_gb %s leaves %s"
                    % (host["name"], memory, cap["memory_gb"], hv["reserved_memory_gb"],
                       cap["memory_gb"] - hv["reserved_memory_gb"]))
        disk = sum(n.disk_gb for n in mine)
        if "disk_gb" in cap and disk > cap["disk_gb"]:
            chk.add(path + ["disk_gb"], "the VMs on %s need up to %d GiB of disk; the host offers %d"
                    % (host["name"], disk, cap["disk_gb"]))


def _check_hypervisor_hosts(chk):
    seen = set()
    for i, host in enumerate(chk.data["hypervisor"]["hosts"]):
        if host["name"] in seen:
            chk.add(["hypervisor", "hosts", i, "name"], "duplicate hypervisor host name %r" % host["name"])
        seen.add(host["name"])


def _check_slurm(chk, nodes):
    slurm = chk.data["clusters"]["hpc"]["slurm_config"]
    names = []
    compute = set(n.name for n in nodes if n.cluster == "hpc" and n.role == "compute")
    for i, part in enumerate(slurm["partitions"]):
        name = part if isinstance(part, str) else part["name"]
        if name in names:
            chk.add(["clusters", "hpc", "slurm_config", "partitions", i], "duplicate partition %r" % name)
        names.append(name)
        if isinstance(part, dict) and isinstance(part.get("nodes"), list):
            for bad in sorted(set(part["nodes"]) - compute):
                chk.add(["clusters", "hpc", "slurm_config", "partitions", i, "nodes"],
                        "%r is not an HPC compute node; they are: %s" % (bad, ", ".join(sorted(compute))))
    default = slurm.get("default_partition")
    if default is not None and default not in names:
        chk.add(["clusters", "hpc", "slurm_config", "default_partition"],
                "%r is not one of the partitions (%s)" % (default, ", ".join(names)))


def _check_gpu_devices(chk):
    """Each device: unique id/address, a known model, MIG settings that model supports."""
    alloc = chk.data["global"]["gpu_allocation"]
    hosts = [h["name"] for h in chk.data["hypervisor"]["hosts"]]
    ids, addresses, models = {}, {}, {}
    for i, dev in enumerate(alloc["devices"]):
        path = ["global", "gpu_allocation", "devices", i]
        if dev["id"] in ids:
            chk.add(path + ["id"], "duplicate GPU id %r (also devices[%d])" % (dev["id"], ids[dev["id"]]))
        ids.setdefault(dev["id"], i)
        address = dev["pci_address"].lower()
        if address in addresses:
            chk.add(path + ["pci_address"], "PCI address %s is also devices[%d]" % (address, addresses[address]))
        addresses.setdefault(address, i)
        if dev.get("hypervisor_host") and dev["hypervisor_host"] not in hosts:
            chk.add(path + ["hypervisor_host"], "%r is not a hypervisor host; known: %s"
                    % (dev["hypervisor_host"], ", ".join(hosts)))
        try:
            model = gpu_catalog.resolve_model(dev["model"])
        except gpu_catalog.UnknownGpuModel as exc:
            chk.add(path + ["model"], str(exc))
            continue
        models[i] = model
        if dev.get("mig_capable") and not model.mig_capable:
            chk.add(path + ["mig_capable"], "%s does not support MIG (MIG GPUs: %s)" % (
                model.name, ", ".join(m.name for m in gpu_catalog.GPU_MODELS if m.mig_capable)))
        allowed = dev.get("allowed_mig_profiles")
        if allowed is None:
            continue
        if not model.mig_capable or dev.get("mig_capable") is False:
            chk.add(path + ["allowed_mig_profiles"], "MIG profiles are set but %s %s" % (
                model.name, "does not support MIG" if not model.mig_capable else "has mig_capable: false"))
            continue
        bad = [p for p in allowed if model.profile(p) is None]
        if bad:
            owners = {}
            for name in bad:
                for other in gpu_catalog.models_with_profile(name):
                    owners.setdefault(other.name, []).append(name)
            where = "; ".join("%s %s %s profile%s" % (", ".join(names), "is a" if len(names) == 1 else "are",
                                                      owner, "" if len(names) == 1 else "s")
                              for owner, names in sorted(owners.items()))
            chk.add(path + ["allowed_mig_profiles"], "%s %s not %s profile%s%s; %s offers: %s" % (
                ", ".join(bad), "is" if len(bad) == 1 else "are", model.name,
                "" if len(bad) == 1 else "s", " (%s)" % where if where else "",
                model.name, ", ".join(model.profile_names())))
    return models


def _check_strategy(chk):
    alloc = chk.data["global"]["gpu_allocation"]
    strategy = alloc["strategy"]
    base = ["global", "gpu_allocation"]
    for cluster in CLUSTERS:
        whole = alloc["whole_gpus"].get(cluster, 0)
        mig = alloc["mig_slices"].get(cluster, 0)
        if strategy == "mig" and whole:
            chk.add(base + ["whole_gpus", cluster], "strategy 'mig' hands out MIG slices only; "
                    "set whole_gpus.%s to 0 or use strategy 'hybrid'" % cluster)
        if strategy == "whole" and mig:
            chk.add(base + ["mig_slices", cluster], "strategy 'whole' hands out whole GPUs only; "
                    "set mig_slices.%s to 0 or use strategy 'hybrid'" % cluster)
        if (whole or mig) and cluster not in chk.data["clusters"]:
            key = "whole_gpus" if whole else "mig_slices"
            chk.add(base + [key, cluster], "GPUs are allocated to the %s cluster, which is not defined" % cluster)


def _derived_defaults(data):
    """Defaults that depend on other values (the schema's ``default`` cannot express them)."""
    name = _get(data, ("metadata", "name"))
    if not isinstance(name, str):
        return data
    pool = _get(data, ("hypervisor", "storage_pool"))
    if isinstance(pool, dict):
        pool.setdefault("name", "%s-pool" % name)
    images = data.get("images")
    if isinstance(images, dict):
        for cluster in CLUSTERS:
            if isinstance(images.get(cluster), dict):
                images[cluster].setdefault("name", "%s-base" % cluster)
    return data


def build_cluster_config(raw, source="cluster.yaml"):
    """Validate a parsed cluster.yaml mapping and return a ClusterConfig (or raise ConfigError)."""
    # Imported here: gpu_plan imports this module's helpers.
    from ansible_collections.aihow.hyperscaler.plugins.module_utils import gpu_plan

    dep = missing_dependency()
    if dep:
        raise ConfigError(source, [ConfigIssue("", "the Python library %s is required to read cluster.yaml; "
                                                   "install it on the Ansible controller" % dep)])
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must hold a mapping (version, metadata, global, "
                                                   "clusters), not %s" % type(raw).__name__)])
    issues = []
    version_issue = _check_version(raw)
    if version_issue:
        raise ConfigError(source, [version_issue])
    issues.extend(schema_issues(raw))
    data = _derived_defaults(apply_defaults(raw))
    chk = _Checker(data, schema_failed=bool(issues))
    chk.run(_check_hypervisor_hosts)
    networks = chk.run(_check_networks) or {}
    nodes = chk.run(_build_nodes, networks) or []
    chk.run(_check_capacity, nodes)
    if "hpc" in data.get("clusters", {}):
        chk.run(_check_slurm, nodes)
    plan = None
    if isinstance(data.get("global"), dict) and "gpu_allocation" in data["global"]:
        models = chk.run(_check_gpu_devices) or {}
        chk.run(_check_strategy)
        # The plan needs sound GPU settings; problems elsewhere do not stop it, so they are all reported.
        gpu_paths = ("global.gpu_allocation", "hypervisor")
        blocked = [i for i in issues + chk.issues if i.path.startswith(gpu_paths)
                   or i.path.endswith(("gpu_enabled", ".count", ".overrides"))]
        if not blocked:
            plan = chk.run(gpu_plan.build_plan, models, nodes)
    else:
        for node in nodes:
            if node.gpu_enabled:
                chk.add(node.config_path + ".gpu_enabled",
                        "%s has gpu_enabled but global.gpu_allocation defines no GPUs" % node.name)
                break
    issues.extend(chk.issues)
    if issues:
        raise ConfigError(source, issues)
    if plan is None:
        plan = gpu_plan.empty_plan()
    return ClusterConfig(data, nodes, plan, source)


def load_cluster_config(path):
    """Read and validate a cluster.yaml file; ConfigError names the file and every problem."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise ConfigError(path, [ConfigIssue("", "cannot read the file: %s" % exc.strerror)])
    return parse_cluster_config(text, path)


def parse_cluster_config(text, source="cluster.yaml"):
    if not HAS_YAML:
        raise ConfigError(source, [ConfigIssue("", "the Python library PyYAML is required")])
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else "(unknown position)"
        raise ConfigError(source, [ConfigIssue(where, "not valid YAML: %s" % getattr(exc, "problem", exc))])
    return build_cluster_config(raw, source)
