"""The vgpu_mdev module end to end (in-process) against simulated sysfs trees of both host styles."""
import errno
import json
import os

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu import sysfs as vs
from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu import simulator as sim_mod
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_uuid
from ansible_collections.aihow.hyperscaler.plugins.modules import vgpu_mdev
from helpers import assert_clean_failure

V100 = "0000:3b:00.0"
A100 = "0000:41:00.0"
H200 = "0000:c1:00.0"


@pytest.fixture
def lab(tmp_path):
    return sim_mod.build_lab(str(tmp_path / "root"))


@pytest.fixture
def run(run_module, lab):
    def _run(check_mode=False, diff=False, **args):
        args.setdefault("cluster", "lab")
        args.setdefault("sysfs_root", lab.root)
        args.setdefault("simulate", True)
        return run_module(vgpu_mdev.main, args, check_mode=check_mode, diff=diff)
    return _run


def state(lab):
    fs = vs.VgpuSysfs(lab.root)
    return ([(d.style, d.key, d.parent, d.type_id) for d in fs.devices()],
            sorted(fs.definitions().items()), fs.load_record())


MIXED = [
    {"name": "hpc-compute-01", "parent": A100, "type": "A100-4C"},
    {"name": "hpc-compute-02", "parent": A100, "type": "nvidia-558"},
    {"name": "viz-01", "parent": "3b:00.0", "type": "GRID V100DX-2Q"},
    {"name": "k8s-gpu-01", "parent": H200, "type": "H200X-35C", "start": "manual"},
]


def test_present_on_both_host_styles_returns_hostdevs(run, lab):
    result, failed = run(devices=MIXED)
    assert not failed, result
    assert result["changed"] is True
    by_name = dict((d["name"], d) for d in result["devices"])
    c1 = by_name["hpc-compute-01"]
    assert c1["uuid"] == stable_uuid("lab", "hpc-compute-01", 0)
    assert (c1["style"], c1["address"], c1["pf"], c1["type"], c1["type_name"], c1["short_name"]) == (
        "mdev", "0000:41:00.4", A100, "nvidia-558", "NVIDIA A100-4C", "A100-4C")
    assert c1["hostdev"]["type"] == "mdev" and c1["hostdev"]["uuid"] == c1["uuid"]
    assert "<address uuid='%s'/>" % c1["uuid"] in c1["hostdev"]["xml"]
    assert by_name["hpc-compute-02"]["address"] == "0000:41:00.5"
    assert by_name["viz-01"]["address"] == V100 and by_name["viz-01"]["pf"] is None
    k = by_name["k8s-gpu-01"]
    assert (k["style"], k["address"], k["type"], k["persisted"]) == ("vendor-vfio", "0000:c1:00.4", "1432", False)
    assert k["hostdev"] == {"type": "pci", "address": "0000:c1:00.4", "domain": "0x0000", "bus": "0xc1",
                            "slot": "0x00", "function": "0x4", "xml": k["hostdev"]["xml"]}
    assert "bus='0xc1' slot='0x00' function='0x4'" in k["hostdev"]["xml"]
    devices, defs, record = state(lab)
    assert devices == sorted([
        ("mdev", c1["uuid"], "0000:41:00.4", "nvidia-558"),
        ("mdev", by_name["hpc-compute-02"]["uuid"], "0000:41:00.5", "nvidia-558"),
        ("mdev", by_name["viz-01"]["uuid"], V100, "nvidia-181"),
        ("vendor-vfio", "0000:c1:00.4", "0000:c1:00.4", "1432")], key=lambda d: d[1])
    assert record[k["uuid"]]["address"] == "0000:c1:00.4" and record[k["uuid"]]["start"] == "manual"
    assert len(defs) == 3  # mdevctl does not manage vendor-vfio devices


def test_check_mode_then_real_then_check_is_unchanged(run, lab):
    empty = state(lab)
    check, failed = run(devices=MIXED, check_mode=True, diff=True)
    assert not failed and check["changed"] is True
    assert state(lab) == empty  # check mode changed nothing
    real, failed = run(devices=MIXED, diff=True)
    assert not failed and real["changed"] is True
    assert real["devices"] == check["devices"]  # the plan placed devices where the run put them
    assert real["diff"]["after"] == check["diff"]["after"]
    again, failed = run(devices=MIXED, check_mode=True)
    assert not failed and again["changed"] is False


