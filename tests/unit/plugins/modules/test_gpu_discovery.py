"""gpu_discovery: NVML (simulated) joined with a fake PCI sysfs tree; sysfs-only fallback; read-only."""
import json
import os

import pytest

from ansible_collections.aihow.hyperscaler.plugins.modules import gpu_discovery
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml
from helpers import assert_clean_failure


def pci_dev(root, bdf, device, vendor="0x10de", cls="0x030200", driver="nvidia", group=42, vfs=None, physfn=False):
    path = root / "sys/bus/pci/devices" / bdf
    path.mkdir(parents=True)
    (path / "vendor").write_text(vendor + "\n")
    (path / "device").write_text(device + "\n")
    (path / "class").write_text(cls + "\n")
    if driver:
        target = root / "sys/bus/pci/drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(str(target), str(path / "driver"))
    groups = root / "sys/kernel/iommu_groups" / str(group)
    groups.mkdir(parents=True, exist_ok=True)
    os.symlink(str(groups), str(path / "iommu_group"))
    if vfs is not None:
        (path / "sriov_totalvfs").write_text("%d\n" % vfs[0])
        (path / "sriov_numvfs").write_text("%d\n" % vfs[1])
    if physfn:
        os.symlink(str(path), str(path / "physfn"))


def tree(tmp_path):
    root = tmp_path / "root"
    pci_dev(root, "0000:65:00.0", "0x20b2", group=42, vfs=(16, 0))
    pci_dev(root, "0000:ca:00.0", "0x1e30", driver="vfio-pci", group=7)
    pci_dev(root, "0000:65:00.4", "0x20b2", physfn=True, group=50)  # a VF: not a GPU of its own
    pci_dev(root, "0000:ca:00.1", "0x10f7", cls="0x040300", group=7)  # HDMI audio function
    pci_dev(root, "0000:00:1f.0", "0x1234", vendor="0x8086", cls="0x060100", driver=None, group=1)
    return root


def test_nvml_joined_with_sysfs(tmp_path, run_module):
    root = tree(tmp_path)
    state = str(tmp_path / "sim.json")
    SimulatedNvml(state, spec=[{"model": "A100-80GB", "pci_address": "0000:65:00.0", "mig_enabled": True},
                               {"model": "QUADRO-RTX-6000", "pci_address": "0000:ca:00.0"}])
    before = open(state).read()
    result, failed = run_module(gpu_discovery.main, {"backend": "simulator", "simulator_state": state,
                                                     "sysfs_root": str(root)}, check_mode=True)
    assert not failed and result["changed"] is False and result["nvml_available"]
    assert open(state).read() == before  # nothing changed
    a100, rtx = result["devices"]
    assert (a100["id"], a100["pci_address"], a100["model"], a100["mig_capable"]) == \
        ("GPU-0", "0000:65:00.0", "NVIDIA A100 80GB", True)
    assert "3g.40gb" in a100["allowed_mig_profiles"]
    f = a100["facts"]
    assert f["mig_mode"] == {"current": "enabled", "pending": "enabled"}
    assert (f["driver"], f["iommu_group"], f["sriov"]) == ("nvidia", 42, {"total_vfs": 16, "num_vfs": 0})
    assert f["memory_mb"] == 81920 and f["uuid"].startswith("GPU-") and f["sources"] == ["nvml", "sysfs"]
    assert rtx["model"] == "Quadro RTX 6000" and rtx["mig_capable"] is False
    assert "allowed_mig_profiles" not in rtx
    assert rtx["facts"]["driver"] == "vfio-pci" and rtx["facts"]["mig_mode"] is None


def test_sysfs_only_when_nvml_is_missing(tmp_path, run_module, monkeypatch):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import backend as nvml_backend
    monkeypatch.setattr(nvml_backend, "PYNVML_LOADER", lambda: None)
    root = tree(tmp_path)
    result, failed = run_module(gpu_discovery.main, {"sysfs_root": str(root), "id_prefix": "gpu"})
    assert not failed and not result["changed"]
    assert result["nvml_available"] is False and "nvidia-ml-py" in result["nvml_error"]
    assert [d["pci_address"] for d in result["devices"]] == ["0000:65:00.0", "0000:ca:00.0"]
    a100 = result["devices"][0]
    assert a100["id"] == "gpu0" and a100["mig_capable"] and a100["facts"]["sources"] == ["sysfs"]
    assert a100["facts"]["mig_mode"] is None


