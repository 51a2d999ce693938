"""host_checks on fake /proc, /sys, /dev/kvm and modprobe.d trees."""
import errno
import socket

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import checks as hc
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

MEMINFO = "MemTotal:       24576000 kB\nMemFree:  1000 kB\nMemAvailable:   20480000 kB\n"


def make_host(root, flags="fpu sse2 vmx", kvm=True, iommu_groups=0, units=(), modules="", blacklist=None,
              cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1", dmesg="", cpus=2, builtin=()):
    proc, sys_ = root / "proc", root / "sys"
    proc.mkdir()
    cpuinfo = "".join("processor\t: %d\nvendor_id\t: GenuineIntel\nflags\t\t: %s\n\n" % (i, flags)
                      for i in range(cpus))
    (proc / "cpuinfo").write_text(cpuinfo)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "modules").write_text(modules)
    (proc / "cmdline").write_text(cmdline)
    for i in range(iommu_groups):
        (sys_ / "kernel" / "iommu_groups" / str(i)).mkdir(parents=True)
    for u in units:
        (sys_ / "class" / "iommu" / u).mkdir(parents=True)
    for m in builtin:
        (sys_ / "module" / m).mkdir(parents=True)
    sys_.mkdir(exist_ok=True)
    mp = root / "modprobe.d"
    mp.mkdir()
    if blacklist is not None:
        (mp / "blacklist-nouveau.conf").write_text(blacklist)
    kvm_path = root / "kvm"
    if kvm:
        kvm_path.write_text("")  # a regular file opens read-write like a usable /dev/kvm
    (root / "dmesg").write_text(dmesg)
    return dict(proc_root=str(proc), sys_root=str(sys_), kvm_path=str(kvm_path), modprobe_dir=str(mp),
                dmesg_path=str(root / "dmesg"), pool_path=str(root / "pool" / "not-yet"),
                sockets=[str(root / "no-sock")], which=lambda n: "/usr/sbin/" + n)


NEEDS = {"vms": 3, "vcpus": 3, "memory_mb": 3072, "disk_gb": 24, "gpu_passthrough": False,
         "accelerator": "auto", "tcg_tb_cache_mb": 128, "cpu_overcommit": 4, "reserved_memory_gb": 2,
         "lab_mode": "auto"}


def checks(items):
    return sorted(i["check"] for i in items)


def test_kvm_host_with_iommu_passes(tmp_path):
    facts = hc.gather(**make_host(tmp_path, iommu_groups=3, units=["dmar0"],
                                  dmesg="[0.1] DMAR: IOMMU enabled\n[0.2] other\n"))
    assert facts["kvm"]["usable"] is True and facts["kvm"]["accelerator"] == "kvm"
    assert facts["cpu"] == {"vendor": "GenuineIntel", "logical_cpus": 2, "virt_flags": ["vmx"]}
    assert facts["iommu"] == {"enabled": True, "groups": 3, "units": ["dmar0"], "driver": "intel",
                              "log": ["[0.1] DMAR: IOMMU enabled"]}
    assert facts["memory"] == {"total_mb": 24000, "available_mb": 20000}
    assert facts["disk"]["measured_at"] == str(tmp_path)  # nearest existing parent of the pool
    assert hc.evaluate(facts, NEEDS) == ([], [])


def test_kvm_node_without_vmx_is_tcg_warning_not_failure(tmp_path):
    facts = hc.gather(**make_host(tmp_path, flags="fpu sse2", iommu_groups=1))
    assert facts["kvm"]["usable"] is False and facts["kvm"]["device_exists"] is True
    failures, warnings = hc.evaluate(facts, NEEDS)
    assert failures == []
    assert checks(warnings) == ["kvm"] and "neither vmx nor svm" in warnings[0]["msg"]
    failures, _unused = hc.evaluate(facts, dict(NEEDS, accelerator="kvm"))
    assert checks(failures) == ["kvm"] and "kvm_intel" in failures[0]["remediation"]
    assert hc.evaluate(facts, dict(NEEDS, accelerator="tcg")) == ([], [])


def test_vmx_without_device_is_not_kvm(tmp_path):
    facts = hc.gather(**make_host(tmp_path, kvm=False, iommu_groups=1))
    assert facts["kvm"]["usable"] is False and "cannot be opened" in facts["kvm"]["reason"]


