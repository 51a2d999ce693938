"""mig_layout: mig-parted parsing, targets, converge (rollback, pending, busy) and the saved layout."""
import copy
import json

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import converge as mig_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import parted as mig_parted
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.mig import persistence as mig_persistence
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import MODELS_BY_KEY
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml

A100 = MODELS_BY_KEY["A100-80GB"]


def cfg(entries, label="x"):
    return {"version": "v1", "mig-configs": {label: entries}}


def sim(tmp_path, *models, enabled=True):
    spec = [{"model": m, "pci_address": "0000:%02x:00.0" % (0x65 + i), "mig_enabled": enabled}
            for i, m in enumerate(models)]
    s = SimulatedNvml(str(tmp_path / "state.json"), spec=spec)
    s.init()
    return s


@pytest.mark.parametrize("config,label,needle", [
    ({"version": "v2", "mig-configs": {"x": [{"devices": "all", "mig-enabled": False}]}}, "x", "only v1"),
    ({"version": "v1", "mig-configs": {"x": [{"devices": "all", "mig-enabled": False}]}, "extra": 1}, "x",
     "unknown key"),
    (cfg([{"devices": "all", "mig-enabled": False, "bogus": 1}]), "x", "unknown key"),
    (cfg([{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 0}}]), "x", "all counts are zero"),
    (cfg([{"devices": "all", "mig-enabled": False, "mig-devices": {"1g.10gb": 1}}]), "x", "must be empty"),
    (cfg([{"devices": "all", "mig-enabled": True}]), "x", "mig-devices is required"),
    (cfg([{"mig-enabled": True, "mig-devices": {}}]), "x", "devices is required"),
    (cfg([{"devices": "some", "mig-enabled": True, "mig-devices": {}}]), "x", "'all' or a list"),
    (cfg([{"devices": "all", "device-filter": "20B210DE", "mig-enabled": True, "mig-devices": {}}]), "x",
     "0xDDDDVVVV"),
    (cfg([{"devices": "all", "mig-enabled": True, "mig-devices": {"big": 1}}]), "x", "not a MIG device name"),
    (cfg([{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": -1}}]), "x", "integer >= 0"),
    (cfg([{"devices": "all", "mig-enabled": "yes", "mig-devices": {}}]), "x", "true or false"),
    (cfg([]), "x", "non-empty list"),
    (cfg([{"devices": "all", "mig-enabled": False}]), "other", "labels: x"),
])
def test_bad_mig_parted_configs(config, label, needle):
    with pytest.raises(HyperscalerError) as err:
        mig_parted.validate_mig_parted(config, label)
    assert needle in err.value.msg


def test_good_mig_parted_config_normalised():
    entries = mig_parted.validate_mig_parted(cfg([
        {"device-filter": ["0x20B210DE", "0x233010DE:0x16C110DE"], "devices": [0, 2], "mig-enabled": True,
         "mig-devices": {"1g.10gb": 2, "3g.40gb": 0, "1c.2g.20gb": 2}},
        {"devices": "all", "mig-enabled": False}]), "x")
    assert entries[0]["filters"] == [(0x20B210DE, None), (0x233010DE, 0x16C110DE)]
    assert entries[0]["mig_devices"] == {"1g.10gb": 2, "1c.2g.20gb": 2}
    assert entries[1]["mig_devices"] == {} and entries[1]["devices"] == "all"


def test_ci_forms_share_the_gi():
    groups = mig_parted.gi_groups_from_mig_devices(A100, {"1c.2g.20gb": 2, "2g.20gb": 2, "1c.3g.40gb": 3}, "t")
    assert groups == [("3g.40gb", [1, 1, 1]), ("2g.20gb", [2]), ("2g.20gb", [2]), ("2g.20gb", [1, 1])]
    assert mig_parted.gi_groups_from_mig_devices(A100, {"1c.2g.20gb": 3}, "t") == \
        [("2g.20gb", [1, 1]), ("2g.20gb", [1])]


def test_bad_profile_and_ci_form_name_the_valid_ones():
    with pytest.raises(HyperscalerError) as err:
        mig_parted.gi_groups_from_mig_devices(A100, {"1g.5gb": 1}, "t")
    assert "valid: 1g.10gb" in err.value.msg
    with pytest.raises(HyperscalerError) as err:
        mig_parted.gi_groups_from_mig_devices(A100, {"5c.7g.80gb": 1}, "t")
    assert "4c.7g.80gb" in err.value.msg  # go-nvlib's C/G rule: 5c of 7g is no shape


def test_device_filter_and_devices_select_gpus(tmp_path):
    s = sim(tmp_path, "A100-80GB", "H100-80GB", "A100-80GB")
    targets, _unused, _none = mig_converge.targets_from_mig_parted(s, cfg([
        {"device-filter": "0x20B210DE", "devices": [2], "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
        {"device-filter": ["0x233010DE"], "devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}]),
        "x")
    assert sorted(targets) == [1, 2]
    assert targets[2].groups == [("7g.80gb", [7], None)]
    assert targets[1].groups == [("3g.40gb", [3], None)] * 2
    s2 = sim(tmp_path / "sub", "A100-80GB")
    targets, _unused, _none = mig_converge.targets_from_mig_parted(s2, cfg([
        {"device-filter": "0x20B210DE:0x12345678", "devices": "all", "mig-enabled": False}]), "x")
    assert targets == {}  # the subsystem id does not match


def test_last_matching_entry_wins_with_warning(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    targets, warnings, _none = mig_converge.targets_from_mig_parted(s, cfg([
        {"devices": "all", "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
        {"devices": [0], "mig-enabled": True, "mig-devices": {"3g.40gb": 1}}]), "x")
    assert targets[0].groups == [("3g.40gb", [3], None)]
    assert len(warnings) == 1 and "last one applies" in warnings[0]


def test_layout_validation_errors(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    for layout, needle in [
        ([{"pci_address": "0000:99:00.0", "instances": []}], "no GPU at PCI address"),
        ([{"pci_address": "nope"}], "not a PCI address"),
        ([{"pci_address": "65:00.0", "instances": [{"profile": "3g.20gb", "start": 0}]}], "valid: 1g.10gb"),
        ([{"pci_address": "65:00.0", "instances": [{"profile": "3g.40gb", "start": 2}]}], "allowed starts: 0, 4"),
        ([{"pci_address": "65:00.0", "instances": [{"profile": "3g.40gb", "start": 0, "size": 3}]}], "occupies 4"),
        ([{"pci_address": "65:00.0", "mig_enabled": False, "instances": [{"profile": "3g.40gb"}]}], "mig_enabled"),
        ([{"pci_address": "65:00.0"}, {"pci_address": "0000:65:00.0"}], "listed twice"),
    ]:
        with pytest.raises(HyperscalerError) as err:
            mig_converge.targets_from_layout(s, layout)
        assert needle in err.value.msg, (layout, err.value.msg)


def test_explicit_overlap_is_infeasible(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    targets = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "instances": [
        {"profile": "3g.40gb", "start": 0}, {"profile": "2g.20gb", "start": 2}]}])
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets)
    assert "infeasible MIG layout" in err.value.msg and "overlaps" in err.value.msg


def test_infeasible_mig_parted_request_gives_solver_reason(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    targets, _unused, _none = mig_converge.targets_from_mig_parted(
        s, cfg([{"devices": "all", "mig-enabled": True, "mig-devices": {"4g.40gb": 1, "3g.40gb": 1, "1g.10gb": 1}}]),
        "x")
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets)
    assert "infeasible" in err.value.msg and "needs 8 compute slices" in err.value.msg


def test_existing_instances_stay_in_place(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    s.create_gpu_instance(0, 19, (5, 1))
    gi = s.all_gpu_instances(0)[0]
    s.create_compute_instance(0, gi.id, 0)
    targets, _unused, _none = mig_converge.targets_from_mig_parted(
        s, cfg([{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 1, "3g.40gb": 1}}]), "x")
    result = mig_converge.converge(s, targets)
    assert not any("destroy" in a for a in result["actions"])
    layout = [(i["profile"], i["start"], i["gi_id"]) for i in result["after"][0]["instances"]]
    assert ("1g.10gb", 5, gi.id) in layout and ("3g.40gb", 0, 2) in layout


def test_rollback_restores_prior_layout(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    first = mig_converge.converge(s, mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "instances": [
        {"profile": "3g.40gb", "start": 0}, {"profile": "2g.20gb", "start": 4}, {"profile": "1g.10gb", "start": 6}]}]))
    prior = mig_converge.diff_view(first["after"][0])
    s.add_fault("create_gpu_instance", "InsufficientResources", after=1)
    targets = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "instances": [
        {"profile": "1g.10gb", "start": s_} for s_ in range(7)]}])
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets)
    assert "rolled back to the prior layout" in err.value.msg
    assert mig_converge.diff_view(err.value.details["restored"][0]) == prior
    again = SimulatedNvml(s.path)
    assert mig_converge.diff_view(mig_converge.read_gpu(again, 0)) == prior


def test_pending_without_reset_fails_when_instances_wanted(tmp_path):
    s = sim(tmp_path, "A100-80GB", enabled=False)
    targets = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0",
                                                    "instances": [{"profile": "7g.80gb", "start": 0}]}])
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets)
    assert "allow_reset" in err.value.msg and err.value.details["reset_required"] == ["0000:65:00.0"]
    mode_only = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "mig_enabled": True}])
    result = mig_converge.converge(s, mode_only)
    assert result["reset_required"] == ["0000:65:00.0"] and s.mig_mode(0) == (0, 1)
    assert result["after"][0]["mig_pending"] is True
    result = mig_converge.converge(s, targets, allow_reset=True)
    assert s.mig_mode(0) == (1, 1) and result["reset_required"] == []
    assert [i["profile"] for i in result["after"][0]["instances"]] == ["7g.80gb"]


