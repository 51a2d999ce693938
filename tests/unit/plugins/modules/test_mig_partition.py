"""mig_partition module over the NVML simulator: check mode, idempotence, diff, rollback, errors."""
import json

import pytest

from ansible_collections.aihow.hyperscaler.plugins.modules import mig_partition
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml

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
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import backend as nvml_backend
    monkeypatch.setattr(nvml_backend, "PYNVML_LOADER", lambda: None)
    result, failed = run_module(mig_partition.main, {"mig_config": CONFIG, "selected_config": "balanced",
                                                     "persist_path": ""})
    assert failed and "cannot open NVML" in result["msg"] and "nvidia-ml-py" in result["msg"]


# ---------------------------------------------------------------- bad arguments and host state (issue #10)
def assert_clean_failure(result, failed, *needles):
    """A user error: failed, the message names what to fix, and it is not a traceback."""
    assert failed, result
    assert "internal error" not in result["msg"] and "exception" not in result, result
    for needle in needles:
        assert needle in result["msg"], (needle, result["msg"])


def layout_args(tmp_path, **extra):
    return args(tmp_path, mig_config=None, selected_config=None,
                layout=[{"pci_address": "0000:65:00.0", "instances": [{"profile": "7g.80gb"}]}], **extra)


@pytest.mark.parametrize("content,needles", [
    ("{garbage", ["is not valid JSON (line 1, column 2)"]),
    ("[1, 2]", ["must hold a JSON object", "not an array"]),
    (b"\xff\xfe{}", ["is not UTF-8 text (byte 0xff at line 1, column 1)"]),
    ('{"version": 7, "gpus": []}', ["has version 7, expected 1"]),
    ('{"version": 1, "gpus": "A100"}', ["has no gpus list"]),
    ('{"version": 1, "gpus": [{"model": "NVIDIA GH200 144GB", "pci_bus_id": "0000:65:00.0", "uuid": "GPU-1",'
     ' "mig": null, "gpu_instances": [], "processes": []}]}', ["gpus[0].model", "known models: NVIDIA A100 40GB"]),
    ('{"version": 1, "gpus": [{"model": "A100-80GB", "pci_bus_id": "0000:65:00.0", "uuid": "GPU-1",'
     ' "mig": {"current": 1, "pending": 1}, "gpu_instances": [{"id": "two"}], "processes": []}]}',
     ["gpus[0].gpu_instances[0] needs integer id"]),
])
def test_bad_simulator_state_file_fails_naming_it(tmp_path, run_module, content, needles):
    path = tmp_path / "sim.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result, failed = run_module(mig_partition.main, layout_args(tmp_path))
    assert_clean_failure(result, failed, "simulator_state: %s" % path, *needles)


def test_simulator_state_that_is_a_directory(tmp_path, run_module):
    (tmp_path / "sim.json").mkdir()
    result, failed = run_module(mig_partition.main, layout_args(tmp_path))
    assert_clean_failure(result, failed, "simulator_state: %s is a directory, not a file" % (tmp_path / "sim.json"))


def test_unknown_simulator_gpu_lists_the_known_models(tmp_path, run_module):
    result, failed = run_module(mig_partition.main, layout_args(
        tmp_path, simulator_spec=[{"model": "A100-80GB"}, {"model": "NVIDIA GH200 144GB"}]))
    assert_clean_failure(result, failed, "simulator_spec[1].model", "unknown GPU model 'NVIDIA GH200 144GB'",
                         "known models:", "NVIDIA GH200 480GB", "NVIDIA H200")
    assert not (tmp_path / "sim.json").exists()  # nothing was created from a bad spec
    result, failed = run_module(mig_partition.main, layout_args(tmp_path, simulator_spec=[{"pci_address": "x"}]))
    assert_clean_failure(result, failed, "simulator_spec[0]: model is required")
    result, failed = run_module(mig_partition.main, layout_args(
        tmp_path, simulator_spec=[{"model": "A100-80GB", "pci_address": "65-00-0"}]))
    assert_clean_failure(result, failed, "simulator_spec[0].pci_address '65-00-0' is not a PCI address")


