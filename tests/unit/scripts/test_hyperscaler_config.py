"""scripts/hyperscaler-config, run as a user runs it (a separate process from a checkout)."""
import json
import subprocess
import sys

from helpers import REPO, repo_path


def run(*args):
    return subprocess.run([sys.executable, repo_path("scripts", "hyperscaler-config")] + list(args),
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_validate_prints_nodes_and_plan():
    done = run("validate", "config/workstation.yml")
    assert done.returncode == 0, done.stderr
    assert "config/workstation.yml: valid (10 nodes)" in done.stdout
    assert "GPU-1    0000:ca:00.0  Quadro RTX 6000        whole -> cloud-gpu-worker-01" in done.stdout


def test_invalid_exits_1_with_paths_and_no_traceback():
    done = run("validate", "tests/unit/data/spec-example.yml")
    assert done.returncode == 1
    assert "global.gpu_allocation.devices[0].allowed_mig_profiles" in done.stderr
    assert "Traceback" not in done.stderr


def test_json_output():
    done = run("validate", "config/production.yml", "--json")
    payload = json.loads(done.stdout)
    assert payload["valid"] is True and len(payload["nodes"]) == 19
    bad = json.loads(run("validate", "tests/unit/data/spec-example.yml", "--json").stdout)
    assert bad["valid"] is False and bad["issues"][0]["path"].endswith("allowed_mig_profiles")


def test_plan_command_prints_the_plan():
    plan = json.loads(run("plan", "config/workstation.yml").stdout)
    assert [d["mode"] for d in plan["devices"]] == ["mig", "whole"]


def test_usage_error_exits_2():
    assert run("frobnicate", "x").returncode == 2


def test_vgpu_sim_script_builds_a_tree_once(tmp_path):
    root = str(tmp_path / "sys-root")
    first = subprocess.run([sys.executable, repo_path("scripts", "hyperscaler-vgpu-sim"), root],
                           capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "sys-root" / "sys" / "class" / "mdev_bus").is_dir()
    again = subprocess.run([sys.executable, repo_path("scripts", "hyperscaler-vgpu-sim"), root],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "leaving it as it is" in again.stdout
