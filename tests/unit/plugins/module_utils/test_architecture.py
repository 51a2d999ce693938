"""The one-way dependency rules of plugins/module_utils (docs/architecture.md), checked on the real imports.

Imports are read with ast (module level and inside functions), so a lazy import cannot hide a
dependency. Each rule has a test that feeds it a violation, so the check itself can fail.
"""
import ast
import os

import pytest

from helpers import repo_path

ROOT = repo_path("plugins", "module_utils")
PLUGINS = "ansible_collections.aihow.hyperscaler.plugins"
MODULE_UTILS = PLUGINS + ".module_utils"

# Domain -> the domains it may import (itself included). config validates GPU requests with the pure
# GPU planning code, and libvirt turns a ClusterConfig into specs; nothing imports a backend upward.
ALLOWED = {
    "common": {"common"},
    "config": {"common", "config", "gpu.catalog", "gpu.placement", "gpu.plan"},
    "gpu": {"common", "gpu"},
    "vgpu": {"common", "vgpu"},
    "libvirt": {"common", "config", "libvirt"},
    "host": {"common", "host"},
    # monitoring.slurm imports nothing of the collection (the role copies it onto the guest alone).
    "monitoring": {"common", "monitoring"},
}
# Pure GPU planning never touches a device: no NVML, no MIG convergence, no sysfs discovery.
PURE_GPU = ("gpu.catalog", "gpu.placement", "gpu.plan")
BACKENDS = ("gpu.nvml", "gpu.mig", "gpu.discovery", "vgpu", "libvirt", "host")
# Only the module base class may need AnsibleModule: scripts and the GPU host at boot run without ansible-core.
ANSIBLE_MODULE_USERS = {"common.module_base"}


def _modules():
    """Dotted names below module_utils (``gpu.nvml.backend``) -> file path."""
    out = {}
    for folder, _dirs, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3]
                out[rel.replace(os.sep, ".")] = os.path.join(folder, name)
    return out


MODULES = _modules()


def imports_of(path):
    """(collection modules below plugins, other top-level imports) that the file at ``path`` imports."""
    with open(path) as handle:
        tree = ast.parse(handle.read())
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(PLUGINS + "."):
                base = node.module[len(PLUGINS) + 1:]
                for alias in node.names:
                    # "from ...gpu import catalog" imports the module gpu.catalog
                    candidate = base + "." + alias.name
                    ours.add(candidate if candidate[len("module_utils."):] in MODULES else base)
            else:
                others.add(node.module)
        elif isinstance(node, ast.Import):
            others.update(alias.name for alias in node.names)
    return ours, others


def graph():
    """module -> the collection modules it imports ('module_utils.x.y' names stripped to 'x.y')."""
    out = {}
    for name, path in MODULES.items():
        ours, _others = imports_of(path)
        out[name] = set(o[len("module_utils."):] if o.startswith("module_utils.") else "PLUGIN:" + o for o in ours)
    return out


def violations(edges):
    """Every broken rule in ``edges`` ({module: imported modules}), as sentences."""
    found = []
    for src, targets in sorted(edges.items()):
        domain = src.split(".")[0]
        for tgt in sorted(targets):
            if tgt.startswith("PLUGIN:"):
                found.append("%s imports %s: module_utils never imports modules or plugins" % (src, tgt[7:]))
                continue
            allowed = ALLOWED[domain]
            if not any(tgt == a or tgt.startswith(a + ".") for a in allowed):
                found.append("%s imports %s: %s/ may import only %s" % (src, tgt, domain, ", ".join(sorted(allowed))))
            if src.startswith(PURE_GPU) and tgt.startswith(BACKENDS):
                found.append("%s imports %s: pure GPU planning imports no backend" % (src, tgt))
    return found


def cycles(edges):
    """Import cycles between modules (each as a list), by depth-first search."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state and nxt in edges:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_lives_in_a_domain():
    assert set(name.split(".")[0] for name in MODULES) == set(ALLOWED)
    assert not [n for n in MODULES if "." not in n], "module_utils holds subpackages only"


def test_the_dependency_rules_hold():
    assert violations(graph()) == []


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_only_the_module_base_needs_ansible_module():
    users = set(name for name, path in MODULES.items()
                if any(o.startswith("ansible.module_utils.basic") for o in imports_of(path)[1]))
    assert users == ANSIBLE_MODULE_USERS


@pytest.mark.parametrize("edges, fragment", [
    ({"config.model": {"gpu.nvml.backend"}}, "config/ may import only"),
    ({"gpu.catalog": {"libvirt.converge"}}, "gpu/ may import only"),
    ({"gpu.plan": {"gpu.nvml.backend"}}, "pure GPU planning imports no backend"),
    ({"common.errors": {"PLUGIN:modules.mig_partition"}}, "never imports modules or plugins"),
])
def test_the_rules_catch_a_violation(edges, fragment):
    assert any(fragment in v for v in violations(edges))


def test_a_cycle_is_found():
    assert cycles({"gpu.nvml.backend": {"gpu.nvml.simulator"}, "gpu.nvml.simulator": {"gpu.nvml.backend"}})