def test_busy_gpu_is_not_reset_or_changed(tmp_path):
    s = sim(tmp_path, "A100-80GB", enabled=False)
    s.add_process(0, 4242)
    targets = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "instances": [{"profile": "7g.80gb"}]}])
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets, allow_reset=True)
    assert "busy" in err.value.msg and err.value.details["pids"] == [4242]
    assert s.mig_mode(0) == (0, 0)


def test_busy_gpu_instance_is_not_destroyed(tmp_path):
    s = sim(tmp_path, "A100-80GB")
    gi = s.create_gpu_instance(0, 0, (0, 8))
    s.add_process(0, 77, gi_id=gi.id)
    targets = mig_converge.targets_from_layout(s, [{"pci_address": "65:00.0", "instances": [{"profile": "3g.40gb"}]}])
    before = s.snapshot()
    with pytest.raises(HyperscalerError) as err:
        mig_converge.converge(s, targets)
    assert "busy" in err.value.msg and "77" in err.value.msg
    assert SimulatedNvml(s.path).snapshot()["gpus"] == before["gpus"]


def test_save_load_and_apply_saved(tmp_path):
    s = sim(tmp_path, "H100-80GB", "A30")
    h100 = {"pci_address": "65:00.0", "instances": [
        {"profile": "4g.40gb", "start": 0}, {"profile": "1g.10gb", "start": 4}]}
    a30 = {"pci_address": "66:00.0", "instances": [
        {"profile": "2g.12gb", "start": 2, "compute_instances": ["1c.2g.12gb", "1c.2g.12gb"]}]}
    layout = [h100, a30]
    path = str(tmp_path / "etc" / "mig-layout.json")
    result = mig_converge.run(s, layout=layout, persist_path=path)
    assert result["persist_changed"]
    doc = mig_persistence.load_layout(path)
    assert doc["gpus"][1]["instances"][0]["compute_instances"] == ["1c.2g.12gb", "1c.2g.12gb"]
    assert not mig_persistence.save_layout(path, mig_persistence.layout_document(result["after"]))
    s.reset(0)  # a reboot loses the instances
    s.reset(1)
    replayed = mig_converge.apply_saved(s, path)
    assert [mig_converge.diff_view(g) for g in replayed["after"]] == [mig_converge.diff_view(g) for g in result["after"]]
    with open(path, "w") as handle:
        handle.write("{broken")
    with pytest.raises(HyperscalerError):
        mig_persistence.load_layout(path)


