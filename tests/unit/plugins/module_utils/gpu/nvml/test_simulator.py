"""The NVML simulator against the reference tables (docs/gpu-partitioning.md, shared reference)."""
import json

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import backend as nb
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import factory as nvml_factory
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import MODELS_BY_KEY
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml

# Reference table: NVML index -> (real id, max count, starts, size) on 8-slice GPUs.
EIGHT_SLICE = {0: (19, 7, (0, 1, 2, 3, 4, 5, 6), 1), 7: (20, 1, (0, 1, 2, 3, 4, 5, 6), 1),
               9: (15, 4, (0, 2, 4, 6), 2), 1: (14, 3, (0, 2, 4), 2), 2: (9, 2, (0, 4), 4),
               3: (5, 1, (0,), 4), 4: (0, 1, (0,), 8)}
A30 = {0: (14, 4, (0, 1, 2, 3), 1), 7: (21, 1, (0, 1, 2, 3), 1), 1: (5, 2, (0, 2), 2),
       8: (6, 1, (0, 2), 2), 3: (0, 1, (0,), 4)}
TABLES = dict([(k, EIGHT_SLICE) for k in ("A100-40GB", "A100-80GB", "H100-80GB", "H100-94GB-NVL",
                                          "H200-141GB", "B200", "GH200-96GB")] + [("A30", A30)])


def sim_for(tmp_path, model, enabled=True, **extra):
    spec = [dict({"model": model, "pci_address": "0000:65:00.0", "mig_enabled": enabled}, **extra)]
    sim = SimulatedNvml(str(tmp_path / "state.json"), spec=spec)
    sim.init()
    return sim


def gi_id(sim, name):
    return sim.gi_profile_info(0, MODELS_BY_KEY[sim.state["gpus"][0]["model"]].profile(name).nvml_index).id


@pytest.mark.parametrize("model", sorted(TABLES))
def test_profile_ids_counts_and_placements_match_reference(tmp_path, model):
    sim = sim_for(tmp_path, model)
    table = TABLES[model]
    assert sorted(i.nvml_index for i in sim.gi_profiles(0)) == sorted(table)
    for index, (real_id, max_count, starts, size) in table.items():
        info = sim.gi_profile_info(0, index)
        assert info.id == real_id and info.instance_count == max_count
        assert sim.gi_possible_placements(0, real_id) == [(s, size) for s in starts]
        assert sim.gi_remaining_capacity(0, real_id) == min(max_count, len(starts))
        # max count instances can be created, one more is refused
        for _unused in range(min(max_count, len(starts))):
            sim.create_gpu_instance(0, real_id)
        with pytest.raises(nb.InsufficientResources):
            sim.create_gpu_instance(0, real_id)
        for gi in sim.gpu_instances(0, real_id):
            sim.destroy_gpu_instance(0, gi.id)


def test_h100_profile_info_values(tmp_path):
    sim = sim_for(tmp_path, "H100-80GB")
    sms = [sim.gi_profile_info(0, i).multiprocessors for i in (0, 7, 9, 1, 2, 3, 4)]
    ces = [sim.gi_profile_info(0, i).copy_engines for i in (0, 7, 9, 1, 2, 3, 4)]
    assert sms == [16, 16, 26, 32, 60, 64, 132]
    assert ces == [1, 1, 1, 2, 3, 4, 8]


