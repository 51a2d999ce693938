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
import math
import os
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2
    from urlparse import urlsplit

try:
    import jsonschema
    HAS_JSONSCHEMA = True
except ImportError:  # pragma: no cover - reported by missing_dependency()
    HAS_JSONSCHEMA = False

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.schema import CLUSTER_SCHEMA
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.yaml_loader import (
    HAS_YAML,
    MAX_BYTES as MAX_FILE_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    YamlProblem,
    decode_text,
    load_yaml_text,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import CLUSTERS, stable_mac

SCHEMA_VERSION = "1.0"


class ConfigIssue:
    """One problem: where (dotted path, and the file's line when known) and what is wrong / what would be valid."""

    def __init__(self, path, message, line=None):
        self.path = path or "(top level)"
        self.message = message
        self.line = line

    def __str__(self):
        if self.line is not None and not self.path.startswith("line "):
            return "%s (line %d): %s" % (self.path, self.line, self.message)
        return "%s: %s" % (self.path, self.message)

    def __repr__(self):
        return "ConfigIssue(%r, %r, line=%r)" % (self.path, self.message, self.line)

    def as_dict(self):
        out = {"path": self.path, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        return out


MAX_REPORTED_ISSUES = 100


class ConfigError(Exception):
    """cluster.yaml is invalid; ``issues`` lists every problem found."""

    def __init__(self, source, issues):
        self.source = source
        # A check that runs per node group may find one problem twice: report it once.
        self.issues, seen = [], set()
        for issue in issues:
            if (issue.path, issue.message) not in seen:
                seen.add((issue.path, issue.message))
                self.issues.append(issue)
        if len(self.issues) > MAX_REPORTED_ISSUES:
            # A file mangled throughout would otherwise bury the first problems under thousands.
            more = len(self.issues) - MAX_REPORTED_ISSUES
            self.issues = self.issues[:MAX_REPORTED_ISSUES] + [ConfigIssue("", "and %d more problems not listed; "
                                                                               "fix these first" % more)]
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
            # An empty key still needs a name in the path, or its problem would read as top level.
            out += ("." if out else "") + (str(part) if part != "" else '""')
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
        if "oneOf" in schema and "properties" not in schema and "items" not in schema:
            # The form that can hold this part (a partition's map form holds its nodes).
            forms = [_resolve(f, root) for f in schema["oneOf"]]
            schema = next((f for f in forms if part in f.get("properties", {}) or
                           (isinstance(part, int) and "items" in f)), {})
        if isinstance(part, int):
            schema = _resolve(schema.get("items", {}), root)
        elif part in schema.get("properties", {}):
            schema = _resolve(schema["properties"][part], root)
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = _resolve(schema["additionalProperties"], root)
        else:
            return {}
    return schema


def _show(value, limit=60):
    """repr() of a value for a message, cut short: a mutated file may hold a megabyte in one field."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[:limit - 3] + "..."


def _describe_type(err):
    want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
    value = err.instance
    if isinstance(value, float) and not math.isfinite(value):
        return "%s is not a finite number; use a %s" % (value, want)
    if isinstance(value, float) and value.is_integer() and "integer" in want:
        return "%r is not an integer; write %d" % (value, int(value))
    return "must be of type %s, got %s" % (want, _show(value))


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
            msg = "unknown key %s" % _show(key)
            msg += " (did you mean %r?)" % hint[0] if hint else ""
            msg += "; valid keys: %s" % ", ".join(allowed) if allowed else ""
            issues.append(ConfigIssue(format_path(path + [key]), msg))
        return issues
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        key = missing[0] if missing else err.message
        return [ConfigIssue(format_path(path + [key]), "is required but missing")]
    if validator == "enum":
        return [ConfigIssue(format_path(path), "%s is not allowed; use one of: %s"
                            % (_show(err.instance), ", ".join(str(v) for v in err.validator_value)))]
    if validator == "const":
        return [ConfigIssue(format_path(path), "must be %r" % (err.validator_value,))]
    if validator == "type":
        return [ConfigIssue(format_path(path), _describe_type(err))]
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sub = _subschema_at(root, path)
        if "exclusiveMinimum" in sub or "exclusiveMaximum" in sub:
            low = ("greater than %s" % sub["exclusiveMinimum"] if "exclusiveMinimum" in sub
                   else "at least %s" % sub.get("minimum", "-inf"))
            high = ("less than %s" % sub["exclusiveMaximum"] if "exclusiveMaximum" in sub
                    else "at most %s" % sub.get("maximum", "inf"))
            bounds = "%s and %s" % (low, high)
        else:
            bounds = "between %s and %s" % (sub.get("minimum", "-inf"), sub.get("maximum", "inf"))
        return [ConfigIssue(format_path(path), "%s is out of range; must be %s" % (_show(err.instance), bounds))]
    if validator == "maxLength":
        return [ConfigIssue(format_path(path), "is %d characters long; at most %d are allowed"
                            % (len(err.instance), err.validator_value))]
    if validator == "minLength":
        return [ConfigIssue(format_path(path), "must not be empty")]
    if validator == "multipleOf":
        return [ConfigIssue(format_path(path), "%r must be a multiple of %s" % (err.instance, err.validator_value))]
    if validator == "pattern" and "propertyNames" in err.absolute_schema_path:
        return [ConfigIssue(format_path(path + [str(err.instance)]), "%s is not a valid name here: it must match %s"
                            % (_show(err.instance), err.validator_value))]
    if validator == "pattern":
        sub = _subschema_at(root, path)
        hint = sub.get("description") or "it must match %s" % err.validator_value
        return [ConfigIssue(format_path(path), "%s is not valid: %s" % (_show(err.instance), hint))]
    if validator == "propertyNames":
        return [ConfigIssue(format_path(path), "key %s is not a valid name (it must match %s)"
                            % (_show(err.instance), err.schema.get("propertyNames", {}).get("pattern")))]
    if validator == "oneOf":
        # A value of a form's type that fails inside that form (a partition map with a bad key, a node
        # list too long) is told what failed there; a value of no form's type gets the field's description.
        inside = [e for e in err.context
                  if e.validator not in ("type", "enum", "const") or len(e.absolute_path) > len(err.absolute_path)]
        if inside:
            return _describe_error(jsonschema.exceptions.best_match(inside), root)
        sub = _subschema_at(root, path)
        hint = sub.get("description") or "it matches none of the allowed forms"
        return [ConfigIssue(format_path(path), "%s is not valid: %s" % (_show(err.instance), hint))]
    if validator in ("minItems", "minProperties"):
        return [ConfigIssue(format_path(path), "must not be empty")]
    if validator in ("maxItems", "maxProperties"):
        return [ConfigIssue(format_path(path), "has %d entries; at most %d are allowed"
                            % (len(err.instance), err.validator_value))]
    if validator == "uniqueItems":
        return [ConfigIssue(format_path(path), "has duplicate entries")]
    return [ConfigIssue(format_path(path), err.message[:200])]


def _strict_validator_class():
    """Draft 2020-12 where 2.0 is not an integer and nan/inf are not numbers.

    JSON Schema counts 2.0 as an integer, so ``count: 2.0`` would pass and then break
    ``range()``; YAML's .nan and .inf would pass ``number`` and break every comparison.
    """
    base = jsonschema.Draft202012Validator

    def is_integer(_checker, instance):
        return isinstance(instance, int) and not isinstance(instance, bool)

    def is_number(_checker, instance):
        if isinstance(instance, bool):
            return False
        if isinstance(instance, float):
            return math.isfinite(instance)
        return isinstance(instance, int)

    checker = base.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    return jsonschema.validators.extend(base, type_checker=checker)


_VALIDATOR = []


# Schema keywords whose failure means a list or map is larger than any check should walk.
SIZE_KEYWORDS = ("maxItems", "maxProperties")


def schema_issues(data):
    """(issues, oversized): every schema problem, and whether one was a size limit (maxItems/maxProperties)."""
    root = load_schema()
    if not _VALIDATOR:
        _VALIDATOR.append(_strict_validator_class()(root))
    validator = _VALIDATOR[0]
    issues = []
    oversized = False
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        issues.extend(_describe_error(err, root))
        oversized = oversized or _is_size_error(err)
    return issues, oversized


def _is_size_error(err):
    return err.validator in SIZE_KEYWORDS or any(_is_size_error(sub) for sub in err.context)


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

# The most nodes a group may have (the schema's maximum of node_group.count): ranges are sized before listed.
MAX_GROUP_SIZE = CLUSTER_SCHEMA["$defs"]["node_group"]["properties"]["count"]["maximum"]


def parse_ip_range(text):
    """'a.b.c.d', 'a.b.c.d-e' or 'a.b.c.d-w.x.y.z' -> list of IPv4Address (ValueError if bad).

    A range of more than MAX_GROUP_SIZE addresses is refused before it is listed.
    """
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
    size = int(end) - int(start) + 1
    if size > MAX_GROUP_SIZE:
        raise ValueError("it holds %d addresses; a node group has at most %d nodes" % (size, MAX_GROUP_SIZE))
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
    def memory_mib(self):
        return int(round(self.memory_gb * 1024))

    def as_dict(self):
        out = dict((k, getattr(self, k)) for k in self.__slots__)
        out["memory_mib"] = self.memory_mib
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

    def __init__(self, data, schema_issues_found, raw=None):
        self.data = data
        self.raw = raw if raw is not None else data
        self.issues = []
        self.schema_failed = bool(schema_issues_found)
        self.schema_paths = set(i.path for i in schema_issues_found)

    def add(self, path, message):
        if isinstance(path, (list, tuple)):
            path = format_path(path)
        if any(path == p or path.startswith((p + ".", p + "[")) for p in self.schema_paths):
            return  # the schema already said this value is malformed; a second word on it is noise
        self.issues.append(ConfigIssue(path, message))

    def written(self, path):
        """Whether the file itself sets the value at ``path`` (not a default)."""
        value = self.raw
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        return True

    def run(self, check, *args):
        try:
            return check(self, *args)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
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


# Interfaces a lab network must not take over: the host's own, or another tool's.
RESERVED_BRIDGES = {
    "lo": "the loopback interface",
    "virbr0": "the bridge of libvirt's own 'default' network",
    "docker0": "Docker's bridge",
    "podman0": "podman's bridge",
}


def _check_networks(checker):
    nets = checker.data["global"]["networks"]
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
            checker.add(path + ["subnet"], "%r is not a valid IPv4 CIDR (%s)%s" % (net["subnet"], exc, hint))
            continue
        if subnet.prefixlen > 29:
            checker.add(path + ["subnet"], "%s is too small: use a /29 or larger (VMs need addresses "
                        "besides network, gateway and broadcast)" % subnet)
            continue
        parsed[name] = subnet
        gateway = net.get("gateway")
        if gateway is not None:
            gw = ipaddress.IPv4Address(gateway)
            if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
                checker.add(path + ["gateway"], "%s is not a host address of %s" % (gw, subnet))
        if net["bridge"] in RESERVED_BRIDGES:
            checker.add(path + ["bridge"], "%r is %s; name a bridge of this lab's own (e.g. hs%s0)"
                        % (net["bridge"], RESERVED_BRIDGES[net["bridge"]], name.split("_")[0][:8]))
        elif net["bridge"] in bridges:
            checker.add(path + ["bridge"], "bridge %r is already used by network %r"
                        % (net["bridge"], bridges[net["bridge"]]))
        bridges[net["bridge"]] = name
    names = sorted(parsed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if parsed[a].overlaps(parsed[b]):
                checker.add(["global", "networks", b, "subnet"], "%s overlaps %s of network %r"
                            % (parsed[b], parsed[a], a))
    return parsed


def _cluster_network(checker, cluster):
    name = checker.data["clusters"][cluster]["network"]
    if name not in checker.data["global"]["networks"]:
        checker.add(["clusters", cluster, "network"], "network %r is not defined in global.networks (defined: %s)"
                    % (name, ", ".join(sorted(checker.data["global"]["networks"]))))
        return None
    return name


def _build_nodes(checker, networks):
    """Derive every node (name, resources, address) and check addresses and overrides."""
    data = checker.data
    nodes = []
    hosts = [h["name"] for h in data["hypervisor"]["hosts"]]
    known_hosts = set(hosts)
    used_ips = {}
    for cluster, role, path, pattern, single in NODE_GROUPS:
        spec = _get(data, path)
        if spec is None:
            continue
        net_name = checker.run(_cluster_network, cluster)
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
            if not (isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_GROUP_SIZE):
                continue  # the schema reports it; never iterate a size it rejects
            names = [pattern % (i + 1) for i in range(count)]
            ips_path = list(path) + ["ip_range"]
            ips = []
            if count and "ip_range" not in spec:
                checker.add(ips_path, "is required when count is %d (e.g. a range of %d addresses)" % (count, count))
            elif "ip_range" in spec:
                try:
                    ips = parse_ip_range(spec["ip_range"])
                except ValueError as exc:
                    checker.add(ips_path, "%r is not a valid range: %s" % (spec["ip_range"], exc))
                if ips and len(ips) != count:
                    checker.add(ips_path, "%r holds %d address%s but count is %d" % (
                        spec["ip_range"], len(ips), "" if len(ips) == 1 else "es", count))
                    ips = []
        for ip in ips:
            where = format_path(ips_path)
            if subnet is not None:
                if ip not in subnet:
                    checker.add(ips_path, "%s is outside the %s subnet %s" % (ip, cluster, subnet))
                elif ip == subnet.network_address:
                    checker.add(ips_path, "%s is the network address of %s" % (ip, subnet))
                elif ip == subnet.broadcast_address:
                    checker.add(ips_path, "%s is the broadcast address of %s" % (ip, subnet))
                elif ip == gateway:
                    checker.add(ips_path, "%s is the gateway of %s (the host side of the bridge)" % (ip, subnet))
            if str(ip) in used_ips:
                checker.add(ips_path, "%s is also used by %s" % (ip, used_ips[str(ip)]))
            used_ips.setdefault(str(ip), where)
        overrides = spec.get("overrides", {}) if not single else {}
        for bad in sorted(set(overrides) - set(names)):
            checker.add(list(path) + ["overrides", bad], "no such node in this group; its nodes are: %s"
                        % (", ".join(names) or "none (count is 0)"))
        for i, name in enumerate(names):
            merged = dict(spec)
            merged.update(overrides.get(name, {}))
            if role == "cpu_worker" and overrides.get(name, {}).get("gpu_enabled"):
                # The group's gpu_enabled is const false in the schema; an override must not bring a GPU in.
                checker.add(list(path) + ["overrides", name, "gpu_enabled"], "a CPU worker never gets a GPU; "
                            "put GPU nodes in worker_nodes.gpu_workers")
            host = merged.get("hypervisor_host") or hosts[0]
            if host not in known_hosts:
                where = list(path) + (["overrides", name] if "hypervisor_host" in overrides.get(name, {}) else [])
                checker.add(where + ["hypervisor_host"], "%r is not a hypervisor host; known: %s"
                            % (host, ", ".join(hosts)))
            nodes.append(Node(
                name=name, cluster=cluster, role=role, index=i + 1,
                cpu_cores=merged["cpu_cores"], memory_gb=merged["memory_gb"], disk_gb=merged["disk_gb"],
                ip_address=str(ips[i]) if i < len(ips) else None, network=net_name,
                gpu_enabled=bool(merged.get("gpu_enabled", False)), hypervisor_host=host,
                vm_name="%s-%s" % (data["metadata"]["name"], name),
                mac=stable_mac(data["metadata"]["name"], name), config_path=format_path(path)))
    return nodes


def _check_capacity(checker, nodes):
    hv = checker.data["hypervisor"]
    # A sum over a value the schema rejected (1e308 GiB) would only repeat that problem.
    rejected = set(p.rsplit(".", 1)[-1] for p in checker.schema_paths if p.startswith("clusters."))
    for i, host in enumerate(hv["hosts"]):
        cap = host.get("capacity")
        if not cap:
            continue
        mine = [n for n in nodes if n.hypervisor_host == host["name"]]
        path = ["hypervisor", "hosts", i, "capacity"]
        vcpus = sum(n.cpu_cores for n in mine)
        if "cpu_cores" in cap and "cpu_cores" not in rejected and vcpus > cap["cpu_cores"] * hv["cpu_overcommit"]:
            checker.add(path + ["cpu_cores"], "the VMs on %s ask for %d vCPUs; %d cores x cpu_overcommit %s allow %d"
                        % (host["name"], vcpus, cap["cpu_cores"], hv["cpu_overcommit"],
                           int(cap["cpu_cores"] * hv["cpu_overcommit"])))
        memory = sum(n.memory_gb for n in mine)
        if "memory_gb" in cap and "memory_gb" not in rejected and memory > cap["memory_gb"] - hv["reserved_memory_gb"]:
            checker.add(path + ["memory_gb"], "the VMs on %s need %s GiB; %s GiB minus reserved_memory_gb %s leaves %s"
                        % (host["name"], memory, cap["memory_gb"], hv["reserved_memory_gb"],
                           cap["memory_gb"] - hv["reserved_memory_gb"]))
        disk = sum(n.disk_gb for n in mine)
        if "disk_gb" in cap and "disk_gb" not in rejected and disk > cap["disk_gb"]:
            checker.add(path + ["disk_gb"], "the VMs on %s need up to %d GiB of disk; the host offers %d"
                        % (host["name"], disk, cap["disk_gb"]))


def _check_hypervisor_hosts(checker):
    seen = set()
    for i, host in enumerate(checker.data["hypervisor"]["hosts"]):
        if host["name"] in seen:
            checker.add(["hypervisor", "hosts", i, "name"], "duplicate hypervisor host name %r" % host["name"])
        seen.add(host["name"])


SLURM_TIME_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"
_SLURM_TIME = re.compile(r"^(?:(?P<days>[0-9]+)-(?P<dh>[0-9]+)(?::(?P<dm>[0-9]+)(?::(?P<ds>[0-9]+))?)?"
                         r"|(?P<a>[0-9]+)(?::(?P<b>[0-9]+)(?::(?P<c>[0-9]+))?)?)$")


def slurm_time_minutes(text):
    """A Slurm time string -> minutes, seconds rounded up as Slurm does (None: UNLIMITED).

    ValueError names the field that is out of range: minutes and seconds are 0-59, and so are
    hours (0-23) once days are given; only the leading field may be larger.
    """
    if text in ("UNLIMITED", "infinite", "INFINITE"):
        return None
    match = _SLURM_TIME.match(text or "")
    if not match:
        raise ValueError("not a Slurm time; use %s" % SLURM_TIME_FORMS)
    g = match.groupdict()
    if g["days"] is not None:
        days, hours, minutes, seconds = (int(g[k] or 0) for k in ("days", "dh", "dm", "ds"))
        if hours > 23:
            raise ValueError("hours after the days must be 0-23, got %d" % hours)
    elif g["c"] is not None:
        days, hours, minutes, seconds = 0, int(g["a"]), int(g["b"]), int(g["c"])
    else:
        days, hours, minutes, seconds = 0, 0, int(g["a"]), int(g["b"] or 0)
        if g["b"] is None:
            return minutes
    if g["days"] is not None or g["c"] is not None:
        if minutes > 59:
            raise ValueError("minutes must be 0-59, got %d" % minutes)
    if seconds > 59:
        raise ValueError("seconds must be 0-59, got %d" % seconds)
    return ((days * 24 + hours) * 60 + minutes) + (1 if seconds else 0)


def slurm_time_display(text):
    """A Slurm time as sacctmgr and slurmctld print a limit in minutes: [D-]HH:MM:SS ('' when UNLIMITED).

    ``sacctmgr show qos`` prints MaxWall this way, so a wanted value written in this form compares
    equal to what is set (``30`` and ``0:30`` are both ``00:30:00``; seconds round up to a minute).
    """
    minutes = slurm_time_minutes(text)
    if minutes is None:
        return ""
    days, rest = divmod(minutes, 24 * 60)
    shown = "%02d:%02d:00" % divmod(rest, 60)
    return "%d-%s" % (days, shown) if days else shown


def _check_slurm_time(checker, path, value):
    if not isinstance(value, str):
        return  # the schema reports the type
    try:
        slurm_time_minutes(value)
    except ValueError as exc:
        checker.add(path, "%s is not a valid Slurm time: %s (forms: %s)" % (_show(value), exc, SLURM_TIME_FORMS))


def partition_members(part, compute):
    """Host names a partition selects from ``compute`` (Nodes, in order): all, gpu, cpu or a list."""
    selector = part.get("nodes", "all") if isinstance(part, dict) else "all"
    if selector == "all":
        return [n.name for n in compute]
    if selector in ("gpu", "cpu"):
        return [n.name for n in compute if bool(n.gpu_enabled) == (selector == "gpu")]
    return [n.name for n in compute if n.name in selector]


def _check_slurm(checker, nodes):
    base = ["clusters", "hpc", "slurm_config"]
    slurm = checker.data["clusters"]["hpc"]["slurm_config"]
    compute = dict((n.name, n) for n in nodes if n.cluster == "hpc" and n.role == "compute")
    group = checker.data["clusters"]["hpc"]["compute_nodes"]
    if group.get("count") == 0:
        checker.add(["clusters", "hpc", "compute_nodes", "count"],
                    "an HPC cluster needs at least 1 compute node (Slurm partitions cannot be empty); "
                    "leave the hpc cluster out for a cloud-only lab")
    _check_slurm_time(checker, base + ["max_job_time"], slurm.get("max_job_time"))
    names = []
    for i, part in enumerate(slurm["partitions"]):
        name = part if isinstance(part, str) else part["name"]
        if name in names:
            checker.add(base + ["partitions", i], "duplicate partition %r" % name)
        names.append(name)
        if not isinstance(part, dict):
            continue
        if "max_time" in part:
            _check_slurm_time(checker, base + ["partitions", i, "max_time"], part["max_time"])
        listed = part.get("nodes")
        if isinstance(listed, list):
            for bad in sorted(set(listed) - set(compute)):
                checker.add(base + ["partitions", i, "nodes"],
                            "%r is not an HPC compute node; they are: %s" % (bad, ", ".join(sorted(compute))))
            seen = set()
            twice = sorted(set(n for n in listed if n in seen or seen.add(n)))
            if twice:
                checker.add(base + ["partitions", i, "nodes"], "lists %s more than once; name each node once"
                            % ", ".join(twice))
        elif compute and not partition_members(part, list(compute.values())):
            wanted = "GPU-enabled" if listed == "gpu" else "without a GPU"
            checker.add(base + ["partitions", i, "nodes"], "%r selects no node: no compute node is %s; "
                        "use all, or set gpu_enabled on the nodes" % (listed, wanted))
    default = slurm.get("default_partition")
    if default is not None and default not in names:
        checker.add(base + ["default_partition"],
                    "%r is not one of the partitions (%s)" % (default, ", ".join(names)))
    _check_slurm_qos(checker, base, slurm)


# ------------------------------------------------------------------ clusters.hpc.containers

# Ports the HPC controller already listens on (roles slurm, munge, shared_storage, monitoring): the
# container registry needs another one.
CONTROLLER_PORTS = {22: "SSH", 111: "rpcbind (NFS)", 2049: "the NFS server", 3306: "MariaDB (slurmdbd's database)",
                    6817: "slurmctld", 6818: "slurmd", 6819: "slurmdbd", 9090: "Prometheus"}


def _check_containers(checker):
    base = ["clusters", "hpc", "containers"]
    containers = checker.data["clusters"]["hpc"].get("containers")
    if not isinstance(containers, dict) or containers.get("runtime") == "none":
        return
    registry = containers["registry"]
    port = registry["port"]
    if not registry["enabled"] or not isinstance(port, int) or isinstance(port, bool):
        return
    taken = dict(CONTROLLER_PORTS)
    if checker.data["monitoring"]["enabled"]:
        taken[checker.data["monitoring"]["node_exporter_port"]] = "the node exporter (monitoring.node_exporter_port)"
    if port in taken:
        checker.add(base + ["registry", "port"], "%d is %s's port on the HPC controller; the registry needs "
                    "its own (default 5000)" % (port, taken[port]))


# QoS live in the accounting database: without slurmdbd there is nowhere to create one.
DEFAULT_QOS = CLUSTER_SCHEMA["$defs"]["hpc_cluster"]["properties"]["slurm_config"]["properties"]["qos"]["default"]


def _check_slurm_qos(checker, base, slurm):
    qos_list = slurm.get("qos") or []
    if slurm.get("accounting") is False and qos_list and qos_list != DEFAULT_QOS:
        checker.add(base + ["qos"], "QoS need accounting: Slurm keeps them in slurmdbd, which accounting: false "
                    "does not run; set accounting: true, or leave qos out (or [])")
    qos_names = {}
    for i, qos in enumerate(qos_list):
        if qos["name"] in qos_names:
            checker.add(base + ["qos", i, "name"], "duplicate QoS %r (also qos[%d])" % (qos["name"], qos_names[qos["name"]]))
        qos_names.setdefault(qos["name"], i)
        if "max_wall" in qos:
            _check_slurm_time(checker, base + ["qos", i, "max_wall"], qos["max_wall"])


def _check_local_files(checker):
    """Files cluster.yaml names on the Ansible controller, where images are built."""
    images = checker.data.get("images")
    for kind in CLUSTERS:
        image = images.get(kind) if isinstance(images, dict) else None
        path = image.get("base_image") if isinstance(image, dict) else None
        if not isinstance(path, str) or not path.startswith(("/", "~/")):
            continue  # absent, or the schema reports the form
        full = os.path.expanduser(path)
        if not os.path.isfile(full):
            checker.add(["images", kind, "base_image"], "%s %s on this controller; give the path of an existing "
                        "qcow2 image, or leave base_image out to build the base disk"
                        % (path, "is not a regular file" if os.path.exists(full) else "does not exist"))


def _check_gpu_devices(checker):
    """Each device: unique id/address, a known model, MIG settings that model supports."""
    alloc = checker.data["global"]["gpu_allocation"]
    hosts = [h["name"] for h in checker.data["hypervisor"]["hosts"]]
    ids, addresses, models = {}, {}, {}
    for i, dev in enumerate(alloc["devices"]):
        path = ["global", "gpu_allocation", "devices", i]
        if dev["id"] in ids:
            checker.add(path + ["id"], "duplicate GPU id %r (also devices[%d])" % (dev["id"], ids[dev["id"]]))
        ids.setdefault(dev["id"], i)
        address = dev["pci_address"].lower()
        if address in addresses:
            checker.add(path + ["pci_address"], "PCI address %s is also devices[%d]" % (address, addresses[address]))
        addresses.setdefault(address, i)
        if dev.get("hypervisor_host") and dev["hypervisor_host"] not in hosts:
            checker.add(path + ["hypervisor_host"], "%r is not a hypervisor host; known: %s"
                        % (dev["hypervisor_host"], ", ".join(hosts)))
        try:
            model = gpu_catalog.resolve_model(dev["model"])
        except gpu_catalog.UnknownGpuModel as exc:
            checker.add(path + ["model"], str(exc))
            continue
        models[i] = model
        if dev.get("mig_capable") and not model.mig_capable:
            checker.add(path + ["mig_capable"], "%s does not support MIG (MIG GPUs: %s)" % (
                model.name, ", ".join(m.name for m in gpu_catalog.GPU_MODELS if m.mig_capable)))
        allowed = dev.get("allowed_mig_profiles")
        if allowed is None:
            continue
        if not model.mig_capable or dev.get("mig_capable") is False:
            checker.add(path + ["allowed_mig_profiles"], "MIG profiles are set but %s %s" % (
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
            checker.add(path + ["allowed_mig_profiles"], "%s %s not %s profile%s%s; %s offers: %s" % (
                ", ".join(bad), "is" if len(bad) == 1 else "are", model.name,
                "" if len(bad) == 1 else "s", " (%s)" % where if where else "",
                model.name, ", ".join(model.profile_names())))
    return models


def _check_strategy(checker):
    alloc = checker.data["global"]["gpu_allocation"]
    strategy = alloc["strategy"]
    base = ["global", "gpu_allocation"]
    for cluster in CLUSTERS:
        whole = alloc["whole_gpus"].get(cluster, 0)
        mig = alloc["mig_slices"].get(cluster, 0)
        if strategy == "mig" and whole:
            checker.add(base + ["whole_gpus", cluster], "strategy 'mig' hands out MIG slices only; "
                        "set whole_gpus.%s to 0 or use strategy 'hybrid'" % cluster)
        if strategy == "whole" and mig:
            checker.add(base + ["mig_slices", cluster], "strategy 'whole' hands out whole GPUs only; "
                        "set mig_slices.%s to 0 or use strategy 'hybrid'" % cluster)
        if (whole or mig) and cluster not in checker.data["clusters"]:
            key = "whole_gpus" if whole else "mig_slices"
            checker.add(base + [key, cluster], "GPUs are allocated to the %s cluster, which is not defined" % cluster)


# --------------------------------------------------------------------------- mlops

# The artifact directory of store local when the file names none (with store s3 there is none).
MLOPS_ARTIFACTS_PATH = CLUSTER_SCHEMA["$defs"]["mlops"]["properties"]["tracking"]["properties"]["artifacts"][
    "properties"]["path"]["default"]
CLOUD_WORKER_ROLES = ("cpu_worker", "gpu_worker")
_MLFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MLFLOW_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MLFLOW_VERSION_ALIAS = re.compile(r"^[vV][0-9]+$")  # MLflow reserves these: they name versions
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def mlflow_model_name_problem(name):
    """Why MLflow, or the model servers' URLs (/v2/models/<name>), would refuse a model name; None if fine."""
    if not isinstance(name, str):
        return None  # the schema reports the type
    if not name:
        return "is empty; name the registered model (e.g. digits-cnn)"
    bad = sorted(set(c for c in name if c in "/:%.'\""))
    if bad:
        return ("%s: MLflow refuses %s in model names (/ : %% in registered models, . ' \" in logged ones); "
                "use letters, digits, _ and -" % (_show(name), " ".join(bad)))
    if not _MLFLOW_NAME.match(name):
        return ("%s is not a model name the lab can serve: use 1-64 letters, digits, _ and -, starting with a "
                "letter or digit (the servers' URLs hold it: /v2/models/<name>)" % _show(name))
    return None


def mlflow_alias_problem(alias):
    """Why MLflow would refuse a model version alias; None if fine."""
    if not isinstance(alias, str):
        return None  # the schema reports the type
    if not alias:
        return "is empty; name the alias the servers load (e.g. champion)"
    if not _MLFLOW_ALIAS.match(alias):
        return "%s is not an MLflow alias: use 1-64 letters, digits, _ and - (e.g. champion)" % _show(alias)
    if alias.lower() == "latest":
        return "%r is reserved by MLflow (case-insensitive: it means the newest version); use e.g. champion" % alias
    if _MLFLOW_VERSION_ALIAS.match(alias):
        return "%r is reserved by MLflow: v<digits> names a model version; use e.g. champion" % alias
    return None


def _s3_endpoint_problem(url):
    example = "write http(s)://host[:port], e.g. http://minio.example:9000"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return "%s is not a URL (%s); %s" % (_show(url), exc, example)
    if parts.scheme not in ("http", "https"):
        return "%s is not an http(s) URL; %s" % (_show(url), example)
    if not parts.hostname or not _HOST_NAME.match(parts.hostname) or "@" in parts.netloc:
        return "%s does not name a host; %s" % (_show(url), example)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "%s has a path, query or fragment; an S3 endpoint is a host: %s" % (_show(url), example)
    if port == 0:
        return "%s has port 0; %s" % (_show(url), example)
    return None


def _s3_bucket_problem(name):
    rules = "3-63 of a-z, 0-9, . and -, starting and ending with a letter or digit, no '..', not an IP address"
    if not _S3_BUCKET.match(name) or ".." in name or re.match(r"^[0-9]+(\.[0-9]+){3}$", name):
        return "%s is not a valid S3 bucket name (%s)" % (_show(name), rules)
    return None


def _some(names, limit=12):
    """A list of names for a message, cut short: a cluster may have thousands of workers."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


def _mlops_defaults(data, raw):
    """mlops defaults that depend on other values or on what the file wrote (``raw``); defensive: no check ran yet.

    The schema's defaults stay what an all-default file gets (and what role fallbacks mirror); where a value
    the file leaves out should follow the rest of the file, it is set here.
    """
    mlops = data.get("mlops")
    clusters = data.get("clusters")
    if not isinstance(mlops, dict) or not isinstance(clusters, dict):
        return
    written = raw.get("mlops") if isinstance(raw.get("mlops"), dict) else {}
    hpc = clusters.get("hpc")
    artifacts = _get(mlops, ("tracking", "artifacts"))
    if isinstance(artifacts, dict) and artifacts.get("store") == "s3" and "path" not in (
            _get(written, ("tracking", "artifacts")) or {}):
        artifacts.pop("path", None)  # the local store's default directory: nothing with s3
    if "allowed_networks" not in mlops:
        # The training job on the HPC cluster logs to MLflow: its network may reach the tracking server.
        hpc_net = hpc.get("network") if isinstance(hpc, dict) else None
        mlops["allowed_networks"] = [hpc_net] if isinstance(hpc_net, str) and hpc_net != _get(
            clusters, ("cloud", "network")) else []
    if "training" not in mlops and isinstance(hpc, dict):
        mlops["training"] = apply_defaults({}, _subschema_at(load_schema(), ["mlops", "training"]))
    models = _get(mlops, ("serving", "models"))
    entries = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
    training = mlops.get("training")
    written_training = written.get("training") if isinstance(written.get("training"), dict) else {}
    if isinstance(training, dict) and "model_name" not in written_training and entries and isinstance(
            entries[0].get("name"), str):
        training["model_name"] = entries[0]["name"]  # the schema's digits-cnn is the default models' first
    promotion = mlops.get("promotion")
    if isinstance(promotion, dict) and "alias" not in promotion and entries:
        wanted = training.get("model_name") if isinstance(training, dict) else None
        chosen = next((m for m in entries if m.get("name") == wanted), entries[0])
        if isinstance(chosen.get("alias"), str):
            promotion["alias"] = chosen["alias"]


def _check_mlops(checker, nodes):
    data = checker.data
    mlops = data["mlops"]
    clusters = data["clusters"]
    base = ["mlops"]
    if "cloud" not in clusters:
        checker.add(base, "MLflow, its database and the model servers run on the cloud cluster, and clusters.cloud "
                    "is not defined; add clusters.cloud (platform: systemd) or leave mlops out")
        return
    if not mlops["experiment"].strip():
        checker.add(base + ["experiment"], "is empty; name the MLflow experiment (e.g. digits)")
    _check_mlops_ports(checker, base)
    _check_mlops_artifacts(checker, base + ["tracking", "artifacts"], mlops["tracking"]["artifacts"])
    networks = data["global"]["networks"]
    for i, name in enumerate(mlops["allowed_networks"]):
        if name not in networks:
            checker.add(base + ["allowed_networks", i], "%s is not a network of global.networks (defined: %s)"
                        % (_show(name), _some(sorted(networks))))
    workers = [n.name for n in nodes if n.cluster == "cloud" and n.role in CLOUD_WORKER_ROLES]
    known = set(workers)
    served = {}
    names = []
    for i, model in enumerate(mlops["serving"]["models"]):
        path = base + ["serving", "models", i]
        names.append(model["name"])
        for key, problem in (("name", mlflow_model_name_problem(model["name"])),
                             ("alias", mlflow_alias_problem(model["alias"]))):
            if problem:
                checker.add(path + [key], problem)
        listed = model.get("workers")
        if listed is not None:
            bad = [w for w in listed if w not in known]
            if bad:
                checker.add(path + ["workers"], "%s %s not a cloud worker; the cloud workers are: %s" % (
                    _some(repr(w) for w in bad), "is" if len(bad) == 1 else "are", _some(workers)))
        for worker in (listed if listed is not None else workers):
            first = served.setdefault((worker, model["name"]), i)
            if first != i:
                checker.add(path + ["name"], "%r is also served on %s by serving.models[%d]; a worker serves a model "
                            "under one alias (its URL is /v2/models/%s): give the entries different workers"
                            % (model["name"], worker, first, model["name"]))
                break
    training = mlops.get("training")
    if training is not None:
        _check_mlops_training(checker, base, mlops, training, names, nodes)
    _check_mlops_finetune(checker, base + ["finetune"], mlops["finetune"], nodes)
    promotion_alias = mlops["promotion"].get("alias")
    problem = mlflow_alias_problem(promotion_alias)
    if problem:
        checker.add(base + ["promotion", "alias"], problem)


def _check_mlops_ports(checker, base):
    data = checker.data
    ports = []
    if data["monitoring"]["enabled"]:
        ports.append((["monitoring", "node_exporter_port"], "node exporter"))
    ports += [(base + ["tracking", "port"], "MLflow"), (base + ["database", "port"], "PostgreSQL"),
              (base + ["serving", "port"], "the model servers")]
    seen = {}
    for path, what in ports:
        port = _get(data, path)
        if not isinstance(port, int) or isinstance(port, bool):
            continue  # the schema reports it
        if port in seen:
            # Said at the port the file sets, not at one left to its default (tracking.port: 5432 clashes with
            # the database's default: the fix is tracking.port).
            here, other, other_what = path, seen[port][0], seen[port][1]
            if not checker.written(here) and checker.written(other):
                here, other, other_what = other, here, what
            checker.add(here, "%d is also %s (%s%s); every service needs its own port" % (
                port, format_path(other), other_what, "" if checker.written(other) else ", its default"))
        seen.setdefault(port, (path, what))


def _check_mlops_artifacts(checker, path, artifacts):
    store = artifacts["store"]
    if store == "s3":
        examples = {"s3_endpoint": "http://minio.example:9000", "s3_bucket": "mlflow"}
        for key in ("s3_endpoint", "s3_bucket"):
            if key not in artifacts:
                checker.add(path + [key], "is required with store s3 (e.g. %s)" % examples[key])
        if "path" in artifacts:
            checker.add(path + ["path"], "is for store local only; with store s3 the artifacts go to s3_bucket: "
                        "leave path out")
    elif store == "local":
        for key in ("s3_endpoint", "s3_bucket"):
            if key in artifacts:
                checker.add(path + [key], "is for store s3 only, and store is local: set store: s3, or leave %s out"
                            % key)
        directory = artifacts["path"]
        if directory.startswith("/") and (directory.rstrip("/") == "" or ".." in directory.split("/")):
            checker.add(path + ["path"], "%s must name a directory of its own: not /, no .. (e.g. %s)"
                        % (_show(directory), MLOPS_ARTIFACTS_PATH))
    if isinstance(artifacts.get("s3_endpoint"), str):
        problem = _s3_endpoint_problem(artifacts["s3_endpoint"])
        if problem:
            checker.add(path + ["s3_endpoint"], problem)
    if isinstance(artifacts.get("s3_bucket"), str):
        problem = _s3_bucket_problem(artifacts["s3_bucket"])
        if problem:
            checker.add(path + ["s3_bucket"], problem)


def _check_mlops_training(checker, base, mlops, training, served_names, nodes):
    path = base + ["training"]
    training_nodes_written = checker.written(path + ["nodes"])
    clusters = checker.data["clusters"]
    if "hpc" not in clusters:
        checker.add(path, "the training job runs on the HPC cluster (Slurm), and clusters.hpc is not defined; "
                    "add clusters.hpc or leave mlops.training out")
        return
    name = training.get("model_name")
    problem = mlflow_model_name_problem(name)
    if problem:
        checker.add(path + ["model_name"], problem)
    elif isinstance(name, str) and name not in served_names:
        checker.add(path + ["model_name"], "%s is not one of mlops.serving.models (%s); the job registers the model "
                    "the servers load: name one of them, or add it there" % (_show(name), _some(served_names)))
    hpc_net = clusters["hpc"]["network"]
    if hpc_net != clusters["cloud"]["network"] and hpc_net not in mlops["allowed_networks"]:
        checker.add(base + ["allowed_networks"], "the training job runs on the HPC cluster and logs to MLflow: add "
                    "%s (clusters.hpc.network), or leave allowed_networks out (it defaults to the HPC network)" % hpc_net)
    compute = [n for n in nodes if n.cluster == "hpc" and n.role == "compute"]
    slurm = clusters["hpc"]["slurm_config"]
    partitions = slurm["partitions"]
    default = slurm.get("default_partition") or (partitions[0] if isinstance(partitions[0], str) else partitions[0]["name"])
    spec = next((p for p in partitions if (p if isinstance(p, str) else p["name"]) == default), None)
    if not compute or spec is None:
        return  # no compute node, or an undefined default partition: both reported by the Slurm checks
    members = len(partition_members(spec, compute))
    wanted = training["nodes"]
    if not training_nodes_written and isinstance(wanted, int):
        # The default (2) on a cluster whose default partition has 1 node: train on that one.
        training["nodes"] = min(wanted, max(members, 1))
    elif isinstance(wanted, int) and wanted > members:
        if members == len(compute):
            where = "the HPC cluster has %d compute node%s" % (members, "" if members == 1 else "s")
        else:
            where = ("the job runs in the default Slurm partition %r, which has %d of the %d compute nodes"
                     % (default, members, len(compute)))
        checker.add(path + ["nodes"], "asks for %d nodes, and %s: set nodes to at most %d" % (wanted, where, members))


# --------------------------------------------------------------------------- mlops.finetune (Oumi)
def _check_mlops_finetune(checker, path, finetune, nodes):
    """mlops.finetune: the Oumi job runs on one compute node of the HPC cluster, in a partition that exists."""
    if not finetune["enabled"]:
        return
    clusters = checker.data["clusters"]
    if "hpc" not in clusters:
        checker.add(path + ["enabled"], "the fine-tuning job runs on the HPC cluster (Slurm), and clusters.hpc is "
                    "not defined; add clusters.hpc or set enabled to false")
        return
    partitions = clusters["hpc"]["slurm_config"]["partitions"]
    names = [p if isinstance(p, str) else p["name"] for p in partitions]
    wanted = finetune.get("partition")
    if wanted is not None and wanted not in names:
        checker.add(path + ["partition"], "%s is not a partition of clusters.hpc.slurm_config.partitions (defined: %s)"
                    % (_show(wanted), _some(names)))
        return
    gpus = finetune["gpus_per_node"]
    if gpus > 0:
        default = clusters["hpc"]["slurm_config"].get("default_partition") or names[0]
        name = wanted if wanted is not None else default
        spec = next((p for p in partitions if (p if isinstance(p, str) else p["name"]) == name), None)
        compute = [n for n in nodes if n.cluster == "hpc" and n.role == "compute"]
        members = set(partition_members(spec, compute)) if spec is not None else set()
        if not any(n.gpu_enabled for n in compute if n.name in members):
            checker.add(path + ["gpus_per_node"], "asks for %d GPU%s per node, and partition %r has no node with "
                        "gpu_enabled; set gpus_per_node to 0 (CPU) or name a GPU partition"
                        % (gpus, "" if gpus == 1 else "s", name))


def _derived_defaults(data, raw):
    """Defaults that depend on other values (the schema's ``default`` cannot express them)."""
    _mlops_defaults(data, raw)
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


_KIND = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}


def _structure_issues(raw):
    """Keys that are not text, nesting and size beyond any cluster.yaml: checked before anything walks ``raw``.

    Iterative and bounded (MAX_NODES values, MAX_DEPTH levels), so a recursive or alias-multiplied
    structure is refused instead of hanging the checks after it.
    """
    issues = []
    stack = [(raw, [], 0)]
    visited = 0
    while stack:
        value, path, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            return issues + [ConfigIssue("", "the document has more than %d values (repeated aliases?); "
                                             "a cluster.yaml has a few hundred" % MAX_NODES)]
        if depth > MAX_DEPTH:
            where = format_path(path[:8]) + "..."  # a cycle's path is endless: its start says where
            return issues + [ConfigIssue(where, "nested more than %d levels deep (a recursive alias?); "
                                                "a cluster.yaml needs about 10" % MAX_DEPTH)]
        if isinstance(value, dict):
            for key, sub in value.items():
                if isinstance(key, str):
                    stack.append((sub, path + [key], depth + 1))
                else:
                    kind = _KIND.get(type(key), "a %s" % type(key).__name__)
                    issues.append(ConfigIssue(format_path(path + [str(key)]), "the key %s is %s, not text; keys are "
                                              "names: quote it ('%s')" % (_show(key), kind, key)))
        elif isinstance(value, list):
            stack.extend((sub, path + [i], depth + 1) for i, sub in enumerate(value))
    return issues


def _with_lines(issues, lines):
    """Give each issue the line of its path (or of the nearest enclosing value) in the YAML file."""
    if not lines:
        return issues
    by_path = dict((format_path(list(p)), n) for p, n in lines.items())
    for issue in issues:
        where = issue.path
        while issue.line is None and where and where != "(top level)":
            issue.line = by_path.get(where)
            cut = max(where.rfind("."), where.rfind("["))
            where = where[:cut] if cut > 0 else ""
    return issues


def build_cluster_config(raw, source="cluster.yaml", lines=None):
    """Validate a parsed cluster.yaml mapping and return a ClusterConfig (or raise ConfigError).

    ``lines`` (from config_yaml.load_yaml_text) maps value paths to line numbers for the messages.
    """
    # Imported here: gpu_plan imports this module's helpers.
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import plan as gpu_plan

    dep = missing_dependency()
    if dep:
        raise ConfigError(source, [ConfigIssue("", "the Python library %s is required to read cluster.yaml; "
                                                   "install it on the Ansible controller" % dep)])
    if not isinstance(raw, dict):
        what = "the file is empty" if raw is None else "the file holds a %s" % type(raw).__name__
        raise ConfigError(source, [ConfigIssue("", "%s; it must hold a mapping with version, metadata, global "
                                                   "and clusters" % what)])
    structure = _structure_issues(raw)
    if structure:
        raise ConfigError(source, _with_lines(structure, lines))
    issues = []
    version_issue = _check_version(raw)
    if version_issue:
        raise ConfigError(source, _with_lines([version_issue], lines))
    found, oversized = schema_issues(raw)
    issues.extend(found)
    if oversized:
        # The semantic checks scale with the sizes the schema just refused: report the schema's findings only.
        raise ConfigError(source, _with_lines(issues, lines))
    data = _derived_defaults(apply_defaults(raw), raw)
    checker = _Checker(data, issues, raw)
    checker.run(_check_hypervisor_hosts)
    networks = checker.run(_check_networks) or {}
    nodes = checker.run(_build_nodes, networks) or []
    checker.run(_check_capacity, nodes)
    if isinstance(data.get("clusters"), dict) and "hpc" in data["clusters"]:
        checker.run(_check_slurm, nodes)
        checker.run(_check_containers)
    if isinstance(data.get("mlops"), dict):
        checker.run(_check_mlops, nodes)
    checker.run(_check_local_files)
    plan = None
    if isinstance(data.get("global"), dict) and "gpu_allocation" in data["global"]:
        models = checker.run(_check_gpu_devices) or {}
        checker.run(_check_strategy)
        # The plan needs sound GPU settings; problems elsewhere do not stop it, so they are all reported.
        gpu_paths = ("global.gpu_allocation", "hypervisor")
        blocked = [i for i in issues + checker.issues if i.path.startswith(gpu_paths)
                   or i.path.endswith(("gpu_enabled", ".count", ".overrides"))]
        if not blocked:
            plan = checker.run(gpu_plan.build_plan, models, nodes)
    else:
        for node in nodes:
            if node.gpu_enabled:
                checker.add(node.config_path + ".gpu_enabled",
                            "%s has gpu_enabled but global.gpu_allocation defines no GPUs" % node.name)
                break
    issues.extend(checker.issues)
    if issues:
        raise ConfigError(source, _with_lines(issues, lines))
    if plan is None:
        plan = gpu_plan.empty_plan()
    return ClusterConfig(data, nodes, plan, source)


def _problem_issue(problem):
    """A YamlProblem as a ConfigIssue: at its value's path when known, else at its line and column."""
    if problem.path:
        return ConfigIssue(format_path(list(problem.path)), problem.message, problem.line)
    return ConfigIssue(problem.where or "", problem.message, problem.line)


def load_cluster_config(path):
    """Read and validate a cluster.yaml file; ConfigError names the file and every problem."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except (IOError, OSError) as exc:
        raise ConfigError(path, [ConfigIssue("", "cannot read the file: %s" % (exc.strerror or exc))])
    try:
        text = decode_text(data)
    except YamlProblem as problem:
        raise ConfigError(path, [_problem_issue(problem)])
    return parse_cluster_config(text, path)


def parse_cluster_config(text, source="cluster.yaml"):
    """Parse cluster.yaml text (str or UTF-8 bytes) exactly (see config_yaml) and validate it."""
    if not HAS_YAML:
        raise ConfigError(source, [ConfigIssue("", "the Python library PyYAML is required")])
    try:
        raw, lines = load_yaml_text(text)
    except YamlProblem as problem:
        raise ConfigError(source, [_problem_issue(problem)])
    return build_cluster_config(raw, source, lines)