def test_save_keeps_other_gpus(tmp_path):
    path = str(tmp_path / "l.json")
    one = {"version": 1, "gpus": [{"pci_address": "0000:01:00.0", "model": "m", "mig_enabled": True,
                                   "instances": []}]}
    two = copy.deepcopy(one)
    two["gpus"][0]["pci_address"] = "0000:02:00.0"
    mig_persistence.save_layout(path, one)
    assert mig_persistence.save_layout(path, two, check_mode=True)
    assert len(json.load(open(path))["gpus"]) == 1  # check mode writes nothing
    mig_persistence.save_layout(path, two)
    assert [g["pci_address"] for g in json.load(open(path))["gpus"]] == ["0000:01:00.0", "0000:02:00.0"]


# ---------------------------------------------------------------- inputs and state files (issue #10)
def test_entries_that_select_no_gpu_are_returned_and_warned(tmp_path):
    s = sim(tmp_path, "A100-80GB", "T4")
    config = cfg([{"device-filter": "0x20B210DE", "devices": "all", "mig-enabled": True, "mig-devices": {}},
                  {"device-filter": ["0x233010DE", "0x233110DE:0x16C110DE"], "devices": [0, 1], "mig-enabled": False}])
    result = mig_converge.run(s, mig_config=config, selected_config="x", persist_path=None)
    assert result["unmatched_entries"] == [
        {"entry": "mig-configs.x[1]", "selects": "device-filter [0x233010DE, 0x233110DE:0x16C110DE], devices [0, 1]"}]
    assert result["warnings"] == [
        "mig-configs.x[1] (device-filter [0x233010DE, 0x233110DE:0x16C110DE], devices [0, 1]) selects no GPU on "
        "this host and is not applied; GPUs here (index: PCI address, device-filter id): 0: 0000:65:00.0 "
        "0x20B210DE, 1: 0000:66:00.0 0x1EB810DE"]