def test_capacity_example_3g_at_0_leaves_three_1g(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    one = gi_id(sim, "1g.10gb")
    assert sim.gi_remaining_capacity(0, one) == 7
    sim.create_gpu_instance(0, gi_id(sim, "3g.40gb"), (0, 4))
    assert sim.gi_remaining_capacity(0, one) == 3
    assert [s for s, _unused in sim.gi_possible_placements(0, one)] == [4, 5, 6]


def test_gi_ids_follow_observations(tmp_path):
    sim = sim_for(tmp_path, "H100-80GB")
    one = gi_id(sim, "1g.10gb")
    for s in range(7):
        assert sim.create_gpu_instance(0, one, (s, 1)).id == 7 + s
    a100 = sim_for(tmp_path / "a", "A100-40GB")
    three = gi_id(a100, "3g.20gb")
    assert a100.create_gpu_instance(0, three, (0, 4)).id == 2
    assert a100.create_gpu_instance(0, three, (4, 4)).id == 1


def test_gi_ids_unique_for_every_layout_on_a30_and_a100(tmp_path):
    for model in ("A30", "A100-80GB"):
        sim = sim_for(tmp_path / model, model)
        ids = set()
        for prof in MODELS_BY_KEY[model].mig_profiles:
            for start in prof.starts:
                gi = sim.create_gpu_instance(0, prof.profile_id, (start, prof.size))
                ids.add((prof.size, start, gi.id))
                sim.destroy_gpu_instance(0, gi.id)
        by_id = {}
        for size, start, ident in ids:
            by_id.setdefault(ident, set()).add((size, start))
        # one id may be shared only by placements of the same slot (which overlap, so never coexist)
        assert all(len(slots) == 1 for slots in by_id.values())


def test_auto_placement_order_for_1g(tmp_path):
    sim = sim_for(tmp_path, "H100-80GB")
    starts = [sim.create_gpu_instance(0, gi_id(sim, "1g.10gb")).start for _unused in range(7)]
    assert starts == [6, 4, 5, 0, 1, 2, 3]
    sim2 = sim_for(tmp_path / "b", "A100-80GB")
    assert sim2.create_gpu_instance(0, gi_id(sim2, "3g.40gb")).start == 4  # highest free start


def test_explicit_placement_errors(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    three = gi_id(sim, "3g.40gb")
    with pytest.raises(nb.InvalidArgument):
        sim.create_gpu_instance(0, three, (2, 4))  # not an allowed start
    with pytest.raises(nb.InvalidArgument):
        sim.create_gpu_instance(0, three, (0, 2))  # wrong size
    sim.create_gpu_instance(0, three, (0, 4))
    with pytest.raises(nb.InsufficientResources):
        sim.create_gpu_instance(0, gi_id(sim, "2g.20gb"), (2, 2))  # overlap
    with pytest.raises(nb.InvalidArgument):
        sim.create_gpu_instance(0, 12345)  # unknown profile id


def test_mig_disabled_and_non_mig_gpu_are_not_supported(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB", enabled=False)
    with pytest.raises(nb.NotSupported):
        sim.gi_profile_info(0, 0)
    with pytest.raises(nb.NotSupported):
        sim.create_gpu_instance(0, 19)
    t4 = sim_for(tmp_path / "t4", "T4")
    with pytest.raises(nb.NotSupported):
        t4.mig_mode(0)
    with pytest.raises(nb.NotSupported):
        t4.set_mig_mode(0, True)
    with pytest.raises(nb.InvalidArgument):
        sim.gi_profile_info(0, 0x12)


def test_pending_mode_becomes_current_only_after_reset(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB", enabled=False)
    assert sim.set_mig_mode(0, True) == 0
    assert sim.mig_mode(0) == (0, 1)
    with pytest.raises(nb.NotSupported):
        sim.create_gpu_instance(0, 19)
    sim.add_process(0, 4242)
    with pytest.raises(nb.InUse):
        sim.reset(0)
    assert sim.mig_mode(0) == (0, 1)
    sim.clear_processes(0)
    sim.reset(0)
    assert sim.mig_mode(0) == (1, 1)


def test_set_mig_mode_returns_activation_status_when_busy(tmp_path):
    sim = sim_for(tmp_path, "H100-80GB", enabled=False)
    sim.add_process(0, 1)
    assert sim.set_mig_mode(0, True) == nb.ERR_IN_USE  # status, not an exception
    assert sim.mig_mode(0) == (0, 1)


def test_destroy_rules(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    gi = sim.create_gpu_instance(0, gi_id(sim, "3g.40gb"), (0, 4))
    ci = sim.create_compute_instance(0, gi.id, 2)  # 3_SLICE CI
    with pytest.raises(nb.InUse):
        sim.destroy_gpu_instance(0, gi.id)  # CIs present
    sim.add_process(0, 7, gi_id=gi.id, ci_id=ci.id)
    with pytest.raises(nb.InUse):
        sim.destroy_compute_instance(0, gi.id, ci.id)
    sim.clear_processes(0)
    sim.destroy_compute_instance(0, gi.id, ci.id)
    sim.add_process(0, 8, gi_id=gi.id)
    with pytest.raises(nb.InUse):
        sim.destroy_gpu_instance(0, gi.id)
    sim.clear_processes(0)
    sim.destroy_gpu_instance(0, gi.id)
    assert sim.all_gpu_instances(0) == []


def test_disable_with_instances_is_in_use(tmp_path):
    sim = sim_for(tmp_path, "A30")
    sim.create_gpu_instance(0, 0)
    with pytest.raises(nb.InUse):
        sim.set_mig_mode(0, False)


def test_no_permission_when_not_root(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    sim.set_root(False)
    with pytest.raises(nb.NoPermission):
        sim.create_gpu_instance(0, 19)
    with pytest.raises(nb.NoPermission):
        sim.set_mig_mode(0, False)
    assert sim.gi_remaining_capacity(0, 19) == 7  # reads still work


def test_compute_instances_shapes_and_capacity(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    gi = sim.create_gpu_instance(0, gi_id(sim, "7g.80gb"))
    shapes = sorted((p.slice_count, p.instance_count) for p in sim.ci_profiles(0, gi.id))
    assert shapes == [(1, 7), (2, 3), (3, 2), (4, 1), (7, 1)]
    h = sim_for(tmp_path / "h", "H100-80GB")
    hgi = h.create_gpu_instance(0, gi_id(h, "7g.80gb"))
    assert 4 not in [p.slice_count for p in h.ci_profiles(0, hgi.id)]  # Hopper 7g has no 4c
    gi2 = sim_for(tmp_path / "c", "A100-80GB")
    g = gi2.create_gpu_instance(0, gi_id(gi2, "2g.20gb"), (0, 2))
    a = gi2.create_compute_instance(0, g.id, 0)
    b = gi2.create_compute_instance(0, g.id, 0)
    assert (a.id, a.start, b.id, b.start) == (0, 0, 1, 1)
    with pytest.raises(nb.InsufficientResources):
        gi2.create_compute_instance(0, g.id, 1)  # 2c does not fit next to two 1c
    with pytest.raises(nb.NotSupported):
        gi2.create_compute_instance(0, g.id, 4)  # 7c is not a 2g shape
    rev2 = gi2.create_gpu_instance(0, gi_id(gi2, "1g.20gb"), (2, 2))
    assert [p.id for p in gi2.ci_profiles(0, rev2.id)] == [7]  # observed: CI profile 7 on 1g.20gb
    uuids = gi2.mig_devices(0)
    assert [(d.gi_id, d.ci_id) for d in uuids] == [(g.id, 0), (g.id, 1)]
    assert all(d.uuid.startswith("MIG-") for d in uuids)


def test_state_persists_and_uuids_are_stable(tmp_path):
    path = str(tmp_path / "state.json")
    sim = SimulatedNvml(path, spec=[{"model": "H100-80GB", "pci_address": "0000:65:00.0", "mig_enabled": True}])
    gi = sim.create_gpu_instance(0, 9, (4, 4))
    sim.create_compute_instance(0, gi.id, 2)
    again = SimulatedNvml(path)
    assert again.all_gpu_instances(0) == sim.all_gpu_instances(0)
    assert again.mig_devices(0) == sim.mig_devices(0)
    on_disk = json.load(open(path))
    assert on_disk["gpus"][0]["gpu_instances"][0]["start"] == 4
    other = SimulatedNvml(str(tmp_path / "other.json"),
                          spec=[{"model": "H100-80GB", "pci_address": "0000:65:00.0", "mig_enabled": True}])
    assert other.uuid(0) == sim.uuid(0) and sim.uuid(0).startswith("GPU-")
    assert sim.pci_info(0) == {"bus_id": "0000:65:00.0", "device_id": 0x233010DE, "subsystem_id": 0x233010DE}
    assert sim.index_by_pci_bus_id("00000000:65:00.0") == 0
    with pytest.raises(nb.NotFound):
        sim.index_by_pci_bus_id("0000:66:00.0")


def test_missing_state_without_spec_is_an_error(tmp_path):
    with pytest.raises(nb.NvmlError):
        SimulatedNvml(str(tmp_path / "none.json"))


def test_fault_injection_fires_after_n_calls_once(tmp_path):
    sim = sim_for(tmp_path, "A100-80GB")
    sim.add_fault("create_gpu_instance", "InsufficientResources", after=2)
    sim.create_gpu_instance(0, 19)
    sim.create_gpu_instance(0, 19)
    with pytest.raises(nb.InsufficientResources) as err:
        sim.create_gpu_instance(0, 19)
    assert "injected" in str(err.value)
    sim.create_gpu_instance(0, 19)  # fired once only
    assert len(sim.all_gpu_instances(0)) == 3
    reloaded = SimulatedNvml(sim.path)
    assert reloaded.state["faults"][0]["fired"] == 1


# ---------------------------------------------------------------- bad spec and bad state files (issue #10)
def test_h200_nvl_reports_its_own_pci_id_and_name(tmp_path):
    sim = SimulatedNvml(str(tmp_path / "s.json"), spec=["NVIDIA H200 NVL", "NVIDIA H200", {"model": "0x233b"}])
    ids = [sim.pci_info(i)["device_id"] for i in range(3)]
    assert ids == [0x233B10DE, 0x233510DE, 0x233B10DE]
    assert [sim.name(i) for i in range(3)] == ["NVIDIA H200 NVL", "NVIDIA H200", "NVIDIA H200 NVL"]
    assert [g["model"] for g in sim.state["gpus"]] == ["H200-141GB"] * 3  # one model: same MIG geometry
    again = SimulatedNvml(sim.path)  # the variant is part of the state file
    assert again.pci_info(0)["device_id"] == 0x233B10DE


def test_state_files_without_a_device_id_still_load(tmp_path):
    path = tmp_path / "old.json"
    state = SimulatedNvml(str(path), spec=["A100-80GB"]).snapshot()
    del state["gpus"][0]["pci_device_id"]
    path.write_text(json.dumps(state))
    assert SimulatedNvml(str(path)).pci_info(0)["device_id"] == 0x20B210DE  # the model's first id, as before


@pytest.mark.parametrize("spec,needle", [
    ([{"model": "NVIDIA GH200 144GB"}], "simulator_spec[0].model: unknown GPU model 'NVIDIA GH200 144GB'; "
                                        "known models: NVIDIA A100 40GB"),
    (["A100-80GB", 42], "simulator_spec[1].model: GPU model must be a non-empty string, not 42"),
    ([{"pci_address": "0000:65:00.0"}], "simulator_spec[0]: model is required"),
    ([{"model": "T4", "pci_address": "zz"}], "simulator_spec[0].pci_address 'zz' is not a PCI address"),
    (["T4", {"model": "T4", "pci_address": "0000:17:00.0"}],
     "simulator_spec[1].pci_address 0000:17:00.0 is already used by simulator_spec[0]"),
    ([{"model": "T4", "subsystem_id": "x"}], "simulator_spec[0].subsystem_id 'x' is not a number"),
    ({"gpus": "A100"}, "simulator_spec must be a list of GPUs, not a string"),
])
def test_bad_spec_is_refused_naming_the_entry(tmp_path, spec, needle):
    with pytest.raises(nb.BackendInputError) as exc:
        SimulatedNvml(str(tmp_path / "s.json"), spec=spec)
    assert needle in exc.value.msg
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("content,needle", [
    ("", "is not valid JSON (line 1, column 1)"),
    ("null", "must hold a JSON object ({...}), not null"),
    ('{"version": 1, "gpus": [], "faults": {}}', ": faults must be a list of objects"),
    ('{"version": 1, "gpus": [7]}', ": gpus[0] is a number, not an object"),
    ('{"version": 1, "gpus": [{"model": "T4", "pci_bus_id": "0000:17:00.0", "uuid": "GPU-1", '
     '"mig": {"current": 0, "pending": 0}, "gpu_instances": [], "processes": []}]}',
     ": gpus[0].mig must be null: Tesla T4 does not support MIG"),
    ('{"version": 1, "gpus": [{"model": "A100-80GB", "pci_bus_id": "0000:65:00.0", "uuid": "GPU-1", '
     '"mig": null, "gpu_instances": [], "processes": []}]}', ': gpus[0].mig must be {"current": 0|1'),
    ('{"version": 1, "gpus": [{"model": "A100-80GB", "pci_bus_id": "0000:65:00.0", "uuid": "GPU-1", '
     '"pci_device_id": "0x2335", "mig": {"current": 0, "pending": 0}, "gpu_instances": [], "processes": []}]}',
     ": gpus[0].pci_device_id '0x2335' is not a PCI device id of NVIDIA A100 80GB"),
    ('{"version": 1, "gpus": [{"model": "T4", "pci_bus_id": "0000:17:00.0", "uuid": "GPU-1", "mig": null, '
     '"gpu_instances": [], "processes": [{"pid": "1"}]}]}', ": gpus[0].processes[0] needs an integer pid"),
])
def test_bad_state_file_is_refused_naming_the_field(tmp_path, content, needle):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(nb.BackendInputError) as exc:
        SimulatedNvml(str(path))
    assert exc.value.msg.startswith("simulator_state: %s" % path)
    assert needle in exc.value.msg


def test_state_that_cannot_be_written_is_reported(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(nb.BackendInputError) as exc:
        SimulatedNvml(str(tmp_path / "file" / "s.json"), spec=["T4"])
    state = tmp_path / "file" / "s.json"
    assert "simulator_state: %s cannot be written: %s is a regular file" % (state, tmp_path / "file") \
        in exc.value.msg
    # in check mode nothing is written, so the same spec works in memory
    assert SimulatedNvml(str(tmp_path / "file" / "s.json"), spec=["T4"], write_new=False).device_count() == 1


def test_backend_input_errors_are_nvml_errors_for_the_restore_script(tmp_path):
    # scripts/hyperscaler-gpu-restore catches NvmlError around make_backend
    with pytest.raises(nb.NvmlError):
        nvml_factory.make_backend("simulator", str(tmp_path / "absent.json"))