def test_idempotent_and_diff(run, lab):
    first, _unused = run(devices=MIXED, diff=True)
    assert first["diff"]["before"] == {"devices": []}
    after = first["diff"]["after"]["devices"]
    assert len(after) == 4
    viz = [d for d in after if d["owner"] == "viz-01"][0]
    assert viz == {"id": stable_uuid("lab", "viz-01", 0), "style": "mdev", "parent": V100, "type": "nvidia-181",
                   "type_name": "GRID V100DX-2Q", "owner": "viz-01", "defined": "auto"}
    snapshot = state(lab)
    second, failed = run(devices=MIXED, diff=True)
    assert not failed and second["changed"] is False
    assert second["diff"]["before"] == second["diff"]["after"] == first["diff"]["after"]
    assert second["removed"] == []
    assert state(lab) == snapshot


def test_stable_uuids_per_cluster_name_and_index(run, lab):
    result, _unused = run(devices=[{"name": "n1", "parent": V100, "type": "V100DX-2Q"},
                                   {"name": "n1", "parent": V100, "type": "V100DX-2Q"},
                                   {"name": "n2", "parent": V100, "type": "V100DX-2Q",
                                    "uuid": "A0B1C2D3-0000-4000-8000-000000000001"}])
    assert [d["uuid"] for d in result["devices"]] == [
        stable_uuid("lab", "n1", 0), stable_uuid("lab", "n1", 1), "a0b1c2d3-0000-4000-8000-000000000001"]
    assert [d["index"] for d in result["devices"]] == [0, 1, 0]
    assert os.path.islink(os.path.join(lab.root, vs.MDEV_DEVICES, stable_uuid("lab", "n1", 1)))


def test_mdevctl_definitions_are_written_with_mdevctls_schema(run, lab):
    run(devices=MIXED)
    base = os.path.join(lab.root, "etc", "mdevctl.d")
    files = {}
    for parent in sorted(os.listdir(base)):
        if parent == "scripts.d":
            continue
        for name in os.listdir(os.path.join(base, parent)):
            with open(os.path.join(base, parent, name)) as f:
                files[(parent, name)] = json.load(f)
    assert files == {
        ("0000:41:00.4", stable_uuid("lab", "hpc-compute-01", 0)): {"mdev_type": "nvidia-558", "start": "auto", "attrs": []},
        ("0000:41:00.5", stable_uuid("lab", "hpc-compute-02", 0)): {"mdev_type": "nvidia-558", "start": "auto", "attrs": []},
        (V100, stable_uuid("lab", "viz-01", 0)): {"mdev_type": "nvidia-181", "start": "auto", "attrs": []},
    }


def test_persist_false_writes_no_definition(run, lab):
    result, _unused = run(devices=MIXED[2:3], persist=False)
    assert result["changed"] and result["devices"][0]["persisted"] is False
    assert state(lab)[1] == []


def test_start_mode_change_rewrites_the_definition_only(run, lab):
    run(devices=MIXED[2:3])
    uid = stable_uuid("lab", "viz-01", 0)
    group_before = os.readlink(os.path.join(lab.root, vs.MDEV_DEVICES, uid, "iommu_group"))
    result, _unused = run(devices=[dict(MIXED[2], start="manual")], diff=True)
    assert result["changed"] is True and result["removed"] == []
    assert vs.VgpuSysfs(lab.root).definitions()[uid]["start"] == "manual"
    assert os.readlink(os.path.join(lab.root, vs.MDEV_DEVICES, uid, "iommu_group")) == group_before


def test_type_change_recreates_the_device(run, lab):
    run(devices=MIXED[2:3])
    result, failed = run(devices=[dict(MIXED[2], type="V100DX-4Q")])
    assert not failed, result
    uid = stable_uuid("lab", "viz-01", 0)
    assert result["removed"] == [{"id": uid, "style": "mdev", "parent": V100, "type": "nvidia-181",
                                  "reason": "changed"}]
    assert state(lab)[0] == [("mdev", uid, V100, "nvidia-182")]
    assert vs.VgpuSysfs(lab.root).definitions()[uid]["mdev_type"] == "nvidia-182"


def test_absent_removes_devices_definitions_and_record(run, lab):
    run(devices=MIXED)
    result, failed = run(state="absent", devices=[{"name": "viz-01"}, {"name": "k8s-gpu-01"}], diff=True)
    assert not failed and result["changed"] is True
    assert sorted(r["id"] for r in result["removed"]) == sorted([stable_uuid("lab", "viz-01", 0), "0000:c1:00.4"])
    devices, defs, record = state(lab)
    assert sorted(d[1] for d in devices) == sorted(
        [stable_uuid("lab", "hpc-compute-01", 0), stable_uuid("lab", "hpc-compute-02", 0)])
    assert stable_uuid("lab", "viz-01", 0) not in dict(defs)
    assert sorted(e["name"] for e in record.values()) == ["hpc-compute-01", "hpc-compute-02"]
    assert "1432 : NVIDIA H200X-35C" in open(os.path.join(
        lab.root, vs.PCI_DEVICES, "0000:c1:00.4", "nvidia", "creatable_vgpu_types")).read()
    again, _unused = run(state="absent", devices=[{"name": "viz-01"}, {"name": "k8s-gpu-01"}])
    assert again["changed"] is False


