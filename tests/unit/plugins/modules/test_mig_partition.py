"""mig_partition module over the NVML simulator: check mode, idempotence, diff, rollback, errors."""
import json

from ansible_collections.aihow.hyperscaler.plugins.modules import mig_partition
from ansible_collections.aihow.hyperscaler.plugins.module_utils.nvml_simulator import SimulatedNvml

SPEC = [{"model": "A100-80GB", "pci_address": "0000:65:00.0", "mig_enabled": False},
        {"model": "H100-80GB", "pci_address": "0000:ca:00.0", "mig_enabled": True},
        {"model": "T4", "pci_address": "0000:17:00.0"}]
CONFIG = {"version": "v1", "mig-configs": {"balanced": [
    {"device-filter": ["0x20B210DE", "0x233010DE"], "devices": "all", "mig-enabled": True,
     "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "1c.3g.40gb": 3}}]}}


def args(tmp_path, **extra):
    base = {"backend": "simulator", "simulator_state": str(tmp_path / "sim.json"), "simulator_spec": SPEC,
            "persist_path": str(tmp_path / "mig-layout.json"), "mig_config": CONFIG, "selected_config": "balanced",
            "allow_reset": True}
    base.update(extra)
    return dict((k, v) for k, v in base.items() if v is not None)  # None here means "option not given"


def state(tmp_path):
    return json.load(open(str(tmp_path / "sim.json")))


def test_check_mode_apply_then_idempotent(tmp_path, run_module):
    result, failed = run_module(mig_partition.main, args(tmp_path), check_mode=True, diff=True)
    assert not failed and result["changed"]
    # check mode writes nothing: not even the simulated host's state file it was created from the spec
    assert not (tmp_path / "sim.json").exists()
    assert not (tmp_path / "mig-layout.json").exists()
    predicted = result["diff"]["after"]

    result, failed = run_module(mig_partition.main, args(tmp_path), diff=True)
    assert not failed and result["changed"], result
    assert result["diff"]["after"] == predicted
    a100 = result["gpus"][0]
    assert a100["pci_address"] == "0000:65:00.0" and a100["mig_enabled"]
    assert sorted(i["profile"] for i in a100["instances"]) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    three = [i for i in a100["instances"] if i["profile"] == "3g.40gb"][0]
    assert [c["profile"] for c in three["compute_instances"]] == ["1c.3g.40gb"] * 3
    assert all(c["uuid"].startswith("MIG-") and c["ci_id"] is not None for c in three["compute_instances"])
    assert len(state(tmp_path)["gpus"][1]["gpu_instances"]) == 4
    saved = json.load(open(str(tmp_path / "mig-layout.json")))
    assert [g["pci_address"] for g in saved["gpus"]] == ["0000:65:00.0", "0000:ca:00.0"]

    result, failed = run_module(mig_partition.main, args(tmp_path), check_mode=True, diff=True)
    assert not failed and not result["changed"] and result["actions"] == []
    result, failed = run_module(mig_partition.main, args(tmp_path))
    assert not failed and not result["changed"]


def test_diff_shows_placements(tmp_path, run_module):
    run_module(mig_partition.main, args(tmp_path))
    layout = [{"pci_address": "ca:00.0", "instances": [
        {"profile": "7g.80gb", "start": 0, "size": 8, "cluster": "hpc", "node": "hpc-compute-01"}]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, selected_config=None,
                                                         layout=layout), diff=True)
    assert not failed and result["changed"]
    before = result["diff"]["before"]["0000:ca:00.0"]
    after = result["diff"]["after"]["0000:ca:00.0"]
    assert len(before["instances"]) == 4
    assert after == {"mig_enabled": True, "instances": [
        {"profile": "7g.80gb", "start": 0, "size": 8, "compute_instances": ["7g.80gb"]}]}
    assert any("destroy compute instance" in a for a in result["actions"])


def test_plan_layout_placements_are_honoured(tmp_path, run_module):
    layout = [{"pci_address": "0000:65:00.0", "instances": [
        {"profile": "1g.10gb", "start": 0}, {"profile": "1g.10gb", "start": 1}, {"profile": "3g.40gb", "start": 4}]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, selected_config=None,
                                                         layout=layout))
    assert not failed
    got = [(i["profile"], i["start"], i["gi_id"]) for i in result["gpus"][0]["instances"]]
    assert got == [("1g.10gb", 0, 7), ("1g.10gb", 1, 8), ("3g.40gb", 4, 1)]
    moved = [{"pci_address": "0000:65:00.0", "instances": [
        {"profile": "1g.10gb", "start": 2}, {"profile": "1g.10gb", "start": 1}, {"profile": "3g.40gb", "start": 4}]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, selected_config=None,
                                                         layout=moved))
    assert not failed and result["changed"]  # placement is part of the state
    assert [a for a in result["actions"] if "GPU instance" in a and "compute" not in a] == [
        "0000:65:00.0: destroy GPU instance 7 (1g.10gb at 0:1)", "0000:65:00.0: create GPU instance 1g.10gb at 2:1"]


def test_rollback_on_injected_fault(tmp_path, run_module):
    run_module(mig_partition.main, args(tmp_path))
    before = state(tmp_path)["gpus"]
    sim = SimulatedNvml(str(tmp_path / "sim.json"))
    sim.add_fault("create_compute_instance", "InsufficientResources", after=2, gpu=1)
    layout = [{"pci_address": "0000:ca:00.0", "instances": [{"profile": "1g.10gb", "start": s} for s in range(7)]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, selected_config=None,
                                                         layout=layout))
    assert failed and "rolled back to the prior layout" in result["msg"]
    assert "injected fault" in result["msg"]
    after = state(tmp_path)["gpus"]

    def shape(gpus):
        return [sorted((gi["profile_id"], gi["start"], sorted(c["profile_id"] for c in gi["compute_instances"]))
                       for gi in g["gpu_instances"]) for g in gpus]
    assert shape(after) == shape(before)
    assert result["rollback_errors"] == []


def test_pending_mode_needs_reset(tmp_path, run_module):
    result, failed = run_module(mig_partition.main, args(tmp_path, allow_reset=False))
    assert failed and "pending" in result["msg"] and "allow_reset" in result["msg"]
    assert result["reset_required"] == ["0000:65:00.0"]
    mode_only = [{"pci_address": "0000:65:00.0", "mig_enabled": True}]
    result, failed = run_module(mig_partition.main, args(tmp_path, allow_reset=False, mig_config=None,
                                                         selected_config=None, layout=mode_only))
    assert not failed and result["changed"] and result["reset_required"] == ["0000:65:00.0"]
    assert state(tmp_path)["gpus"][0]["mig"] == {"current": 0, "pending": 1}
    result, failed = run_module(mig_partition.main, args(tmp_path, allow_reset=False, mig_config=None,
                                                         selected_config=None, layout=mode_only))
    assert not failed and not result["changed"] and result["reset_required"] == ["0000:65:00.0"]


def test_busy_gpu_refused(tmp_path, run_module):
    SimulatedNvml(str(tmp_path / "sim.json"), spec=SPEC).add_process(0, 999)
    result, failed = run_module(mig_partition.main, args(tmp_path))
    assert failed and "busy" in result["msg"] and "999" in result["msg"]
    assert state(tmp_path)["gpus"][0]["mig"] == {"current": 0, "pending": 0}


def test_non_mig_gpu_selected_by_index_is_an_error(tmp_path, run_module):
    config = {"version": "v1", "mig-configs": {"t4": [{"devices": [2], "mig-enabled": True, "mig-devices": {}}]}}
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=config, selected_config="t4"))
    assert failed and "not MIG capable" in result["msg"]
    config["mig-configs"]["t4"][0]["devices"] = "all"
    config["mig-configs"]["t4"][0]["device-filter"] = "0x1EB810DE"
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=config, selected_config="t4"))
    assert not failed and not result["changed"]  # 'all' skips it, as mig-parted does


