"""The libvirt_cluster module end to end on test:///default (in-process, no daemon, no traffic).

test:///default keeps one state per process only while a connection is open, and the module
opens and closes its own: the fixture holds a connection for the whole test, so consecutive
module runs see the same state, and removes what the test created afterwards.
"""
import xml.etree.ElementTree as ET

import libvirt
import pytest
from ansible.module_utils import basic

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import converge as libvirt_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import accelerator
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import ssh as libvirt_ssh
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import definitions as libvirt_xml
from ansible_collections.aihow.hyperscaler.plugins.modules import libvirt_cluster

URI = "test:///default"


@pytest.fixture
def hv(tmp_path, monkeypatch):
    conn = libvirt_converge.connect(URI)
    # A host without usable KVM, whatever machine runs the tests.
    cpu = tmp_path / "cpuinfo"
    cpu.write_text("flags\t\t: fpu sse2\n")
    monkeypatch.setattr(accelerator, "CPUINFO_PATH", str(cpu))
    monkeypatch.setattr(accelerator, "KVM_PATH", str(tmp_path / "no-kvm"))
    yield conn
    for dom in conn.listAllDomains():
        if libvirt_xml.owner_metadata(dom.XMLDesc(0)) is not None:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in conn.listAllNetworks():
        if net.name().startswith("hs-"):
            if net.isActive():
                net.destroy()
            net.undefine()
    conn.close()


def args(**over):
    a = {
        "uri": URI,
        "state": "running",
        "networks": [{"name": "hs-mod-net", "subnet": "10.66.0.0/24",
                      "hosts": [{"mac": "52:54:00:66:00:01", "name": "k8s-cp", "ip": "10.66.0.10"}]}],
        "domains": [{"name": "k8s-cp", "cluster": "lab", "role": "k8s-control-plane", "vcpus": 2, "memory_mib": 2048,
                     "nics": [{"network": "hs-mod-net", "mac": "52:54:00:66:00:01"}],
                     "gpus": [{"kind": "simulated", "model": "A100", "profile": "3g.20gb"}]},
                    {"name": "k8s-worker", "cluster": "lab", "role": "k8s-worker",
                     "nics": [{"network": "hs-mod-net"}],
                     "gpus": [{"kind": "pci", "address": "0000:65:00.0"}]}],
    }
    a.update(over)
    return a