def test_iommu_is_not_read_from_cmdline(tmp_path):
    # intel_iommu=on on the command line but no groups: the kernel did not enable it.
    facts = hc.gather(**make_host(tmp_path, cmdline="root=/dev/sda intel_iommu=on iommu=pt"))
    assert facts["iommu"]["enabled"] is False
    failures, warnings = hc.evaluate(facts, NEEDS)
    assert failures == [] and checks(warnings) == ["iommu"] and "no GPU passthrough" in warnings[0]["msg"]


def test_amd_iommu_from_units_and_log(tmp_path):
    facts = hc.gather(**make_host(tmp_path, flags="svm", iommu_groups=2, units=["ivhd0"],
                                  dmesg="AMD-Vi: Found IOMMU cap 0x40\n"))
    assert facts["iommu"]["driver"] == "amd" and facts["cpu"]["virt_flags"] == ["svm"]


def test_gpu_passthrough_needs_iommu_vfio_and_no_nouveau(tmp_path):
    facts = hc.gather(**make_host(tmp_path, modules="nouveau 2000000 0 - Live 0x0\n"))
    failures, _unused = hc.evaluate(facts, dict(NEEDS, gpu_passthrough=True))
    assert checks(failures) == ["iommu", "nouveau", "vfio"]
    by = {f["check"]: f for f in failures}
    assert "intel_iommu=on" in by["iommu"]["remediation"]
    assert "blacklist nouveau" in by["nouveau"]["remediation"] and "loaded" in by["nouveau"]["msg"]
    assert "vfio_pci" in by["vfio"]["msg"]


def test_gpu_passthrough_ready_host(tmp_path):
    host = make_host(tmp_path, iommu_groups=4, units=["dmar0"], blacklist="blacklist nouveau\noptions nouveau modeset=0\n",
                     modules="vfio_pci 16384 0 - Live 0x0\nvfio_iommu_type1 4 0 - Live 0x0\n", builtin=["vfio"])
    facts = hc.gather(**host)
    assert facts["modules"]["vfio"] == {"vfio": True, "vfio_pci": True, "vfio_iommu_type1": True}
    assert facts["modules"]["nouveau_blacklist_files"] == ["blacklist-nouveau.conf"]
    assert hc.evaluate(facts, dict(NEEDS, gpu_passthrough=True)) == ([], [])


def test_nouveau_blacklisted_on_cmdline(tmp_path):
    facts = hc.gather(**make_host(tmp_path, cmdline="root=/dev/sda modprobe.blacklist=nouveau,foo"))
    assert facts["modules"]["nouveau_blacklisted"] is True
    commented = tmp_path / "b"
    commented.mkdir()
    facts = hc.gather(**make_host(commented, blacklist="# blacklist nouveau\n"))
    assert facts["modules"]["nouveau_blacklisted"] is False


def test_resources_cpu_memory_disk(tmp_path):
    facts = hc.gather(**make_host(tmp_path, iommu_groups=1))
    failures, _unused = hc.evaluate(facts, dict(NEEDS, vcpus=9))  # 2 CPUs x 4
    assert checks(failures) == ["cpu"] and "need 9 vCPUs" in failures[0]["msg"]
    # 20000 MiB available - 2048 reserved = 17952 for 4 VMs of guest RAM + 64 MiB QEMU each (KVM host)
    assert hc.evaluate(facts, dict(NEEDS, vms=4, memory_mb=17952 - 4 * 64))[0] == []
    failures, _unused = hc.evaluate(facts, dict(NEEDS, vms=4, memory_mb=17952 - 4 * 64 + 1))
    assert checks(failures) == ["memory"] and "TCG cache" not in failures[0]["msg"]
    facts["disk"]["free_gb"] = 5.0
    failures, warnings = hc.evaluate(facts, dict(NEEDS, vms=3))
    assert checks(failures) == ["disk"]
    facts["disk"]["free_gb"] = 10.0
    failures, warnings = hc.evaluate(facts, NEEDS)
    assert failures == [] and checks(warnings) == ["disk"]


