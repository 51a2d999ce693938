"""Every cluster.yaml field lands somewhere: no setting is silently ignored.

tests/unit/data/cluster-yaml-fields.yml maps each leaf of schemas/cluster.schema.json (every property
path, through $ref, array items, oneOf forms and additionalProperties maps) to where it lands, and
these tests prove each claim:

* the table covers exactly the schema's leaves: a new schema field without an entry fails;
* config/production.yml with the field set to a distinctive value is valid, and the value shows up
  at each claimed path of the inventory model (``inventory_from_config``), of the libvirt specs the
  VM path converges (``cluster_specs``) and of the validation report (``report.summary``);
* a ``check`` claim: the config model refuses a value that breaks the rule the field feeds;
* a role claim names a role variable defined in the role's defaults from the inventory variable (and
  documented in its meta/argument_specs.yml), or an expression one of the role's files reads; a
  playbook claim an expression the playbook reads;
* a field whose only landing is the inventory (the cloud cluster's Kubernetes settings, not built yet)
  must be listed in NOT_YET_CONSUMED below, with the issue that will consume it.

Path syntax: dotted keys; ``[N]`` an item, ``[*]`` every item, ``[key=value]`` the items whose key is
value; ``["a.b"]`` a key with dots; a ``*`` or ``?`` in a key matches like a shell pattern.
"""
import copy
import fnmatch
import json
import os
import re

import pytest
import yaml

from helpers import REPO, load_yaml, repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import report
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.inventory import inventory_from_config
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ConfigError,
    build_cluster_config,
    load_schema,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt.specs import cluster_specs

TABLE_FILE = repo_path("tests", "unit", "data", "cluster-yaml-fields.yml")
BASE = ("config", "production.yml")

# Fields that reach the inventory but nothing that acts on them yet. Each names the issue that will
# consume it; take a field off this list (and give it a role or playbook claim) when that lands.
NOT_YET_CONSUMED = {
    "clusters.cloud.kubernetes_config.cni": "not yet consumed, issue: cloud cluster (Kubernetes is not built yet)",
    "clusters.cloud.kubernetes_config.ingress": "not yet consumed, issue: cloud cluster (Kubernetes is not built yet)",
    "clusters.cloud.kubernetes_config.storage_class": "not yet consumed, issue: cloud cluster (Kubernetes is not built yet)",
    "clusters.cloud.kubernetes_config.mig_strategy": "not yet consumed, issue: cloud cluster (Kubernetes is not built yet)",
}
CONSUMER_KEYS = ("roles", "playbooks", "spec", "report", "check")


# --------------------------------------------------------------------------- the schema's leaves

def _resolve(node, root):
    while "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        merged = dict(target)
        for key, value in node.items():
            if key == "properties" and "properties" in merged:
                props = dict(merged["properties"])
                for name, sub in value.items():
                    props[name] = dict(props.get(name, {}), **sub)
                merged["properties"] = props
            elif key != "$ref":
                merged[key] = value
        node = merged
    return node


def schema_leaves(root=None):
    """Every leaf path of the schema: 'a.b', 'list[].key', 'map.*.key'; a oneOf adds each form's leaves."""
    root = root or load_schema()
    out = set()

    def walk(node, path):
        node = _resolve(node, root)
        if "oneOf" in node:
            for form in node["oneOf"]:
                walk(form, path)
            return
        if "properties" in node:
            for name, sub in node["properties"].items():
                walk(sub, path + ("." if path else "") + name)
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], path + ".*")
            return
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + ".*")
            return
        items = _resolve(node.get("items", {}), root) if isinstance(node.get("items"), dict) else {}
        if any(k in items for k in ("properties", "oneOf", "additionalProperties")):
            walk(items, path + "[]")
            return
        out.add(path)

    walk(root, "")
    return out


# --------------------------------------------------------------------------- paths

_TOKEN = re.compile(r'\["([^"]*)"\]|\[(\d+)\]|\[(\*)\]|\[([^=\]]+)=([^\]]*)\]|\.?([^.\[\]]+)')