def test_define_start_then_idempotent(run_module, hv, monkeypatch):
    warned = []
    # the fixture's exit_json bypasses Ansible's warning collection, so record warn() directly
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    result, failed = run_module(libvirt_cluster.main, args(), diff=True)
    assert not failed, result
    assert result["changed"] is True
    assert "# domain/k8s-cp (define)" in result["diff"]["after"]
    assert result["accelerator"] == "tcg"
    assert "neither vmx nor svm" in result["accelerator_reason"]
    assert warned == [result["accelerator_reason"]]
    assert warned[0].startswith("TCG software emulation is used because KVM is not usable")
    worker = hv.lookupByName("k8s-worker")
    assert worker.isActive()
    root = ET.fromstring(worker.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert root.get("type") == "qemu" and root.find("features/tcg/tb-cache") is not None
    assert root.find("devices/hostdev/source/address").get("bus") == "0x65"
    assert result["domains"]["k8s-cp"]["macs"] == ["52:54:00:66:00:01"]

    again, failed = run_module(libvirt_cluster.main, args(), diff=True)
    assert not failed, again
    assert again["changed"] is False
    assert again["changes"] == [] and "diff" not in again


def test_check_mode_three_steps(run_module, hv):
    check, _unused = run_module(libvirt_cluster.main, args(), check_mode=True)
    assert check["changed"] is True
    with pytest.raises(libvirt.libvirtError):
        hv.lookupByName("k8s-cp")
    real, _unused = run_module(libvirt_cluster.main, args())
    assert real["changed"] is True and hv.lookupByName("k8s-cp").isActive()
    check2, _unused = run_module(libvirt_cluster.main, args(), check_mode=True)
    assert check2["changed"] is False


def test_drift_reported_in_diff_and_restored(run_module, hv):
    run_module(libvirt_cluster.main, args(state="present"))
    dom = hv.lookupByName("k8s-cp")
    uuid = dom.UUIDString()
    dom.setMemoryFlags(3072 * 1024, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    result, failed = run_module(libvirt_cluster.main, args(state="present"), diff=True)
    assert not failed, result
    assert result["changed"] is True
    assert [(c["name"], c["action"]) for c in result["changes"]] == [("k8s-cp", "redefine")]
    assert "3145728" in result["diff"]["before"] and "2097152" in result["diff"]["after"]
    dom = hv.lookupByName("k8s-cp")
    assert dom.maxMemory() == 2048 * 1024 and dom.UUIDString() == uuid
    assert libvirt_xml.domain_identity(dom.XMLDesc(0))[1] == ["52:54:00:66:00:01"]


def test_absent_leaves_the_builtin_test_domain(run_module, hv):
    run_module(libvirt_cluster.main, args())
    a = args(state="absent")
    a["domains"] = a["domains"] + [{"name": "test"}]
    result, failed = run_module(libvirt_cluster.main, a)
    assert not failed, result
    assert result["changed"] is True
    assert result["skipped"] == [{"kind": "domain", "name": "test",
                                  "reason": "no aihow.hyperscaler metadata: not created by this collection"}]
    assert [d.name() for d in hv.listAllDomains()] == ["test"]
    assert "hs-mod-net" not in [n.name() for n in hv.listAllNetworks()]
    assert "default" in [n.name() for n in hv.listAllNetworks()]


def test_requested_kvm_on_host_without_kvm_fails_with_remediation(run_module, hv):
    result, failed = run_module(libvirt_cluster.main, args(accelerator="kvm"))
    assert failed
    assert "accelerator 'kvm' was requested" in result["msg"] and "Remediation" in result["msg"]
    with pytest.raises(libvirt.libvirtError):
        hv.lookupByName("k8s-cp")


def test_kvm_host_gets_kvm_domains(run_module, hv, tmp_path, monkeypatch):
    cpu = tmp_path / "cpuinfo-kvm"
    cpu.write_text("flags\t\t: fpu vmx sse2\n")
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    monkeypatch.setattr(accelerator, "CPUINFO_PATH", str(cpu))
    monkeypatch.setattr(accelerator, "KVM_PATH", str(kvm))
    result, failed = run_module(libvirt_cluster.main, args(state="present"))
    assert not failed, result
    assert result["accelerator"] == "kvm"
    assert ET.fromstring(hv.lookupByName("k8s-cp").XMLDesc(0)).get("type") == "kvm"


def test_foreign_network_name_fails_naming_it(run_module, hv):
    a = args()
    a["networks"][0]["name"] = "lab-net"
    for dom in a["domains"]:  # the NICs follow the rename, so only the ownership is wrong
        dom["nics"][0]["network"] = "lab-net"
    result, failed = run_module(libvirt_cluster.main, a)
    assert failed and "network 'lab-net' is not owned" in result["msg"]


def test_wait_ssh_uses_static_dhcp_address(run_module, hv, monkeypatch):
    probed = []

    def fake_port_open(host, port, timeout):
        probed.append((host, port))
        return True

    monkeypatch.setattr(libvirt_ssh, "port_open", fake_port_open)
    a = args(wait_ssh=True, ssh_timeout=5)
    a["domains"][1]["ssh_host"] = "10.66.0.20"
    result, failed = run_module(libvirt_cluster.main, a)
    assert not failed, result
    assert sorted(probed) == [("10.66.0.10", 22), ("10.66.0.20", 22)]
    assert result["ssh"] == {"k8s-cp": True, "k8s-worker": True}


def test_bad_uri_fails_cleanly(run_module, hv):
    result, failed = run_module(libvirt_cluster.main, args(uri="test:///nonexistent/file.xml"))
    assert failed and "cannot connect to libvirt at 'test:///nonexistent/file.xml'" in result["msg"]


# --------------------------------------------------------------------------- config: a whole cluster.yaml

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_mac  # noqa: E402

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxJ2yVQ8G1cEcdWk8o2p3VbO0lmK6uJ0b5l3Y0q8x1P test@host"


@pytest.fixture
def cluster_yaml(tmp_path):
    """config/minimal.yml with its pool in tmp (the test driver keeps pools in memory, the seeds are real)."""
    import yaml
    from helpers import load_yaml
    raw = load_yaml("config", "minimal.yml")
    raw["hypervisor"]["storage_pool"] = {"path": str(tmp_path / "pool")}
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def config_args(path, tmp_path, **over):
    a = {"uri": URI, "state": "running", "config": path, "images": {"hpc-base": "/golden/hpc-base.qcow2"},
         "seed_dir": str(tmp_path / "seed"), "ssh_public_key": KEY}
    a.update(over)
    return a


def _drop_pool(conn, name):
    for pool in conn.listAllStoragePools():
        if pool.name() == name:
            for vol in pool.listAllVolumes():
                vol.delete(0)
            if pool.isActive():
                pool.destroy()
            pool.undefine()


@pytest.mark.skipif(not any(__import__("shutil").which(t) for t in ("genisoimage", "xorriso")),
                    reason="seed ISOs need genisoimage or xorriso")
def test_config_converges_whole_cluster_then_idempotent_then_absent(run_module, hv, cluster_yaml, tmp_path):
    try:
        result, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path))
        assert not failed, result
        names = ["lab-hpc-controller", "lab-hpc-compute-01", "lab-hpc-compute-02"]
        assert sorted(result["domains"]) == sorted(names)
        assert all(hv.lookupByName(n).isActive() for n in names)
        assert result["accelerator"] == "tcg"  # minimal.yml: accelerator auto, fixture host has no KVM
        seeds = sorted(result["seeds"])
        assert seeds == sorted(str(tmp_path / "seed" / ("%s-seed.iso" % n)) for n in names)
        assert set(result["seeds"].values()) == {"written"}
        assert [c["kind"] for c in result["changes"]][:3] == ["seed"] * 3
        root = ET.fromstring(hv.lookupByName("lab-hpc-compute-01").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert root.find("devices/interface/source").get("network") == "hs-lab-hpc_network"
        assert root.find("devices/interface/mac").get("address") == stable_mac("lab", "hpc-compute-01")
        assert root.find("devices/disk[@device='cdrom']/source").get("file") == \
            str(tmp_path / "seed" / "lab-hpc-compute-01-seed.iso")
        assert root.find("devices/disk[@device='disk']/source").get("file") == \
            str(tmp_path / "pool" / "lab-hpc-compute-01.qcow2")
        net = ET.fromstring(hv.networkLookupByName("hs-lab-hpc_network").XMLDesc(0))
        assert sorted(h.get("ip") for h in net.findall("ip/dhcp/host")) == \
            ["192.168.100.10", "192.168.100.11", "192.168.100.12"]
        pool = hv.storagePoolLookupByName("hs-lab-pool")
        assert sorted(v.name() for v in pool.listAllVolumes()) == sorted(n + ".qcow2" for n in names)

        again, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path))
        assert not failed, again
        assert again["changed"] is False and set(again["seeds"].values()) == {"unchanged"}

        gone, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path, state="absent",
                                                                    ssh_public_key=None))
        assert not failed, gone
        assert set(gone["seeds"].values()) == {"removed"}
        assert not list((tmp_path / "seed").iterdir())
        assert [d.name() for d in hv.listAllDomains()] == ["test"]
        assert "hs-lab-pool" not in [p.name() for p in hv.listAllStoragePools()]
    finally:
        _drop_pool(hv, "hs-lab-pool")


