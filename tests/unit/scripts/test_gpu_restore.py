"""scripts/hyperscaler-gpu-restore, run as the boot unit and a user run it (a separate process)."""
import ast
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import converge as mig_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml

SCRIPT = repo_path("scripts", "hyperscaler-gpu-restore")
PCI = "0000:65:00.0"
# What the gpu_host role applies for config/workstation.yml, minus the seventh slice: a mixed layout
# checks that every placement comes back, not just a count.
WANTED = [{"profile": "3g.40gb", "start": 0, "size": 4}, {"profile": "2g.20gb", "start": 4, "size": 2},
          {"profile": "1g.10gb", "start": 6, "size": 1}]
PKG = "ansible_collections.aihow.hyperscaler.plugins.module_utils"
with open(repo_path("roles", "gpu_host", "defaults", "main.yml")) as _handle:
    # The files the gpu_host role copies next to the installed script.
    LIB_FILES = yaml.safe_load(_handle)["gpu_host_restore_module_utils"]


def run(*args, python=(sys.executable,), script=SCRIPT, env=None):
    return subprocess.run(list(python) + [script] + list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def placements(state_path):
    with open(state_path) as handle:
        state = json.load(handle)
    gpu = state["gpus"][0]
    return gpu["mig"]["current"], sorted((gi["start"], gi["size"], gi["profile_id"], len(gi["compute_instances"]))
                                         for gi in gpu["gpu_instances"])


@pytest.fixture
def host(tmp_path):
    """A simulated A100 with the layout applied and saved, as mig_partition leaves it."""
    state = str(tmp_path / "nvml.json")
    saved = str(tmp_path / "mig-layout.json")
    sim = SimulatedNvml(state, spec=[{"model": "A100-80GB", "pci_address": PCI, "mig_enabled": True}])
    sim.init()
    mig_converge.run(sim, layout=[{"pci_address": PCI, "instances": WANTED}], persist_path=saved)
    applied = placements(state)
    assert len(applied[1]) == 3
    return {"state": state, "saved": saved, "applied": applied, "tmp": tmp_path}


def reboot(state_path, mig_enabled=True):
    """What a reboot does to the GPU: every GI and CI is gone (MIG mode itself persists)."""
    sim = SimulatedNvml(state_path)
    sim.init()
    sim.reset(0)
    if not mig_enabled:
        with open(state_path) as handle:
            state = json.load(handle)
        state["gpus"][0]["mig"] = {"current": 0, "pending": 0}
        with open(state_path, "w") as handle:
            json.dump(state, handle)
    assert placements(state_path)[1] == []


def sim_args(host):
    return ["--layout", host["saved"], "--backend", "simulator", "--simulator-state", host["state"]]


def test_restores_the_saved_placements_after_a_reboot(host):
    reboot(host["state"])
    done = run(*sim_args(host))
    assert done.returncode == 0, done.stderr
    assert placements(host["state"]) == host["applied"]
    assert "create GPU instance 3g.40gb at 0:4" in done.stdout
    assert "MIG layout changed: 0000:65:00.0 (3 instances)" in done.stdout
    again = run(*sim_args(host))  # a second start of the unit changes nothing
    assert again.returncode == 0, again.stderr
    assert "MIG layout ok" in again.stdout and "create" not in again.stdout
    assert placements(host["state"]) == host["applied"]


def test_enables_mig_mode_with_a_reset_unless_told_not_to(host):
    reboot(host["state"], mig_enabled=False)
    refused = run(*sim_args(host), "--no-reset")
    assert refused.returncode == 1
    assert "MIG mode enable is pending on GPU 0000:65:00.0" in refused.stderr
    done = run(*sim_args(host))
    assert done.returncode == 0, done.stderr
    assert "reset the GPU" in done.stdout
    assert placements(host["state"]) == host["applied"]


def test_check_mode_changes_nothing(host):
    reboot(host["state"])
    done = run(*sim_args(host), "--check")
    assert done.returncode == 0, done.stderr
    assert "MIG layout would change" in done.stdout
    assert placements(host["state"])[1] == []


def test_failure_midway_rolls_back_and_exits_1(host):
    reboot(host["state"])
    sim = SimulatedNvml(host["state"])
    sim.add_fault("create_gpu_instance", "InsufficientResources", after=1)
    done = run(*sim_args(host))
    assert done.returncode == 1
    assert "hyperscaler-gpu-restore: error: cannot re-apply" in done.stderr
    assert "rolled back" in done.stderr and "Traceback" not in done.stderr
    assert placements(host["state"])[1] == []


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ('{"version": 9, "gpus": []}', "no version 1 gpus list"),
])
def test_bad_layout_files_fail_clearly(host, content, needle):
    path = str(host["tmp"] / "other.json")
    if content is not None:
        with open(path, "w") as handle:
            handle.write(content)
    done = run("--layout", path, "--backend", "simulator", "--simulator-state", host["state"])
    assert done.returncode == 1
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_usage_errors(host, tmp_path):
    no_state = run("--layout", host["saved"], "--backend", "simulator")
    assert no_state.returncode == 2 and "--simulator-state" in no_state.stderr
    bad_lib = run(*sim_args(host), "--lib", str(tmp_path))
    assert bad_lib.returncode == 2 and "holds no ansible_collections/aihow/hyperscaler" in bad_lib.stderr
    missing_state = run("--layout", host["saved"], "--backend", "simulator", "--simulator-state",
                        str(tmp_path / "absent.json"))
    assert missing_state.returncode == 1 and "does not exist and no GPU spec" in missing_state.stderr


