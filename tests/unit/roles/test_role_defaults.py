"""Role and playbook fallbacks for cluster.yaml settings are the schema's defaults (no drift).

Roles take cluster.yaml's settings from the inventory (hyperscaler_slurm, hyperscaler_monitoring, ...),
with a ``| default(...)`` for a run without it. Every such fallback in roles/ and playbooks/ is found
here and compared with the schema: a field with a schema default must fall back to exactly that value
(``default('hpc')`` for a cluster name whose schema default is ``hyperscaler`` fails); a field without
one (required, or derived from others like default_partition) to an expression, never to a literal of
its own; a value the inventory derives (partition_details, qos_settings, the GPU plan's devices) to
nothing ([] or {}). A fallback naming a field the schema does not have fails too (a typo reads nothing).
tests/unit/plugins/modules/test_host_facts.py does the same for host_facts' option defaults.
"""
import ast
import glob
import os
import re

import pytest

from helpers import REPO

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import _subschema_at, load_schema

# Inventory variable (or a role's alias of one) -> the cluster.yaml section it carries.
SECTIONS = {
    "hyperscaler_slurm": ["clusters", "hpc", "slurm_config"],
    "hyperscaler_monitoring": ["monitoring"],
    "hyperscaler_storage": ["storage"],
    "hyperscaler_ssh": ["ssh"],
    "hyperscaler_hypervisor_settings": ["hypervisor"],
    "host_prereqs_settings": ["hypervisor"],  # roles/host_prereqs: hyperscaler_hypervisor_settings
    "hyperscaler_images": ["images"],
    "images_settings": ["images"],  # playbooks/images.yml: hyperscaler_images
    "hyperscaler_gpu_plan": ["global", "gpu_allocation"],
    "hyperscaler_kubernetes": ["clusters", "cloud", "kubernetes_config"],
    "hyperscaler_hypervisor": ["hypervisor", "hosts", 0],
    "hyperscaler_mlops": ["mlops"],
    "hyperscaler_model_server": ["mlops", "serving"],
    "hyperscaler_cloud": ["clusters", "cloud"],
    "hyperscaler_containers": ["clusters", "hpc", "containers"],
}
# Keys the inventory model derives: not cluster.yaml fields; without the inventory there is nothing.
DERIVED = {
    "hyperscaler_slurm.partition_details", "hyperscaler_slurm.qos_settings", "hyperscaler_gpu_plan.devices",
    "hyperscaler_mlops.tracking.url", "hyperscaler_mlops.tracking.host", "hyperscaler_mlops.credentials_dir",
    "hyperscaler_mlops.allowed_networks", "hyperscaler_mlops.serving.models", "hyperscaler_model_server.models",
}
_USE = re.compile(r"\b(%s)((?:\.[a-z_][a-z0-9_]*)+)\s*\|\s*default\(" % "|".join(SECTIONS))


def _sources():
    patterns = ["roles/*/defaults/*.yml", "roles/*/vars/*.yml", "roles/*/tasks/*.yml", "roles/*/handlers/*.yml",
                "roles/*/templates/*.j2", "playbooks/*.yml"]
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(REPO, pattern))):
            yield os.path.relpath(path, REPO)


def _argument(text, start):
    """The text inside default( ... ) from ``start`` (just after the parenthesis), nesting respected."""
    depth, quote = 1, None
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
    raise AssertionError("unbalanced default( at %d" % start)


_NO_VALUE = object()


def _literal(argument):
    """The Jinja literal's value, or _NO_VALUE for an expression (``default(slurm_partitions | first)``)."""
    first = argument.split(",")[0].strip() if not argument.strip().startswith(("[", "{")) else argument.strip()
    # Jinja's true/false/none outside quotes only: default('none') is the string.
    python = first if first[:1] in "'\"" else re.sub(
        r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnone\b", "None", first)))
    try:
        return ast.literal_eval(python)
    except (ValueError, SyntaxError):
        return _NO_VALUE


def fallbacks():
    """[(file, 'hyperscaler_x.a.b', argument text)] for every fallback of a cluster.yaml setting."""
    out = []
    for rel in _sources():
        with open(os.path.join(REPO, rel)) as handle:
            text = handle.read()
        for m in _USE.finditer(text):
            out.append((rel, m.group(1) + m.group(2), _argument(text, m.end())))
    return out


FALLBACKS = fallbacks()


def _schema_node(expression):
    var, _dot, rest = expression.partition(".")
    path = SECTIONS[var] + rest.split(".")
    return _subschema_at(load_schema(), path)


def test_the_scan_finds_the_fallbacks_of_every_role():
    found = set((rel.split("/")[1] if rel.startswith("roles/") else rel, expr) for rel, expr, _arg in FALLBACKS)
    for role, expr in [
        ("slurm", "hyperscaler_slurm.cluster_name"), ("slurm", "hyperscaler_slurm.max_job_time"),
        ("slurm", "hyperscaler_slurm.accounting"), ("slurm", "hyperscaler_slurm.qos_settings"),
        ("slurm", "hyperscaler_slurm.partition_details"), ("munge", "hyperscaler_slurm.cluster_name"),
        ("monitoring", "hyperscaler_monitoring.node_exporter_port"),
        ("monitoring", "hyperscaler_monitoring.prometheus_retention"),
        ("shared_storage", "hyperscaler_storage.shared.backend"),
        ("shared_storage", "hyperscaler_storage.shared.export_path"),
        ("shared_storage", "hyperscaler_storage.shared.mount_path"),
        ("host_prereqs", "host_prereqs_settings.storage_pool.path"), ("host_prereqs", "host_prereqs_settings.lab_mode"),
        ("host_prereqs", "host_prereqs_settings.tcg_tb_cache_mb"), ("gpu_host", "hyperscaler_gpu_plan.backend"),
        ("gpu_host", "hyperscaler_gpu_plan.simulator_state"), ("playbooks/hpc.yml", "hyperscaler_monitoring.enabled"),
        ("playbooks/images.yml", "images_settings.cache_dir"),
    ]:
        assert (role, expr) in found, (role, expr)


@pytest.mark.parametrize("rel, expression, argument", FALLBACKS, ids=["%s:%s" % (f, e) for f, e, _a in FALLBACKS])
def test_the_fallback_is_the_schemas_default(rel, expression, argument):
    value = _literal(argument)
    if expression in DERIVED:
        assert value in ([], {}), "%s: %s is derived by the inventory; fall back to nothing, not %s" % (
            rel, expression, argument)
        return
    node = _schema_node(expression)
    assert node, "%s: %s is not a cluster.yaml field (schema path %s)" % (rel, expression, expression)
    if "default" in node:
        assert value is not _NO_VALUE and value == node["default"], \
            "%s: %s | default(%s) disagrees with the schema's default %r" % (rel, expression, argument, node["default"])
    else:
        assert value is _NO_VALUE, "%s: %s has no schema default; default(%s) invents one" % (rel, expression, argument)


def test_the_literal_parser():
    assert _literal("'hpc'") == "hpc" and _literal("['compute']") == ["compute"] and _literal("true") is True
    assert _literal("9100") == 9100 and _literal("{}") == {} and _literal("'', true") == ""
    assert _literal("slurm_partitions | first") is _NO_VALUE