def test_unknown_real_gpu_fails_listing_the_known_models(tmp_path):
    class UnknownCard(SimulatedNvml):
        """What the real backend returns for a GPU the catalog does not know."""

        def pci_info(self, index):
            info = SimulatedNvml.pci_info(self, index)
            return dict(info, device_id=0x268410DE)

        def name(self, index):
            return "NVIDIA GeForce RTX 4090"
    s = UnknownCard(str(tmp_path / "state.json"), spec=["T4"])
    with pytest.raises(HyperscalerError) as err:
        mig_converge.run(s, mig_config=cfg([{"devices": "all", "mig-enabled": False}]), selected_config="x",
                         persist_path=None)
    assert "GPU 0 (0000:17:00.0, PCI device id 0x2684): unknown GPU model 'NVIDIA GeForce RTX 4090'; " \
           "known models: NVIDIA A100 40GB" in err.value.msg
    assert "a device-filter can leave it out" in err.value.msg


@pytest.mark.parametrize("content,needle", [
    (b"version: v1\nmig-configs: {x: [\n", "is not valid YAML (line 3, column 1)"),
    (b"\xef\xbb\xbfversion: v1\n\xc3\x28\n", "is not UTF-8 text (byte 0xc3 at line 2, column 1)"),
    (b"just a string\n", "must hold a mig-parted config mapping (version: v1, mig-configs: ...), not a string"),
])
def test_load_mig_parted_file_names_the_file(tmp_path, content, needle):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(HyperscalerError) as err:
        mig_parted.load_mig_parted_file(str(path))
    assert err.value.msg.startswith("mig_config_file: %s " % path) and needle in err.value.msg


def test_load_layout_messages_name_the_file(tmp_path):
    path = tmp_path / "saved.json"
    for content, needle in (("[]", "must hold a JSON object"), ('{"version": 2}', "has no version 1 gpus list")):
        path.write_text(content)
        with pytest.raises(HyperscalerError) as err:
            mig_persistence.load_layout(str(path))
        assert err.value.msg.startswith("the MIG layout file %s " % path) and needle in err.value.msg


def test_save_layout_refuses_unwritable_paths_in_check_mode_too(tmp_path):
    (tmp_path / "f").write_text("")
    doc = {"version": 1, "gpus": [{"pci_address": "0000:01:00.0", "model": "m", "mig_enabled": True,
                                   "instances": []}]}
    for check_mode in (True, False):
        with pytest.raises(HyperscalerError) as err:
            mig_persistence.save_layout(str(tmp_path / "f" / "l.json"), doc, check_mode=check_mode)
        bad = tmp_path / "f" / "l.json"
        assert "persist_path: %s cannot be written: %s is a regular file" % (bad, tmp_path / "f") in err.value.msg
    # an unreadable old file is replaced, not fatal (it is ours, and the new layout is what counts)
    (tmp_path / "l.json").write_text('{"version": 1, "gpus": [17, {"no": "address"}]}')
    assert mig_persistence.save_layout(str(tmp_path / "l.json"), doc)
    assert mig_persistence.load_layout(str(tmp_path / "l.json"))["gpus"] == doc["gpus"]