def parse_path(text):
    """'a.b[0]["x.y"][k=v].*' -> [("key", "a"), ("key", "b"), ("index", 0), ("key", "x.y"), ...]."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, "bad path %r at %d" % (text, pos)
        quoted, index, star, sel_key, sel_value, key = m.groups()
        if quoted is not None:
            out.append(("key", quoted))
        elif index is not None:
            out.append(("index", int(index)))
        elif star is not None:
            out.append(("all", None))
        elif sel_key is not None:
            out.append(("select", (sel_key, sel_value)))
        else:
            out.append(("key", key))
        pos = m.end()
    return out


def find(data, path):
    """The values at ``path`` (a list: patterns and selections can match several)."""
    values = [data]
    for kind, arg in parse_path(path):
        found = []
        for value in values:
            if kind == "key" and isinstance(value, dict):
                if any(c in arg for c in "*?"):
                    found.extend(v for k, v in sorted(value.items()) if fnmatch.fnmatchcase(str(k), arg))
                elif arg in value:
                    found.append(value[arg])
            elif kind == "index" and isinstance(value, list) and arg < len(value):
                found.append(value[arg])
            elif kind == "all" and isinstance(value, list):
                found.extend(value)
            elif kind == "select" and isinstance(value, list):
                found.extend(v for v in value if isinstance(v, dict) and str(v.get(arg[0])) == arg[1])
        values = found
    return values


def assign(data, path, value):
    """Set ``path`` (keys and indexes only; an index one past the end appends) in ``data``."""
    parts = parse_path(path)
    target = data
    for n, (kind, arg) in enumerate(parts):
        last = n == len(parts) - 1
        assert kind in ("key", "index"), "set paths are concrete: %s" % path
        nxt = None if last else ({} if parts[n + 1][0] == "key" else [])
        if kind == "key":
            if last:
                target[arg] = value
            else:
                target = target.setdefault(arg, nxt)
        else:
            if arg == len(target):
                target.append(nxt if not last else value)
            elif last:
                target[arg] = value
            target = target[arg]


def concrete(schema_path, base):
    """The schema path at the first item of each list and the first key of each map of ``base``."""
    out, value = "", base
    for part in re.findall(r"\[\]|\*|[^.\[\]*]+", schema_path):
        if part == "[]":
            out += "[0]"
            value = value[0] if isinstance(value, list) and value else {}
        elif part == "*":
            key = sorted(value)[0] if isinstance(value, dict) and value else "x"
            out += '["%s"]' % key if "." in key else "." + key
            value = value.get(key, {}) if isinstance(value, dict) else {}
        else:
            out += ("." if out else "") + part
            value = value.get(part, {}) if isinstance(value, dict) else {}
    return out


# --------------------------------------------------------------------------- the table

def _subst(value):
    """'<repo>' in a value: the checkout (base_image must name a file that exists)."""
    if isinstance(value, str):
        return value.replace("<repo>", REPO)
    if isinstance(value, list):
        return [_subst(v) for v in value]
    if isinstance(value, dict):
        return dict((k, _subst(v)) for k, v in value.items())
    return value


def load_table():
    with open(TABLE_FILE) as handle:
        return yaml.safe_load(handle)


TABLE = load_table()
ENTRIES = sorted(TABLE)


def configured(field, entry):
    """(raw cluster.yaml, the field's concrete path): config/production.yml with the entry's values set."""
    raw = load_yaml(*BASE)
    at = concrete(field, raw)
    settings = _subst(entry.get("set") or {at: entry["value"]})
    for path, value in settings.items():
        assign(raw, path, copy.deepcopy(value))
    return raw, at


def build(raw):
    try:
        return build_cluster_config(copy.deepcopy(raw), "production-test.yml")
    except ConfigError as exc:
        raise AssertionError(str(exc))


def _claims(items, default):
    for item in items or []:
        claim = {"path": item} if isinstance(item, str) else dict(item)
        if "expect" not in claim and "count" not in claim and "contains" not in claim:
            claim["expect"] = default
        yield _subst(claim)


def assert_lands(data, claims, default, what):
    for claim in _claims(claims, default):
        found = find(data, claim["path"])
        if "count" in claim:
            assert len(found) == claim["count"], "%s %s: %d matches, not %d" % (what, claim["path"], len(found), claim["count"])
        elif "contains" in claim:
            assert any(claim["contains"] in v for v in found), "%s %s: %r in none of %r" % (
                what, claim["path"], claim["contains"], found)
        else:
            assert found, "%s %s: nothing there" % (what, claim["path"])
            assert all(v == claim["expect"] for v in found), "%s %s: %r, not %r" % (
                what, claim["path"], found, claim["expect"])


def _role_files(role):
    base = repo_path("roles", role)
    for sub in ("defaults", "vars", "tasks", "templates", "handlers"):
        for dirpath, _dirs, files in os.walk(os.path.join(base, sub)):
            for name in sorted(files):
                yield os.path.join(dirpath, name)


def _text(path):
    with open(path) as handle:
        return handle.read()


def _definition(defaults_text, var):
    """The text of a top-level variable in a defaults file: its line and the indented lines after it."""
    m = re.search(r"^%s:.*(?:\n[ \t].*)*" % re.escape(var), defaults_text, re.M)
    return m.group(0) if m else None


def assert_role_reads(claim):
    role, reads = claim["role"], claim["reads"]
    assert os.path.isdir(repo_path("roles", role)), "no role %s" % role
    if "var" in claim:
        defaults = _text(repo_path("roles", role, "defaults", "main.yml"))
        definition = _definition(defaults, claim["var"])
        assert definition, "roles/%s/defaults/main.yml does not define %s" % (role, claim["var"])
        assert reads in definition, "%s of role %s is not set from %s: %s" % (claim["var"], role, reads, definition)
        specs = yaml.safe_load(_text(repo_path("roles", role, "meta", "argument_specs.yml")))
        assert claim["var"] in specs["argument_specs"]["main"]["options"], \
            "roles/%s/meta/argument_specs.yml does not document %s" % (role, claim["var"])
    else:
        assert any(reads in _text(p) for p in _role_files(role)), "no file of role %s reads %s" % (role, reads)


# --------------------------------------------------------------------------- tests

def test_the_table_covers_exactly_the_schemas_fields():
    leaves = schema_leaves()
    missing = sorted(leaves - set(TABLE))
    extra = sorted(set(TABLE) - leaves)
    assert not missing, "schema fields with no entry in %s (where do they land?): %s" % (TABLE_FILE, missing)
    assert not extra, "entries for fields the schema does not have: %s" % extra
    assert len(leaves) > 100  # the walk reached every section


def test_the_walk_resolves_refs_items_maps_and_forms():
    leaves = schema_leaves()
    for path in ("global.networks.*.nat", "global.gpu_allocation.devices[].pci_address",
                 "global.gpu_allocation.mig_slices.hpc", "global.gpu_allocation.mig_slices.hpc.*",
                 "clusters.hpc.slurm_config.partitions[]", "clusters.hpc.slurm_config.partitions[].max_time",
                 "clusters.hpc.slurm_config.qos[].max_wall", "clusters.hpc.compute_nodes.overrides.*.cpu_cores",
                 "hypervisor.hosts[].capacity.memory_gb", "clusters.cloud.kubernetes_config.mig_strategy"):
        assert path in leaves, path


def test_every_field_has_a_consumer_or_is_listed_as_not_yet_consumed():
    for field in ENTRIES:
        entry = TABLE[field]
        consumers = [k for k in CONSUMER_KEYS if entry.get(k)]
        if field in NOT_YET_CONSUMED:
            assert not consumers, "%s is consumed (%s): take it off NOT_YET_CONSUMED" % (field, consumers)
            assert "issue:" in NOT_YET_CONSUMED[field]
        else:
            assert consumers, "%s lands nowhere that acts on it (only %s): name its role, playbook or spec, or list it " \
                              "in NOT_YET_CONSUMED with its issue" % (field, sorted(entry) or "nothing")
    assert set(NOT_YET_CONSUMED) <= set(TABLE)


@pytest.mark.parametrize("field", ENTRIES)
def test_the_field_lands_where_the_table_says(field):
    entry = TABLE[field]
    default = _subst(entry.get("value"))
    if entry.get("inventory") or entry.get("spec") or entry.get("report"):
        assert "value" in entry or "set" in entry, "%s: no value to set" % field
        raw, _at = configured(field, entry)
        config = build(raw)
        assert_lands(inventory_from_config(config, lab_state_root=os.devnull), entry.get("inventory"), default,
                     "inventory")
        if entry.get("spec"):
            # A spec may hold what the value becomes there (nat: false -> forward none).
            spec_value = _subst(entry["spec_value"]) if "spec_value" in entry else default
            assert_lands(cluster_specs(config), entry["spec"], spec_value, "libvirt spec")
        if entry.get("report"):
            assert_lands(report.summary(config), entry["report"], default, "report")
    for claim in entry.get("roles") or []:
        assert_role_reads(claim)
    for claim in entry.get("playbooks") or []:
        assert claim["reads"] in _text(repo_path("playbooks", claim["playbook"])), \
            "playbooks/%s does not read %s" % (claim["playbook"], claim["reads"])


@pytest.mark.parametrize("field", [f for f in ENTRIES if TABLE[f].get("check")])
def test_the_model_checks_the_field(field):
    check = _subst(TABLE[field]["check"])
    raw = load_yaml(*BASE)
    at = concrete(field, raw)
    for path, value in (check.get("set") or {at: check["value"]}).items():
        assign(raw, path, copy.deepcopy(value))
    try:
        build_cluster_config(raw, "production-test.yml")
    except ConfigError as exc:
        where = check.get("at", at)
        found = [i.message for i in exc.issues if i.path == where]
        assert found, "no issue at %s: %s" % (where, exc)
        assert any(check["message"] in m for m in found), found
    else:
        raise AssertionError("the model accepted %s" % json.dumps(check))


def test_path_helpers():
    data = {"a": [{"k": "x", "v": 1}, {"k": "y", "v": 2}], "m": {"1g.10gb": 3, "h-01": 4, "h-02": 5}}
    assert find(data, "a[k=y].v") == [2] and find(data, "a[*].v") == [1, 2] and find(data, 'm["1g.10gb"]') == [3]
    assert find(data, "m.h-*") == [4, 5] and find(data, "a[5]") == []
    assign(data, "a[2].k", "z")
    assign(data, 'm["2g.20gb"]', 1)
    assert data["a"][2] == {"k": "z"} and data["m"]["2g.20gb"] == 1
    assert concrete("global.networks.*.nat", load_yaml(*BASE)) == "global.networks.cloud_network.nat"
    assert concrete("global.gpu_allocation.mig_slices.hpc.*", load_yaml(*BASE)) == \
        'global.gpu_allocation.mig_slices.hpc["1g.10gb"]'