def test_unknown_profile_names_valid_ones(tmp_path, run_module):
    config = {"version": "v1", "mig-configs": {"x": [{"devices": "all", "device-filter": "0x20B210DE",
                                                      "mig-enabled": True, "mig-devices": {"1g.5gb": 1}}]}}
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=config, selected_config="x"))
    assert failed and "no MIG profile 1g.5gb" in result["msg"] and "3g.40gb" in result["msg"]


def test_mig_config_file_and_missing_label(tmp_path, run_module):
    path = tmp_path / "config.yaml"
    path.write_text("version: v1\nmig-configs:\n  all-7g:\n    - devices: all\n      mig-enabled: true\n"
                    "      mig-devices: {\"7g.80gb\": 1}\n")
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, mig_config_file=str(path),
                                                         selected_config="all-7g"))
    assert not failed and result["changed"]
    assert [i["profile"] for i in result["gpus"][1]["instances"]] == ["7g.80gb"]
    result, failed = run_module(mig_partition.main, args(tmp_path, selected_config=None))
    assert failed and "selected_config is required" in result["msg"]


def test_real_backend_without_pynvml_fails_cleanly(tmp_path, run_module, monkeypatch):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils import nvml_backend
    monkeypatch.setattr(nvml_backend, "PYNVML_LOADER", lambda: None)
    result, failed = run_module(mig_partition.main, {"mig_config": CONFIG, "selected_config": "balanced",
                                                     "persist_path": ""})
    assert failed and "cannot open NVML" in result["msg"] and "nvidia-ml-py" in result["msg"]