def test_exclusive_removes_only_owned_devices_of_the_cluster(run, lab):
    fs = vs.VgpuSysfs(lab.root, writer=lab.writer())
    foreign = "11111111-2222-3333-4444-555555555555"
    fs.create_mdev(V100, "nvidia-181", foreign)   # made by hand, not ours
    fs.create_vendor("0000:c1:00.4", "1432")        # made by hand, not ours
    run(devices=[{"name": "other", "parent": V100, "type": "V100DX-2Q"}], cluster="other")
    run(devices=MIXED)
    result, failed = run(devices=MIXED[:1], exclusive=True)
    assert not failed, result
    assert sorted(r["reason"] for r in result["removed"]) == ["exclusive"] * 3
    devices = state(lab)[0]
    keys = sorted(d[1] for d in devices)
    assert keys == sorted(["0000:c1:00.4", foreign, stable_uuid("other", "other", 0),
                           stable_uuid("lab", "hpc-compute-01", 0)])
    # its own vendor-vfio vGPU was on the next VF and is gone
    assert open(os.path.join(lab.root, vs.PCI_DEVICES, "0000:c1:00.5", "nvidia",
                             "current_vgpu_type")).read().strip() == "0"
    again, _unused = run(devices=MIXED[:1], exclusive=True)
    assert again["changed"] is False


def test_error_unknown_parent(run, lab):
    result, failed = run(devices=[{"name": "a", "parent": "0000:99:00.0", "type": "A100-4C"}])
    assert failed
    assert result["msg"].startswith("unknown vGPU parent 0000:99:00.0; known parents: ")
    assert A100 in result["known_parents"] and H200 in result["known_parents"]


def test_error_unknown_type_lists_ids_and_names(run, lab):
    result, failed = run(devices=[{"name": "a", "parent": V100, "type": "V100DX-3Q"}])
    assert failed
    assert result["msg"] == ("unknown vGPU type 'V100DX-3Q' for parent 0000:3b:00.0; it offers: "
                             "nvidia-180 (GRID V100DX-1Q), nvidia-181 (GRID V100DX-2Q), nvidia-182 (GRID V100DX-4Q), "
                             "nvidia-183 (GRID V100DX-8Q), nvidia-184 (GRID V100DX-16Q), nvidia-185 (GRID V100DX-32Q)")


def test_error_none_available_changes_nothing(run, lab):
    devs = [{"name": "n%d" % i, "parent": V100, "type": "V100DX-16Q"} for i in range(3)] + MIXED
    result, failed = run(devices=devs)
    assert failed
    assert result["msg"].startswith("no vGPU instance available for n2: type nvidia-184 (GRID V100DX-16Q)")
    assert state(lab) == ([], [], {})  # validated before any change


def test_error_in_use_refuses_and_keeps_the_device(run, lab):
    run(devices=MIXED)
    uid = stable_uuid("lab", "viz-01", 0)
    group = os.path.basename(os.readlink(os.path.join(lab.root, vs.MDEV_DEVICES, uid, "iommu_group")))
    lab.hold("/dev/vfio/%s" % group, pid=31337, comm="qemu-system-x86")
    before = state(lab)
    for args in ({"state": "absent", "devices": [{"name": "viz-01"}, {"name": "k8s-gpu-01"}]},
                 {"devices": MIXED[:1], "exclusive": True},
                 {"devices": [dict(MIXED[2], type="V100DX-4Q")] + MIXED[3:]}):
        result, failed = run(**args)
        assert failed, args
        assert result["msg"] == ("mdev %s (parent 0000:3b:00.0, type nvidia-181) is in use by a running VM: "
                                 "pid 31337 (qemu-system-x86) holds /dev/vfio/%s; stop the VM before removing "
                                 "or changing it" % (uid, group))
        assert result["in_use"] == [31337]
        assert state(lab) == before


