import pytest
from helpers import repo_path

from ansible_collections.aihow.hyperscaler.plugins.modules import cluster_config


def test_valid_config_returns_nodes_plan_and_report(run_module):
    result, failed = run_module(cluster_config.main, {"path": repo_path("config", "workstation.yml")})
    assert not failed and result["changed"] is False
    assert result["name"] == "hyperscaler-emulation"
    assert len(result["nodes"]) == 10
    assert result["plan"]["devices"][0]["mig_devices"] == {"1g.10gb": 7}
    assert "GPU-0" in result["report"] and "MIG [abcdefg.]" in result["report"]
    assert result["config"]["hypervisor"]["accelerator"] == "auto"  # defaults filled


def test_invalid_config_fails_with_every_issue(run_module):
    result, failed = run_module(cluster_config.main, {"path": repo_path("tests", "unit", "data", "spec-example.yml")})
    assert failed
    assert result["issues"] == [{
        "path": "global.gpu_allocation.devices[0].allowed_mig_profiles", "line": 16,
        "message": result["issues"][0]["message"]}]
    assert "NVIDIA A100 40GB profiles" in result["msg"]
    assert "exception" not in result


def test_check_mode_is_read_only(run_module):
    result, failed = run_module(cluster_config.main, {"path": repo_path("config", "minimal.yml")}, check_mode=True)
    assert not failed and result["changed"] is False


MINIMAL = open(repo_path("config", "minimal.yml"), "rb").read()
BAD_FILES = [
    (b"version: \"1.0\"\nmetadata: {name: l\xe4b}\n", "line 2, column 19", "not UTF-8"),
    (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", "line 1, column", "nested more than 64 levels"),
    (b"version: \"1.0\"\nversion: \"1.0\"\n", "version", "duplicate key 'version'"),
    (MINIMAL.replace(b"count: 2,", b"count: 2.0,"),
     "clusters.hpc.compute_nodes.count", "2.0 is not an integer"),
    (MINIMAL.replace(b"cpu_cores: 1, memory_gb: 1, disk_gb: 8, ip_a", b"cpu_cores: 1, memory_gb: .nan, disk_gb: 8, ip_a"),
     "clusters.hpc.controller.memory_gb", "nan is not a finite number"),
    (MINIMAL.split(b"clusters:")[0] + b"clusters:\n",
     "clusters", "must be of type object"),
]


@pytest.mark.parametrize("data, path, fragment", BAD_FILES)
def test_bad_files_fail_naming_the_field(run_module, tmp_path, data, path, fragment):
    config = tmp_path / "cluster.yaml"
    config.write_bytes(data)
    result, failed = run_module(cluster_config.main, {"path": str(config)})
    assert failed and "internal error" not in result["msg"] and "exception" not in result
    assert str(config) in result["msg"]
    assert any(i["path"].startswith(path) and fragment in i["message"] for i in result["issues"]), result["issues"]


def test_a_missing_file_or_a_directory_fails_naming_it(run_module, tmp_path):
    for path, why in ((tmp_path / "none.yml", "No such file"), (tmp_path, "Is a directory")):
        result, failed = run_module(cluster_config.main, {"path": str(path)})
        assert failed and str(path) in result["msg"] and why in result["msg"], result