def test_installed_copy_needs_only_the_standard_library(host, tmp_path):
    """The layout the role installs: the script elsewhere, module_utils under --lib, no ansible-core."""
    lib = tmp_path / "lib"
    pkg = lib.joinpath("ansible_collections", "aihow", "hyperscaler", "plugins", "module_utils")
    pkg.mkdir(parents=True)
    for level in (lib / "ansible_collections", lib / "ansible_collections" / "aihow", pkg.parent.parent,
                  pkg.parent, pkg):
        (level / "__init__.py").write_text("")
    for name in LIB_FILES:  # as the role copies them (subpackage __init__.py files are in the list)
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_path("plugins", "module_utils", name), str(pkg / name))
    script = str(tmp_path / "sbin" / "hyperscaler-gpu-restore")
    os.makedirs(os.path.dirname(script))
    shutil.copy(SCRIPT, script)
    bare = (sys.executable, "-S", "-I")  # no site-packages: ansible-core is not importable
    probe = subprocess.run(list(bare) + ["-c", "import ansible"], capture_output=True, text=True, check=False)
    assert probe.returncode != 0, "ansible-core is importable without site-packages; the test proves nothing"
    reboot(host["state"])
    done = run(*sim_args(host), "--lib", str(lib), python=bare, script=script)
    assert done.returncode == 0, done.stderr
    assert placements(host["state"]) == host["applied"]
    lost = run(*sim_args(host), python=bare, script=script)  # no --lib, nothing at the default path
    if os.path.isdir("/usr/local/lib/aihow-hyperscaler"):
        pytest.fail("/usr/local/lib/aihow-hyperscaler exists on this machine; the fallback cannot be tested")
    assert lost.returncode == 2 and "pass --lib DIR" in lost.stderr


def _mdev_tree(tmp_path):
    mdevctl_dir = tmp_path / "etc" / "mdevctl.d"
    defs = {("0000:65:00.4", "11111111-1111-5111-8111-111111111111"): "auto",
            ("0000:65:00.5", "22222222-2222-5222-8222-222222222222"): "auto",
            ("0000:65:00.6", "33333333-3333-5333-8333-333333333333"): "manual"}
    for (parent, uid), start in defs.items():
        (mdevctl_dir / parent).mkdir(parents=True, exist_ok=True)
        (mdevctl_dir / parent / uid).write_text(json.dumps({"mdev_type": "nvidia-700", "start": start, "attrs": []}))
    (mdevctl_dir / "scripts.d" / "callouts").mkdir(parents=True)
    active = tmp_path / "sys" / "bus" / "mdev" / "devices" / "11111111-1111-5111-8111-111111111111"
    active.mkdir(parents=True)  # already started by the udev rule
    return mdevctl_dir


def _fake_mdevctl(tmp_path, rc=0):
    log = tmp_path / "mdevctl.log"
    fake = tmp_path / "fake-mdevctl"
    fake.write_text("#!/bin/sh\necho \"$@\" >> %s\necho 'no parent' >&2\nexit %d\n" % (log, rc))
    fake.chmod(0o755)
    return str(fake), log


def test_start_mdevs_starts_only_inactive_auto_definitions(host, tmp_path):
    mdevctl_dir = _mdev_tree(tmp_path)
    fake, log = _fake_mdevctl(tmp_path)
    reboot(host["state"])
    args = sim_args(host) + ["--start-mdevs", "--mdevctl-dir", str(mdevctl_dir), "--sysfs-root", str(tmp_path),
                             "--mdevctl", fake]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "start --uuid 22222222-2222-5222-8222-222222222222 --parent 0000:65:00.5"]
    assert "started 1 mdev(s): 22222222-2222-5222-8222-222222222222" in done.stdout
    assert placements(host["state"]) == host["applied"]  # the layout comes first


def test_start_mdevs_failure_exits_3(host, tmp_path):
    mdevctl_dir = _mdev_tree(tmp_path)
    fake, _unused = _fake_mdevctl(tmp_path, rc=1)
    done = run(*sim_args(host), "--start-mdevs", "--mdevctl-dir", str(mdevctl_dir), "--sysfs-root",
               str(tmp_path), "--mdevctl", fake)
    assert done.returncode == 3
    assert "--parent 0000:65:00.5 failed (exit 1): no parent" in done.stderr


def _collection_imports(path):
    """module_utils files (paths below module_utils) a module_utils file imports, module level and in functions."""
    with open(repo_path("plugins", "module_utils", path)) as handle:
        tree = ast.parse(handle.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PKG):
            parts = node.module[len(PKG):].lstrip(".").split(".")
            for alias in node.names:
                as_module = "/".join(parts + [alias.name]) + ".py"
                found.add(as_module if os.path.isfile(repo_path("plugins", "module_utils", as_module))
                          else "/".join(parts) + ".py")
    # A subpackage needs its __init__.py on the GPU host too.
    for name in list(found):
        parts = name.split("/")[:-1]
        found.update("/".join(parts[:i + 1]) + "/__init__.py" for i in range(len(parts)))
    return found


def test_the_role_copies_the_whole_import_closure():
    """If the restore path or the simulator gain an import, the boot-time copy must gain the file too."""
    todo, closure = ["gpu/mig/converge.py", "gpu/nvml/factory.py", "common/errors.py"], set()
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            if not name.endswith("__init__.py"):
                todo.extend(_collection_imports(name))
    assert sorted(closure) == sorted(LIB_FILES)