def test_config_without_key_writes_no_seed_and_check_mode_changes_nothing(run_module, hv, cluster_yaml, tmp_path):
    try:
        result, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path, ssh_public_key=None,
                                                                      state="present"), check_mode=True)
        assert not failed, result
        assert result["changed"] is True and result["seeds"] == {}
        assert not (tmp_path / "seed").exists()
        assert [d.name() for d in hv.listAllDomains()] == ["test"]
    finally:
        _drop_pool(hv, "hs-lab-pool")


def test_config_and_explicit_specs_are_mutually_exclusive(run_module, hv, cluster_yaml, tmp_path):
    result, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path,
                                                                  domains=[{"name": "x"}]))
    assert failed and "mutually exclusive" in result["msg"] and "config" in result["msg"]


def test_config_accelerator_kvm_from_cluster_yaml_fails_without_kvm(run_module, hv, tmp_path):
    import yaml
    from helpers import load_yaml
    raw = load_yaml("config", "minimal.yml")
    raw["hypervisor"]["accelerator"] = "kvm"
    path = tmp_path / "kvm.yml"
    path.write_text(yaml.safe_dump(raw))
    result, failed = run_module(libvirt_cluster.main, {"uri": URI, "config": str(path)})
    assert failed and "accelerator 'kvm' was requested" in result["msg"]