def test_rollback_when_a_create_fails_midway(run, lab, monkeypatch):
    real_write = sim_mod.SimSysfsWriter.write
    calls = []

    def flaky(self, path, value):
        if os.path.basename(path) in ("create", "current_vgpu_type") and value != "0":
            calls.append(path)
            if len(calls) == 3:  # the V100 mdev, after both A100 mdevs exist
                raise OSError(errno.EIO, "Input/output error")
        return real_write(self, path, value)

    monkeypatch.setattr(sim_mod.SimSysfsWriter, "write", flaky)
    result, failed = run(devices=MIXED)
    assert failed
    assert result["msg"].startswith("failed to create mdev %s (nvidia-181 on 0000:3b:00.0): [Errno 5] "
                                    "Input/output error; rolled back" % stable_uuid("lab", "viz-01", 0))
    assert result["rolled_back"] == ["removed mdev %s" % stable_uuid("lab", "hpc-compute-02", 0),
                                     "removed mdev %s" % stable_uuid("lab", "hpc-compute-01", 0)]
    assert state(lab) == ([], [], {})


def test_simulate_is_refused_on_the_real_root(run_module):
    result, failed = run_module(vgpu_mdev.main, {"simulate": True, "sysfs_root": "/", "devices": []})
    assert failed and result["msg"] == "simulate=true needs sysfs_root pointing at a simulated tree, not /"


def test_present_requires_parent_and_type(run):
    result, failed = run(devices=[{"name": "a", "parent": V100}])
    assert failed and result["msg"] == "devices[0] (a): type is required with state=present"


# ---------------------------------------------------------------- bad arguments and host state (issue #10)
@pytest.mark.parametrize("content,needle", [
    ("{bad", "is not valid JSON (line 1, column 2)"),
    ("[1]", "must hold a JSON object ({...}), not an array"),
    (b"\xff", "is not UTF-8 text (byte 0xff at line 1, column 1)"),
    ('{"version": 1, "devices": [1]}', "devices must map each UUID to an object, not an array"),
    ('{"version": 1, "devices": {"x": 1}}', "devices must map each UUID to an object, not entries that are not"),
    (None, "is a directory, not a file"),
])
def test_broken_ownership_record_fails_naming_it(run, lab, content, needle):
    path = os.path.join(lab.root, vs.RECORD_PATH)
    os.makedirs(os.path.dirname(path))
    if content is None:
        os.mkdir(path)
    else:
        with open(path, "wb") as handle:
            handle.write(content if isinstance(content, bytes) else content.encode())
    result, failed = run(devices=MIXED[:1])
    assert_clean_failure(result, failed, "the vGPU ownership record %s" % path, needle)
    assert vs.VgpuSysfs(lab.root).devices() == []  # nothing was created


def test_a_definition_mdevctl_would_not_load_is_ignored(run, lab):
    run(devices=MIXED[:1])
    uid = stable_uuid("lab", "hpc-compute-01", 0)
    path = os.path.join(lab.root, vs.MDEVCTL_DIR, "0000:41:00.4", uid)
    with open(path, "w") as handle:
        handle.write("[1]")  # valid JSON, but not a definition
    result, failed = run(devices=MIXED[:1])
    assert not failed, result
    assert result["changed"] and json.load(open(path))["mdev_type"] == "nvidia-558"  # rewritten


def test_unwritable_mdevctl_dir_fails_before_any_change(run, lab):
    import shutil
    mdevctl = os.path.join(lab.root, vs.MDEVCTL_DIR)
    shutil.rmtree(mdevctl)
    with open(mdevctl, "w") as handle:
        handle.write("not a directory\n")
    result, failed = run(devices=MIXED[:1])
    assert_clean_failure(result, failed, "the mdevctl definition %s/0000:41:00.4/" % mdevctl,
                         "%s is a regular file, not a directory" % mdevctl)
    assert vs.VgpuSysfs(lab.root).devices() == []  # checked before the mdev was created


def test_roots_must_exist(run, run_module, lab, tmp_path):
    # A typo must not look like "no vGPU parents", nor skip the check for devices a running VM holds.
    missing = str(tmp_path / "nope")
    for state_ in ("present", "absent"):
        result, failed = run_module(vgpu_mdev.main, {"sysfs_root": missing, "state": state_, "devices": [
            {"name": "a", "parent": A100, "type": "A100-4C"}]})
        assert_clean_failure(result, failed, "sysfs_root: %s does not exist" % missing)
    result, failed = run(proc_root=missing, state="absent", devices=[{"name": "viz-01"}])
    assert_clean_failure(result, failed, "proc_root: %s does not exist" % missing)


def test_bad_uuid_names_the_device(run, lab):
    result, failed = run(devices=[dict(MIXED[0], uuid="nope")])
    assert_clean_failure(result, failed, "devices[0] (hpc-compute-01): uuid 'nope' is not a UUID")