def test_tcg_memory_includes_translation_cache(tmp_path):
    facts = hc.gather(**make_host(tmp_path, flags="sse2", iommu_groups=1))
    # what fits a KVM host does not fit under TCG: 128 MiB translation cache per VM on top
    failures, _unused = hc.evaluate(facts, dict(NEEDS, vms=4, memory_mb=17952 - 4 * 64))
    assert checks(failures) == ["memory"] and "TCG cache" in failures[0]["msg"]
    assert hc.evaluate(facts, dict(NEEDS, vms=4, memory_mb=17952 - 4 * 192))[0] == []


def test_libvirt_access(tmp_path):
    host = make_host(tmp_path, iommu_groups=1)
    facts = hc.gather(**host)
    assert facts["libvirt"]["served"] is False
    assert hc.evaluate(facts, NEEDS) == ([], [])  # lab mode brings its own libvirtd
    failures, _unused = hc.evaluate(facts, dict(NEEDS, lab_mode="disabled"))
    assert checks(failures) == ["libvirt"] and "libvirt-daemon-system" in failures[0]["remediation"]
    facts["libvirt"]["libvirtd"] = None
    assert checks(hc.evaluate(facts, NEEDS)[0]) == ["libvirt"]
    facts["libvirt"]["qemu"] = None
    assert "qemu-system-x86" in hc.evaluate(facts, NEEDS)[0][0]["remediation"]


def test_libvirt_socket_that_answers(tmp_path):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        got = hc.libvirt_facts([str(tmp_path / "none"), path], which=lambda n: None)
    finally:
        server.close()
    assert got == {"socket": path, "served": True, "libvirtd": None, "qemu": None}


def test_kernel_log_from_dmesg_command():
    class Done:
        returncode, stdout = 0, "DMAR: IOMMU enabled\n"
    assert hc.kernel_log(run=lambda *a, **k: Done()) == "DMAR: IOMMU enabled\n"

    def denied(*a, **k):
        raise OSError("Operation not permitted")
    assert hc.kernel_log(run=denied) == ""


# ---------------------------------------------------------------- paths and needs that cannot be right (issue #10)
def test_check_paths_names_the_option(tmp_path):
    host = make_host(tmp_path)
    paths = dict((k, host[k]) for k in ("proc_root", "sys_root", "modprobe_dir", "dmesg_path", "pool_path"))
    hc.check_paths(**paths)
    for option in ("proc_root", "sys_root"):
        with pytest.raises(HyperscalerError) as exc:
            hc.check_paths(**dict(paths, **{option: str(tmp_path / "missing")}))
        assert exc.value.msg.startswith("%s: %s does not exist" % (option, tmp_path / "missing"))
    no_log = dict(host)
    no_log["dmesg_path"] = str(tmp_path / "no-log")
    with pytest.raises(HyperscalerError, match="dmesg_path: .* does not exist"):
        hc.gather(**no_log)
    # a host without modprobe.d, without /dev/kvm or without the pool yet is a fact, not an error
    bare = dict(host)
    bare.update(modprobe_dir=str(tmp_path / "none"), kvm_path=str(tmp_path / "none-kvm"))
    facts = hc.gather(**bare)
    assert facts["modules"]["nouveau_blacklist_files"] == [] and facts["kvm"]["device_exists"] is False


def test_statvfs_failure_is_reported(tmp_path, monkeypatch):
    host = make_host(tmp_path)

    def denied(path):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(hc.os, "statvfs", denied)
    with pytest.raises(HyperscalerError) as exc:
        hc.gather(**host)
    assert exc.value.msg.startswith("pool_path: cannot measure the free space at %s" % tmp_path)


@pytest.mark.parametrize("needs,message", [
    ({"vcpus": -2}, "needs.vcpus must be 0 or more, not -2"),
    ({"reserved_memory_gb": -0.5}, "needs.reserved_memory_gb must be 0 or more, not -0.5"),
    ({"cpu_overcommit": -1.0}, "needs.cpu_overcommit must be greater than 0 (1 means no overcommit), not -1.0"),
])
def test_check_needs(needs, message):
    with pytest.raises(HyperscalerError) as exc:
        hc.check_needs(dict(NEEDS, **needs))
    assert exc.value.msg == message
    hc.check_needs(NEEDS)  # the defaults are fine