def test_invalid_config_fails_with_issues(run_module, hv, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: '1.0'\nmetadata: {name: lab}\nglobal: {networks: {}}\n")
    result, failed = run_module(libvirt_cluster.main, {"uri": URI, "config": str(bad)})
    assert failed and result["issues"]


def test_ssh_netns_probes_from_the_namespace(run_module, hv, monkeypatch):
    seen = []

    def fake_wait(netns):
        def wait(host, port, timeout):
            seen.append((netns, host, port))
            return True
        return wait

    monkeypatch.setattr(libvirt_cluster.libvirt_specs, "netns_ssh_wait", fake_wait)
    monkeypatch.setattr(libvirt_ssh, "port_open", lambda *a: pytest.fail("probed from the host namespace"))
    a = args(wait_ssh=True, ssh_timeout=5, ssh_netns="hs-lab")
    a["domains"][1]["ssh_host"] = "10.66.0.20"
    result, failed = run_module(libvirt_cluster.main, a)
    assert not failed, result
    assert sorted(seen) == [("hs-lab", "10.66.0.10", 22), ("hs-lab", "10.66.0.20", 22)]


# ---------------------------------------------------------------- bad arguments (issue #10)
def assert_clean_failure(result, failed, *needles):
    assert failed, result
    assert "internal error" not in result["msg"] and "exception" not in result, result
    for needle in needles:
        assert needle in result["msg"], (needle, result["msg"])


def net(**over):
    n = {"name": "hs-mod-net", "subnet": "10.66.0.0/24",
         "hosts": [{"mac": "52:54:00:66:00:01", "name": "k8s-cp", "ip": "10.66.0.10"}]}
    n.update(over)
    return n


def nothing_defined(hv):
    assert [d.name() for d in hv.listAllDomains()] == ["test"]
    assert not [n.name() for n in hv.listAllNetworks() if n.name().startswith("hs-")]


@pytest.mark.parametrize("network,needles", [
    (net(hosts=[{"mac": "52:54:00:66:00:01", "name": "k8s-cp", "ip": "x"}]),
     ["network 'hs-mod-net' host 'k8s-cp': ip 'x' is not an IPv4 address"]),
    (net(gateway="x"), ["network 'hs-mod-net': gateway 'x' is not an IPv4 address"]),
    (net(dhcp_range=["10.66.0.100", "x"]), ["network 'hs-mod-net': dhcp_range address 'x' is not an IPv4 address"]),
    (net(dns_hosts=[{"ip": "10.66.0.300", "hostnames": ["a"]}]),
     ["network 'hs-mod-net' dns host 0: ip '10.66.0.300' is not an IPv4 address"]),
    (net(hosts=[{"mac": "52-54-00", "name": "k8s-cp", "ip": "10.66.0.10"}]),
     ["network 'hs-mod-net' host 'k8s-cp': mac '52-54-00' is not a MAC address"]),
    (net(uuid="not-a-uuid"), ["network 'hs-mod-net': uuid 'not-a-uuid' is not a UUID"]),
])
def test_bad_network_addresses_fail_before_anything_changes(run_module, hv, network, needles):
    result, failed = run_module(libvirt_cluster.main, args(networks=[network]))
    assert_clean_failure(result, failed, *needles)
    nothing_defined(hv)


@pytest.mark.parametrize("change,needles", [
    ({"uuid": "zz"}, ["domain 'k8s-cp': uuid 'zz' is not a UUID"]),
    ({"nics": [{"network": "hs-mod-net", "mac": "zz"}]}, ["domain 'k8s-cp' nic 0: mac 'zz' is not a MAC address"]),
    ({"gpus": [{"kind": "pci", "address": "x"}]}, ["domain 'k8s-cp' gpu 0 (pci): PCI address 'x' is not of the form"]),
    ({"gpus": [{"kind": "mdev", "uuid": "x"}]}, ["domain 'k8s-cp' gpu 0 (mdev): uuid 'x' is not a UUID"]),
])
def test_bad_domain_fields_fail_naming_the_domain(run_module, hv, change, needles):
    a = args()
    a["domains"][0].update(change)
    result, failed = run_module(libvirt_cluster.main, a)
    assert_clean_failure(result, failed, *needles)
    nothing_defined(hv)


def test_nic_on_a_network_the_task_does_not_define(run_module, hv):
    a = args()
    a["domains"][1]["nics"] = [{"network": "hs-mod-net"}, {"network": "hs-other-net"}]
    for check_mode in (True, False):
        result, failed = run_module(libvirt_cluster.main, a, check_mode=check_mode)
        assert_clean_failure(result, failed, "domain 'k8s-worker' nic 1: network 'hs-other-net'",
                             "neither defined by this task (networks: hs-mod-net) nor present in libvirt")
        nothing_defined(hv)
    # A network libvirt already has (the test driver's 'default') is fine to attach to.
    a["domains"][1]["nics"] = [{"network": "hs-mod-net"}, {"network": "default"}]
    result, failed = run_module(libvirt_cluster.main, a)
    assert not failed, result


def test_non_utf8_config_fails_naming_the_file(run_module, hv, tmp_path):
    bad = tmp_path / "latin1.yml"
    bad.write_bytes(b"version: '1.0'\nmetadata: {name: caf\xe9}\n")
    result, failed = run_module(libvirt_cluster.main, {"uri": URI, "config": str(bad)})
    # config_model raises ConfigError naming the file and the line; module_specs turns it into fail_json.
    assert_clean_failure(result, failed, str(bad), "line 2", "UTF-8")
    assert result["issues"] and result["issues"][0]["line"] == 2


def test_seed_dir_below_a_regular_file(run_module, hv, cluster_yaml, tmp_path):
    (tmp_path / "afile").write_text("")
    seed_dir = tmp_path / "afile" / "seed"
    try:
        for check_mode in (True, False):  # check mode predicts it
            result, failed = run_module(libvirt_cluster.main, config_args(cluster_yaml, tmp_path, state="present",
                                                                          seed_dir=str(seed_dir)),
                                        check_mode=check_mode)
            assert_clean_failure(result, failed, "seed_dir: %s/" % seed_dir, "cannot be written",
                                 "%s is a regular file, not a directory" % (tmp_path / "afile"))
            nothing_defined(hv)
    finally:
        _drop_pool(hv, "hs-lab-pool")
