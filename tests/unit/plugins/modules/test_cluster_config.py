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
        "path": "global.gpu_allocation.devices[0].allowed_mig_profiles",
        "message": result["issues"][0]["message"]}]
    assert "NVIDIA A100 40GB profiles" in result["msg"]
    assert "exception" not in result


def test_check_mode_is_read_only(run_module):
    result, failed = run_module(cluster_config.main, {"path": repo_path("config", "minimal.yml")}, check_mode=True)
    assert not failed and result["changed"] is False
