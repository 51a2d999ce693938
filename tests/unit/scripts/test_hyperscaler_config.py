"""scripts/hyperscaler-config, run as a user runs it (a separate process from a checkout)."""
import json
import os
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


HOSTILE_FILES = {
    "not-utf8.yml": b"version: \"1.0\"\nmetadata: {name: l\xe4b}\n",
    "deep.yml": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "nan.yml": b"version: \"1.0\"\nmetadata: {name: lab}\nglobal: {networks: {n: {subnet: 10.9.0.0/24, bridge: b}}}\n"
               b"hypervisor: {cpu_overcommit: .nan}\nclusters:\n",
    "duplicate.yml": b"version: \"1.0\"\nversion: \"1.0\"\n",
    "empty.yml": b"",
}


def test_hostile_files_exit_1_with_a_line_and_no_traceback(tmp_path):
    for name, data in HOSTILE_FILES.items():
        path = tmp_path / name
        path.write_bytes(data)
        done = run("validate", str(path))
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith("%s is not a valid" % path), done.stderr
        report = json.loads(run("validate", str(path), "--json").stdout)
        assert report["valid"] is False and all(i["path"] and i["message"] for i in report["issues"]), report
    assert "line 2, column 19: the file is not UTF-8" in run("validate", str(tmp_path / "not-utf8.yml")).stderr
    issue = json.loads(run("validate", str(tmp_path / "duplicate.yml"), "--json").stdout)["issues"][0]
    assert issue == {"path": "version", "line": 2, "message": issue["message"]}
    assert "first at line 1, column 1, again at line 2, column 1" in issue["message"]


def test_a_run_from_a_checkout_leaves_no_temporary_directory(tmp_path):
    # A copy of the scripts and plugins without a .build link: the bootstrap makes the copy's own link.
    import shutil
    copy = tmp_path / "checkout"
    for part in ("scripts", "plugins"):
        shutil.copytree(repo_path(part), str(copy / part), ignore=shutil.ignore_patterns("__pycache__"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    for config in ("config/minimal.yml", "tests/unit/data/spec-example.yml"):
        done = subprocess.run([sys.executable, str(copy / "scripts" / "hyperscaler-config"), "validate",
                               repo_path(config)], capture_output=True, text=True, timeout=60, env=env, check=False)
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
    assert list(temp.iterdir()) == []
    assert os.path.realpath(str(copy / ".build/collections/ansible_collections/aihow/hyperscaler")) == str(copy)
    # From the checkout itself the .build link is used: nothing is created in TMPDIR either.
    subprocess.run([sys.executable, repo_path("scripts", "hyperscaler-config"), "validate", repo_path("config", "minimal.yml")],
                   capture_output=True, timeout=60, env=env, check=True)
    assert list(temp.iterdir()) == []
