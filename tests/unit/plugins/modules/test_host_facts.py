"""The host_facts module on fake /proc and /sys trees."""
import pytest
from ansible.module_utils import basic

from ansible_collections.aihow.hyperscaler.plugins.modules import host_facts
from helpers import assert_clean_failure


def fake_root(tmp_path, flags, iommu_groups):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\nflags\t\t: %s\n\nprocessor\t: 1\nflags\t\t: %s\n" % (flags, flags))
    (proc / "meminfo").write_text("MemTotal: 8388608 kB\nMemAvailable: 6291456 kB\n")
    (proc / "modules").write_text("")
    (proc / "cmdline").write_text("intel_iommu=on\n")
    for i in range(iommu_groups):
        (tmp_path / "sys" / "kernel" / "iommu_groups" / str(i)).mkdir(parents=True)
    (tmp_path / "sys").mkdir(exist_ok=True)
    (tmp_path / "modprobe.d").mkdir()
    (tmp_path / "dmesg").write_text("")
    (tmp_path / "kvm").write_text("")
    return {"proc_root": str(proc), "sys_root": str(tmp_path / "sys"), "kvm_path": str(tmp_path / "kvm"),
            "modprobe_dir": str(tmp_path / "modprobe.d"), "dmesg_path": str(tmp_path / "dmesg"),
            "pool_path": str(tmp_path)}


def test_facts_only_changes_nothing(run_module, tmp_path):
    result, failed = run_module(host_facts.main, fake_root(tmp_path, "vmx sse2", 2), check_mode=True)
    assert not failed, result
    assert result["changed"] is False
    assert result["host"]["kvm"]["usable"] is True
    assert result["host"]["iommu"]["groups"] == 2
    assert result["host"]["memory"] == {"total_mb": 8192, "available_mb": 6144}
    assert result["failures"] == [] and result["warnings_found"] == []


def test_needs_give_failures_and_warnings(run_module, tmp_path, monkeypatch):
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    args = fake_root(tmp_path, "sse2", 0)  # no vmx, no IOMMU (cmdline alone does not count)
    args["needs"] = {"vms": 3, "vcpus": 3, "memory_mb": 3072, "disk_gb": 1, "gpu_passthrough": True}
    result, failed = run_module(host_facts.main, args)
    assert not failed, result  # the caller decides; the module only reports
    assert [f["check"] for f in result["failures"]] == ["iommu", "nouveau", "vfio"]
    assert all(f["remediation"] for f in result["failures"])
    assert [w["check"] for w in result["warnings_found"]] == ["kvm"]
    assert warned == ["kvm: " + result["warnings_found"][0]["msg"]]
    assert result["host"]["kvm"]["accelerator"] == "tcg"


def test_needs_defaults_are_the_cluster_schema_defaults():
    """host_facts' defaults for the hypervisor settings must be cluster.yaml's (one source of truth)."""
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.schema import CLUSTER_SCHEMA
    hypervisor = CLUSTER_SCHEMA["$defs"]["hypervisor"]["properties"]
    needs = host_facts.HostFactsModule.argument_spec["needs"]["options"]
    shared = ("accelerator", "tcg_tb_cache_mb", "cpu_overcommit", "reserved_memory_gb", "lab_mode")
    for key in shared:
        assert needs[key]["default"] == hypervisor[key]["default"], key
        if "enum" in hypervisor[key]:
            assert needs[key]["choices"] == hypervisor[key]["enum"], key


# ---------------------------------------------------------------- bad arguments and host state (issue #10)
@pytest.mark.parametrize("option,make,needle", [
    ("proc_root", None, "proc_root: {p} does not exist"),
    ("sys_root", None, "sys_root: {p} does not exist"),
    ("sys_root", "file", "sys_root: {p} is not a directory"),
    ("dmesg_path", None, "dmesg_path: {p} does not exist"),
    ("dmesg_path", "dir", "dmesg_path: {p} is a directory"),
    ("modprobe_dir", "file", "modprobe_dir: {p} is not a directory"),
    ("pool_path", "file", "pool_path: {p} is a regular file; the storage pool needs a directory"),
])
def test_unusable_paths_fail_naming_the_option(run_module, tmp_path, option, make, needle):
    args = fake_root(tmp_path, "vmx", 1)
    path = tmp_path / "bad"
    if make == "file":
        path.write_text("x\n")
    elif make == "dir":
        path.mkdir()
    args[option] = str(path)
    result, failed = run_module(host_facts.main, args)
    assert_clean_failure(result, failed, needle.format(p=path))


def test_pool_path_below_a_regular_file(run_module, tmp_path):
    args = fake_root(tmp_path, "vmx", 1)
    (tmp_path / "afile").write_text("x\n")
    args["pool_path"] = str(tmp_path / "afile" / "pool")
    result, failed = run_module(host_facts.main, args)
    assert_clean_failure(result, failed, "pool_path: %s cannot be created: %s is a regular file"
                         % (tmp_path / "afile" / "pool", tmp_path / "afile"))


def test_a_missing_modprobe_dir_or_kvm_device_is_a_fact_not_an_error(run_module, tmp_path):
    args = fake_root(tmp_path, "vmx", 1)
    args.update(modprobe_dir=str(tmp_path / "none.d"), kvm_path=str(tmp_path / "no-kvm"))
    result, failed = run_module(host_facts.main, args)
    assert not failed, result
    assert result["host"]["kvm"]["device_exists"] is False


def test_binary_kernel_log_and_modprobe_files_are_read_leniently(run_module, tmp_path):
    args = fake_root(tmp_path, "vmx", 1)
    (tmp_path / "dmesg").write_bytes(b"\xff\xfe DMAR: IOMMU enabled\n")
    (tmp_path / "modprobe.d" / "blacklist.conf").write_bytes(b"# \xe9\nblacklist nouveau\n")
    result, failed = run_module(host_facts.main, args)
    assert not failed, result
    assert result["host"]["iommu"]["driver"] == "intel"
    assert result["host"]["modules"]["nouveau_blacklist_files"] == ["blacklist.conf"]


@pytest.mark.parametrize("needs,needle", [
    ({"vms": -1}, "needs.vms must be 0 or more, not -1"),
    ({"memory_mb": -512}, "needs.memory_mb must be 0 or more, not -512"),
    ({"cpu_overcommit": 0}, "needs.cpu_overcommit must be greater than 0"),
])
def test_impossible_needs_fail_naming_the_field(run_module, tmp_path, needs, needle):
    args = fake_root(tmp_path, "vmx", 1)
    args["needs"] = needs
    result, failed = run_module(host_facts.main, args)
    assert_clean_failure(result, failed, needle)