def test_backend_none_and_empty_sysfs(tmp_path, run_module):
    result, failed = run_module(gpu_discovery.main, {"backend": "none", "sysfs_root": str(tmp_path)})
    assert not failed and result["devices"] == [] and result["nvml_available"] is False


def test_output_fits_cluster_yaml_device_shape(tmp_path, run_module):
    """The device entries (without facts) validate against the cluster.yaml schema's device definition."""
    root = tree(tmp_path)
    result, _unused = run_module(gpu_discovery.main, {"backend": "none", "sysfs_root": str(root)})
    schema_path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "schemas", "cluster.schema.json")
    schema = json.load(open(schema_path))
    import jsonschema
    device_schema = dict(schema["$defs"]["gpu_device"], **{"$defs": schema["$defs"]})
    for dev in result["devices"]:
        entry = dict((k, v) for k, v in dev.items() if k != "facts")
        jsonschema.validate(entry, device_schema)
        assert set(entry) <= {"id", "pci_address", "model", "mig_capable", "allowed_mig_profiles"}


# ---------------------------------------------------------------- bad arguments and host state (issue #10)
@pytest.mark.parametrize("content,needle", [
    ("{garbage", "is not valid JSON (line 1, column 2)"),
    ("[1, 2]", "must hold a JSON object ({...}), not an array"),
    (b"\xfe", "is not UTF-8 text"),
    ('{"version": 1, "gpus": [{"model": "A100-80GB"}]}', "gpus[0].pci_bus_id None is not a normalised PCI address"),
    (None, "is a directory, not a file"),
])
def test_bad_simulator_state_fails_instead_of_falling_back(tmp_path, run_module, content, needle):
    state = tmp_path / "sim.json"
    if content is None:
        state.mkdir()
    elif isinstance(content, bytes):
        state.write_bytes(content)
    else:
        state.write_text(content)
    result, failed = run_module(gpu_discovery.main, {"backend": "simulator", "simulator_state": str(state),
                                                     "sysfs_root": str(tmp_path)})
    assert_clean_failure(result, failed, "simulator_state: %s" % state, needle)


def test_missing_simulator_state_fails(tmp_path, run_module):
    state = tmp_path / "absent.json"
    result, failed = run_module(gpu_discovery.main, {"backend": "simulator", "simulator_state": str(state),
                                                     "sysfs_root": str(tmp_path)})
    assert_clean_failure(result, failed, "simulator_state: %s does not exist" % state)


def test_sysfs_root_must_exist(tmp_path, run_module):
    missing = tmp_path / "nope"
    result, failed = run_module(gpu_discovery.main, {"backend": "none", "sysfs_root": str(missing)})
    assert_clean_failure(result, failed, "sysfs_root: %s does not exist" % missing, "sys/bus/pci/devices")
    afile = tmp_path / "file"
    afile.write_text("")
    result, failed = run_module(gpu_discovery.main, {"backend": "none", "sysfs_root": str(afile)})
    assert_clean_failure(result, failed, "sysfs_root: %s is not a directory" % afile)


def test_simulated_h200_nvl_reports_its_own_pci_id(tmp_path, run_module):
    state = str(tmp_path / "sim.json")
    SimulatedNvml(state, spec=[{"model": "NVIDIA H200 NVL", "pci_address": "0000:06:00.0"},
                               {"model": "H200-141GB", "pci_address": "0000:07:00.0"},
                               {"model": "0x2342", "pci_address": "0009:01:00.0"}])
    result, failed = run_module(gpu_discovery.main, {"backend": "simulator", "simulator_state": state,
                                                     "sysfs_root": str(tmp_path)})
    assert not failed, result
    nvl, sxm, gh200 = result["devices"]
    assert (nvl["facts"]["pci_device_id"], nvl["facts"]["name"], nvl["facts"]["model_key"]) == \
        ("0x233b", "NVIDIA H200 NVL", "H200-141GB")
    assert (sxm["facts"]["pci_device_id"], sxm["facts"]["name"]) == ("0x2335", "NVIDIA H200")
    assert (gh200["model"], gh200["facts"]["pci_device_id"], gh200["facts"]["memory_mb"]) == \
        ("NVIDIA GH200 480GB", "0x2342", 97871)
    assert gh200["allowed_mig_profiles"] == ["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb",
                                             "7g.96gb"]