def test_gh200_is_partitioned_like_the_mig_user_guide_says(tmp_path, run_module):
    spec = [{"model": "NVIDIA GH200 480GB", "pci_address": "0009:01:00.0", "mig_enabled": True}]
    layout = [{"pci_address": "0009:01:00.0", "instances": [
        {"profile": "3g.48gb", "start": 4}, {"profile": "2g.24gb", "start": 2}, {"profile": "1g.24gb", "start": 0}]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, simulator_spec=spec, mig_config=None,
                                                         selected_config=None, layout=layout))
    assert not failed, result
    gpu = result["gpus"][0]
    assert gpu["model"] == "NVIDIA GH200 480GB"
    assert [(i["profile"], i["start"], i["size"]) for i in gpu["instances"]] == [
        ("1g.24gb", 0, 2), ("2g.24gb", 2, 2), ("3g.48gb", 4, 4)]


def test_mig_config_file_problems_name_the_file(tmp_path, run_module):
    path = tmp_path / "config.yaml"

    def run_file(**extra):
        return run_module(mig_partition.main, args(tmp_path, mig_config=None, mig_config_file=str(path),
                                                   selected_config="all-7g", **extra))
    path.write_bytes(b"version: v1\n# caf\xe9 (latin-1)\n")
    assert_clean_failure(*run_file(), "mig_config_file: %s is not UTF-8 text (byte 0xe9 at line 2, column 6)" % path)
    path.write_text("version: v1\nmig-configs: {all-7g: [\n")
    assert_clean_failure(*run_file(), "mig_config_file: %s is not valid YAML (line 3, column 1)" % path)
    path.write_text("- version: v1\n")
    assert_clean_failure(*run_file(), "mig_config_file: %s must hold a mig-parted config mapping" % path,
                         "not an array")
    missing = tmp_path / "missing.yaml"
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, mig_config_file=str(missing),
                                                         selected_config="x"))
    assert_clean_failure(result, failed, "mig_config_file: %s does not exist" % missing)
    assert not (tmp_path / "sim.json").exists()  # the config is read before the backend is touched


def test_persist_path_below_a_regular_file(tmp_path, run_module):
    (tmp_path / "somefile").write_text("not a directory\n")
    bad = tmp_path / "somefile" / "x.json"
    for check_mode in (True, False):  # check mode predicts the failure
        result, failed = run_module(mig_partition.main, layout_args(tmp_path, persist_path=str(bad)),
                                    check_mode=check_mode)
        assert_clean_failure(result, failed, "persist_path: %s cannot be written" % bad,
                             "%s is a regular file, not a directory" % (tmp_path / "somefile"))
    (tmp_path / "layout-dir").mkdir()
    result, failed = run_module(mig_partition.main, layout_args(tmp_path, persist_path=str(tmp_path / "layout-dir")))
    assert_clean_failure(result, failed,
                         "persist_path: %s is a directory; give a file path" % (tmp_path / "layout-dir"))


def test_entry_matching_no_gpu_is_reported(tmp_path, run_module, monkeypatch):
    from ansible.module_utils import basic
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    config = {"version": "v1", "mig-configs": {"mixed": [
        {"device-filter": "0x20B210DE", "devices": "all", "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
        {"device-filter": ["0x233510DE"], "devices": "all", "mig-enabled": True, "mig-devices": {"7g.141gb": 1}},
        {"devices": [7], "mig-enabled": False}]}}
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=config, selected_config="mixed"))
    assert not failed, result
    assert result["unmatched_entries"] == [
        {"entry": "mig-configs.mixed[1]", "selects": "device-filter [0x233510DE], devices all"},
        {"entry": "mig-configs.mixed[2]", "selects": "device-filter (none), devices [7]"}]
    assert len(warned) == 1
    assert "mig-configs.mixed[1] (device-filter [0x233510DE], devices all); mig-configs.mixed[2]" in warned[0]
    assert "select no GPU on this host and are not applied" in warned[0]
    assert "0: 0000:65:00.0 0x20B210DE" in warned[0]
    # the layout input has no entries: nothing unmatched
    result, failed = run_module(mig_partition.main, layout_args(tmp_path))
    assert not failed and result["unmatched_entries"] == []


def test_bad_compute_instance_name_in_layout(tmp_path, run_module):
    layout = [{"pci_address": "0000:65:00.0", "instances": [{"profile": "3g.40gb", "compute_instances": ["zz"]}]}]
    result, failed = run_module(mig_partition.main, args(tmp_path, mig_config=None, selected_config=None,
                                                         layout=layout))
    assert_clean_failure(result, failed, "layout[0].instances[0].compute_instances: 'zz' is not a MIG device name",
                         "for example 1c.3g.40gb")
