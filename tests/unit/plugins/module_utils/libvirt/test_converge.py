"""Convergence on libvirt's test driver (in-process, no daemon, no traffic).

test:///default is one shared state per process (while a connection is open), so these tests
open a custom test-driver file instead: every open of test:///<file> starts from that file.
"""
import re
import sys
import xml.etree.ElementTree as ET

import libvirt
import pytest
from helpers import wait_until

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import converge as libvirt_converge
from ansible_collections.aihow.hyperscaler.plugins.module_utils.host import accelerator
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import ssh as libvirt_ssh
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import definitions as libvirt_xml
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common import progress
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

# A foreign domain and a foreign network, as a real host would have (not created by us).
NODE_XML = """<node>
  <domain type='test'><name>foreign</name><memory>1048576</memory><os><type>hvm</type></os></domain>
  <network><name>default</name><bridge name='virbr0'/><ip address='192.0.2.1' netmask='255.255.255.0'/></network>
</node>"""

POOL = {"name": "hs-pool", "path": "/srv/hs/pool"}
GOLDEN = "/srv/hs/golden/debian-12.qcow2"


@pytest.fixture
def conn(tmp_path):
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    c = libvirt_converge.connect("test://%s" % path)
    yield c
    c.close()


def networks():
    return [{"name": "hs-net", "subnet": "10.77.0.0/24", "domain": "lab.internal",
             "hosts": [{"mac": "52:54:00:10:00:01", "name": "head", "ip": "10.77.0.10"}]}]


def domains():
    return [
        {"name": "head", "cluster": "lab", "role": "slurm-controller", "vcpus": 2, "memory_mib": 2048,
         "disk": {"path": "/srv/hs/pool/head.qcow2", "backing_path": GOLDEN, "capacity_gib": 20},
         "nics": [{"network": "hs-net", "mac": "52:54:00:10:00:01"}]},
        {"name": "compute-01", "cluster": "lab", "role": "slurm-compute", "vcpus": 1, "memory_mib": 1024,
         "disk": {"path": "/srv/hs/pool/compute-01.qcow2", "backing_path": GOLDEN, "capacity_gib": 10},
         "nics": [{"network": "hs-net"}],
         "gpus": [{"kind": "simulated", "model": "H100"}]},
    ]


def run(conn, state="present", **kw):
    kw.setdefault("networks", networks())
    kw.setdefault("pool", POOL)
    kw.setdefault("domains", domains())
    return libvirt_converge.converge(conn, state=state, **kw)


def actions(result):
    return [(c["kind"], c["name"], c["action"]) for c in result["changes"]]


def inactive_xml(dom):
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


# ---------------------------------------------------------------- define / idempotence

def test_first_run_defines_everything_then_second_run_is_unchanged(conn):
    first = run(conn)
    assert first["changed"]
    assert actions(first) == [
        ("pool", "hs-pool", "define"),
        ("volume", "head.qcow2", "create"),
        ("volume", "compute-01.qcow2", "create"),
        ("network", "hs-net", "define"),
        ("domain", "head", "define"),
        ("domain", "compute-01", "define"),
    ]
    dom = conn.lookupByName("compute-01")
    assert libvirt_xml.owner_metadata(inactive_xml(dom))["role"] == "slurm-compute"
    assert not dom.isActive()  # present leaves the run state alone
    net = conn.networkLookupByName("hs-net")
    assert net.isActive() and net.autostart()
    vol = conn.storagePoolLookupByName("hs-pool").storageVolLookupByName("head.qcow2")
    assert ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") == GOLDEN

    second = run(conn)
    assert second["changed"] is False
    assert second["changes"] == []


def test_running_starts_all_and_stopped_stops_all(conn):
    res = run(conn, "running")
    assert ("domain", "head", "start") in actions(res)
    assert all(conn.lookupByName(d["name"]).isActive() for d in domains())
    assert run(conn, "running")["changed"] is False
    res = run(conn, "stopped")
    assert sorted(a for a in actions(res) if a[2] == "stop") == [("domain", "compute-01", "stop"), ("domain", "head", "stop")]
    assert not any(conn.lookupByName(d["name"]).isActive() for d in domains())
    assert run(conn, "stopped")["changed"] is False


def test_check_mode_in_three_steps(conn):
    check = run(conn, "running", check_mode=True)
    assert check["changed"] and ("domain", "head", "define") in actions(check)
    assert ("domain", "head", "start") in actions(check)
    # check mode changed nothing
    assert [d.name() for d in conn.listAllDomains()] == ["foreign"]
    with pytest.raises(libvirt.libvirtError):
        conn.networkLookupByName("hs-net")
    assert run(conn, "running")["changed"] is True
    assert run(conn, "running", check_mode=True)["changed"] is False


# ---------------------------------------------------------------- drift

def test_domain_drift_is_reported_and_restored_keeping_uuid_and_mac(conn):
    run(conn)
    dom = conn.lookupByName("compute-01")
    uuid_before = dom.UUIDString()
    _uuid, macs_before = libvirt_xml.domain_identity(inactive_xml(dom))
    dom.setMemoryFlags(4096 * 1024, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    dom.setVcpusFlags(3, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
    dom.setVcpusFlags(3, libvirt.VIR_DOMAIN_AFFECT_CONFIG)

    check = run(conn, check_mode=True)
    assert actions(check) == [("domain", "compute-01", "redefine")]
    assert conn.lookupByName("compute-01").maxMemory() == 4096 * 1024  # untouched in check mode

    res = run(conn)
    (change,) = res["changes"]
    assert change["action"] == "redefine"
    assert '-  <memory unit="KiB">4194304</memory>' in change["diff"]
    assert '+  <memory unit="KiB">1048576</memory>' in change["diff"]
    assert '-  <vcpu placement="static">3</vcpu>' in change["diff"]
    dom = conn.lookupByName("compute-01")
    assert dom.maxMemory() == 1024 * 1024
    assert ET.fromstring(inactive_xml(dom)).findtext("vcpu") == "1"
    assert dom.UUIDString() == uuid_before
    assert libvirt_xml.domain_identity(inactive_xml(dom))[1] == macs_before
    assert run(conn)["changed"] is False


def test_existing_uuid_and_macs_are_kept_when_spec_leaves_them_open(conn):
    # Defined earlier with other ids (say by an older version): the spec gives none, so keep them.
    spec = domains()[1]
    old = dict(spec, uuid="0e0e0e0e-1111-2222-3333-444444444444",
               nics=[{"network": "hs-net", "mac": "52:54:00:de:ad:01"}])
    conn.defineXML(libvirt_xml.domain_xml(dict(old, accelerator="tcg")))
    res = run(conn, networks=[], domains=[dict(spec, memory_mib=1536)])
    assert actions(res)[-1] == ("domain", "compute-01", "redefine")
    dom = conn.lookupByName("compute-01")
    assert dom.UUIDString() == "0e0e0e0e-1111-2222-3333-444444444444"
    assert libvirt_xml.domain_identity(inactive_xml(dom))[1] == ["52:54:00:de:ad:01"]
    assert res["domains"]["compute-01"]["macs"] == ["52:54:00:de:ad:01"]


def test_explicit_uuid_that_differs_is_an_error(conn):
    run(conn)
    spec = dict(domains()[0], uuid="0e0e0e0e-1111-2222-3333-444444444444")
    with pytest.raises(HyperscalerError, match="domain 'head' has UUID"):
        run(conn, domains=[spec])


def test_running_domain_redefined_needs_restart(conn):
    run(conn, "running")
    res = run(conn, domains=[dict(domains()[0], vcpus=4), domains()[1]])
    assert actions(res) == [("domain", "head", "redefine")]
    assert res["restart_required"] == ["head"]
    assert "next cold boot" in res["notes"][0]


# ---------------------------------------------------------------- networks

def test_static_dhcp_entries_and_dns_are_defined(conn):
    nets = networks()
    nets[0]["dns_hosts"] = [{"ip": "10.77.0.10", "hostnames": ["slurm"]}]
    run(conn, networks=nets)
    root = ET.fromstring(conn.networkLookupByName("hs-net").XMLDesc(0))
    assert root.find("ip/dhcp/host").attrib == {"mac": "52:54:00:10:00:01", "name": "head", "ip": "10.77.0.10"}
    assert root.findtext("dns/host/hostname") == "slurm"
    assert root.find("domain").get("name") == "lab.internal"


def test_network_drift_redefines_and_restarts_active_network(conn):
    run(conn)
    net = conn.networkLookupByName("hs-net")
    uuid = net.UUIDString()
    nets = networks()
    nets[0]["hosts"].append({"mac": "52:54:00:10:00:02", "name": "compute-01", "ip": "10.77.0.11"})
    res = run(conn, networks=nets)
    (change,) = res["changes"]
    assert (change["kind"], change["action"]) == ("network", "redefine")
    assert "10.77.0.11" in change["diff"]
    assert "destroyed, defined and started again" in change["note"]
    net = conn.networkLookupByName("hs-net")
    assert net.isActive() and net.UUIDString() == uuid
    hosts = ET.fromstring(net.XMLDesc(0)).findall("ip/dhcp/host")
    assert [h.get("name") for h in hosts] == ["head", "compute-01"]
    assert run(conn, networks=nets)["changed"] is False


def test_network_changed_outside_is_restored(conn):
    run(conn)
    net = conn.networkLookupByName("hs-net")
    net.destroy()
    conn.networkDefineXML(net.XMLDesc(0).replace("10.77.0.254", "10.77.0.200"))
    res = run(conn)
    assert [(c["action"], c.get("note")) for c in res["changes"]] == [("redefine", None)]
    net = conn.networkLookupByName("hs-net")
    assert net.isActive()
    assert ET.fromstring(net.XMLDesc(0)).find("ip/dhcp/range").get("end") == "10.77.0.254"


def test_pool_drift_is_redefined(conn):
    run(conn, domains=[])
    res = run(conn, domains=[], pool={"name": "hs-pool", "path": "/srv/hs/pool2"})
    assert actions(res) == [("pool", "hs-pool", "redefine")]
    pool = conn.storagePoolLookupByName("hs-pool")
    assert pool.isActive() and ET.fromstring(pool.XMLDesc(0)).findtext("target/path") == "/srv/hs/pool2"


# ---------------------------------------------------------------- ownership

def test_absent_removes_only_owned_objects(conn):
    run(conn, "running")
    foreign_before = conn.lookupByName("foreign").XMLDesc(0)
    doms = domains() + [{"name": "foreign"}]
    nets = networks() + [{"name": "default", "subnet": "192.0.2.0/24"}]
    check = libvirt_converge.converge(conn, "absent", networks=nets, pool=POOL, domains=doms, check_mode=True)
    assert check["changed"] and len(conn.listAllDomains()) == 3
    res = libvirt_converge.converge(conn, "absent", networks=nets, pool=POOL, domains=doms)
    assert actions(res) == [
        ("domain", "head", "undefine"), ("domain", "compute-01", "undefine"),
        ("volume", "head.qcow2", "delete"), ("volume", "compute-01.qcow2", "delete"),
        ("pool", "hs-pool", "undefine"), ("network", "hs-net", "undefine"),
    ]
    assert {(s["kind"], s["name"]) for s in res["skipped"]} == {("domain", "foreign"), ("network", "default")}
    assert [d.name() for d in conn.listAllDomains()] == ["foreign"]
    assert conn.lookupByName("foreign").XMLDesc(0) == foreign_before
    assert [n.name() for n in conn.listAllNetworks()] == ["default"]
    assert conn.listAllStoragePools() == []
    assert libvirt_converge.converge(conn, "absent", networks=nets, pool=POOL, domains=doms)["changed"] is False


def test_present_refuses_to_touch_a_foreign_domain(conn):
    with pytest.raises(HyperscalerError, match="domain 'foreign' exists but has no aihow.hyperscaler metadata"):
        libvirt_converge.converge(conn, domains=[{"name": "foreign"}])


def test_network_without_owner_prefix_is_refused(conn):
    with pytest.raises(HyperscalerError, match="network 'default' is not owned"):
        libvirt_converge.converge(conn, networks=[{"name": "default", "subnet": "192.0.2.0/24"}])


def test_owner_prefix_is_configurable(conn):
    res = libvirt_converge.converge(conn, networks=[{"name": "lab-net", "subnet": "10.88.0.0/24"}], owner_prefix="lab-")
    assert actions(res) == [("network", "lab-net", "define")]


def test_overlay_outside_pool_is_an_error(conn):
    spec = dict(domains()[0], disk={"path": "/elsewhere/head.qcow2", "backing_path": GOLDEN})
    with pytest.raises(HyperscalerError, match="not inside pool 'hs-pool'"):
        libvirt_converge.converge(conn, pool=POOL, domains=[spec])


def test_overlay_size_defaults_to_golden_image_in_a_pool(conn):
    run(conn, domains=[])
    pool = conn.storagePoolLookupByName("hs-pool")
    golden = pool.createXML(libvirt_xml.volume_xml({"name": "golden.qcow2", "capacity_gib": 7}), 0)
    spec = dict(domains()[1], disk={"path": "/srv/hs/pool/compute-01.qcow2", "backing_path": golden.path()})
    res = run(conn, domains=[spec])
    assert ("volume", "compute-01.qcow2", "create") in actions(res)
    overlay = pool.storageVolLookupByName("compute-01.qcow2")
    assert overlay.info()[1] == 7 * 1024 ** 3
    assert ET.fromstring(overlay.XMLDesc(0)).findtext("backingStore/path") == golden.path()


def test_overlay_size_unknown_is_an_error(conn):
    spec = dict(domains()[1], disk={"path": "/srv/hs/pool/compute-01.qcow2", "backing_path": GOLDEN})
    with pytest.raises(HyperscalerError, match="domain 'compute-01': set disk.capacity_gib"):
        run(conn, domains=[spec])


def test_duplicate_names_are_an_error(conn):
    with pytest.raises(HyperscalerError, match="repeated: head"):
        libvirt_converge.converge(conn, domains=[domains()[0], domains()[0]])


# ---------------------------------------------------------------- errors

def test_libvirt_errors_are_mapped_naming_the_object(conn):
    with pytest.raises(HyperscalerError) as info:
        with libvirt_converge.guard("domain", "ghost", "start"):
            conn.lookupByName("ghost")
    assert "cannot start domain 'ghost': domain 'ghost' does not exist" in info.value.msg
    assert info.value.details["libvirt_error"] == "VIR_ERR_NO_DOMAIN"
    with pytest.raises(HyperscalerError) as info:
        with libvirt_converge.guard("network", "hs-ghost", "start"):
            conn.networkLookupByName("hs-ghost")
    assert info.value.details["libvirt_error"] == "VIR_ERR_NO_NETWORK"
    assert "network 'hs-ghost' does not exist" in info.value.msg


def test_rejected_xml_names_the_object(conn):
    with pytest.raises(HyperscalerError, match="domain 'bad'"):
        with libvirt_converge.guard("domain", "bad", "define"):
            conn.defineXML("<domain type='qemu'><name>bad</name></domain>")


def test_connect_failure_names_the_uri(tmp_path):
    with pytest.raises(HyperscalerError, match="cannot connect to libvirt at 'test://%s/missing.xml'" % tmp_path):
        libvirt_converge.connect("test://%s/missing.xml" % tmp_path)


def test_missing_bindings_give_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "libvirt", None)
    with pytest.raises(HyperscalerError, match="requirements-libvirt.txt"):
        libvirt_converge.import_libvirt()


def test_bad_state_is_an_error(conn):
    with pytest.raises(HyperscalerError, match="state must be one of"):
        libvirt_converge.converge(conn, state="paused")


# ---------------------------------------------------------------- accelerator

def cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: fpu sse2 %s lm\n\nprocessor\t: 1\nflags\t\t: fpu %s\n"
                    % (flags, flags))
    return str(path)


def fake_kvm(tmp_path):
    path = tmp_path / "kvm"
    path.write_text("")  # a file that opens read-write, standing in for a usable /dev/kvm
    return str(path)


@pytest.mark.parametrize("flag", ["vmx", "svm"])
def test_kvm_when_device_usable_and_flag_present(tmp_path, flag):
    accel, reason = accelerator.detect_accelerator("auto", cpuinfo(tmp_path, flag), fake_kvm(tmp_path))
    assert accel == "kvm" and flag in reason


def test_tcg_when_flags_missing_even_with_kvm_device(tmp_path):
    accel, reason = accelerator.detect_accelerator("auto", cpuinfo(tmp_path, "sse4_2"), fake_kvm(tmp_path))
    assert accel == "tcg"
    assert "neither vmx nor svm" in reason and reason.startswith("TCG")


def test_tcg_when_device_missing(tmp_path):
    accel, reason = accelerator.detect_accelerator("auto", cpuinfo(tmp_path, "vmx"), str(tmp_path / "no-kvm"))
    assert accel == "tcg" and "no-kvm cannot be opened read-write" in reason


def test_tcg_when_device_not_writable(tmp_path):
    kvm = tmp_path / "ro-kvm"
    kvm.mkdir()  # a directory cannot be opened read-write, like a /dev/kvm without permission
    accel, reason = accelerator.detect_accelerator("auto", cpuinfo(tmp_path, "vmx"), str(kvm))
    assert accel == "tcg" and "cannot be opened read-write" in reason


def test_requested_kvm_without_kvm_is_an_error_with_remediation(tmp_path):
    with pytest.raises(HyperscalerError) as info:
        accelerator.detect_accelerator("kvm", cpuinfo(tmp_path, "sse2"), str(tmp_path / "none"))
    assert "accelerator 'kvm' was requested" in info.value.msg
    assert "Remediation" in info.value.msg and "accelerator to auto or tcg" in info.value.msg
    assert len(info.value.details["problems"]) == 2


def test_requested_kvm_with_kvm(tmp_path):
    assert accelerator.detect_accelerator("kvm", cpuinfo(tmp_path, "svm"), fake_kvm(tmp_path))[0] == "kvm"


def test_requested_tcg_is_honoured_on_a_kvm_host(tmp_path):
    assert accelerator.detect_accelerator("tcg", cpuinfo(tmp_path, "vmx"), fake_kvm(tmp_path))[0] == "tcg"


def test_unreadable_cpuinfo_means_tcg(tmp_path):
    accel, reason = accelerator.detect_accelerator("auto", str(tmp_path / "nope"), fake_kvm(tmp_path))
    assert accel == "tcg" and "cannot be read" in reason


# ---------------------------------------------------------------- SSH wait (fake probe and clock)

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_for_ssh_polls_until_the_port_answers():
    clock, calls = FakeClock(), []

    def probe(host, port, timeout):
        calls.append((host, port))
        return len(calls) == 3

    assert libvirt_ssh.wait_for_ssh("10.77.0.10", 22, timeout=30, probe=probe, sleep=clock.sleep, clock=clock)
    assert calls == [("10.77.0.10", 22)] * 3


def test_wait_for_ssh_gives_up_after_timeout():
    clock, calls = FakeClock(), []

    def probe(host, port, timeout):
        calls.append(timeout)
        return False

    assert libvirt_ssh.wait_for_ssh("h", 22, timeout=10, probe=probe, sleep=clock.sleep, clock=clock, interval=2) is False
    assert clock.now <= 10 and len(calls) == 5


def test_ssh_targets_from_static_dhcp_or_spec():
    doms = domains()
    doms[1]["ssh_host"] = "10.77.0.99"
    doms[1]["ssh_port"] = 2222
    assert libvirt_converge.ssh_targets(doms, networks()) == {"head": ("10.77.0.10", 22), "compute-01": ("10.77.0.99", 2222)}
    with pytest.raises(HyperscalerError, match="domain 'compute-01': no ssh_host"):
        libvirt_converge.ssh_targets(domains(), networks())


def test_converge_waits_for_ssh_of_every_started_domain(conn):
    seen = []

    def waiter(host, port, timeout):
        seen.append((host, port, timeout))
        return host != "10.77.0.11"

    nets = networks()
    nets[0]["hosts"].append({"mac": "52:54:00:10:00:02", "name": "compute-01", "ip": "10.77.0.11"})
    with pytest.raises(HyperscalerError, match=r"SSH did not answer within 42s on: compute-01 \(10.77.0.11:22\)"):
        run(conn, "running", networks=nets, wait_ssh=True, ssh_timeout=42, ssh_wait=waiter)
    assert sorted(seen) == [("10.77.0.10", 22, 42), ("10.77.0.11", 22, 42)]
    # the domains were started before the wait
    assert conn.lookupByName("compute-01").isActive()


# ---------------------------------------------------------------- progress lines (domain starts, SSH wait)

def split_counts(lines):
    """(sorted messages without their "(k/n)", the counters in order): parallel work ends in any order."""
    pairs = [re.match(r"^(.*) \((\d+/\d+)\)$", line).groups() for line in lines]
    return sorted(p[0] for p in pairs), [p[1] for p in pairs]


def test_start_all_reports_each_started_domain(conn):
    lines = []
    run(conn, "running", progress=lines.append)
    assert split_counts(lines) == (["compute-01 started", "head started"], ["1/2", "2/2"])
    lines[:] = []
    run(conn, "running", progress=lines.append)
    assert lines == []  # nothing started, nothing to say


def test_wait_ssh_reports_each_vm_up_and_who_is_still_waited_for(conn):
    """The clock is fake (what the lines say); the waiters move it and wait for the lines before."""
    now, lines = [0.0], []

    def seen(fragment):
        return wait_until(lambda: any(fragment in line for line in lines))

    def waiter(host, port, timeout):
        if host == "h0":
            return True
        if host == "h1":
            assert seen("hpc-controller up")
            now[0] = 20.0
            assert seen("still waiting for: hpc-compute-01, hpc-compute-02")
            now[0] = 30.0
            return True
        assert seen("hpc-compute-01 up")
        now[0] = 40.0
        assert seen("still waiting for: hpc-compute-02")
        now[0] = 41.0
        return False

    c = libvirt_converge.Converger(conn, ssh_wait=waiter, progress=lines.append, clock=lambda: now[0], report_every=15, poll=0.005)
    targets = {"hpc-controller": ("h0", 22), "hpc-compute-01": ("h1", 22), "hpc-compute-02": ("h2", 2222)}
    with pytest.raises(HyperscalerError, match=r"within 42s on: hpc-compute-02 \(h2:2222\)"):
        c.wait_ssh(targets, 42)
    assert lines == [
        "waiting for SSH on hpc-compute-01, hpc-compute-02, hpc-controller (up to 42 s)",
        "hpc-controller up: SSH after 0 s (1/3)",
        "still waiting for: hpc-compute-01, hpc-compute-02 (20 s)",
        "hpc-compute-01 up: SSH after 30 s (2/3)",
        "still waiting for: hpc-compute-02 (40 s)",
        "hpc-compute-02 silent: no SSH after 41 s (3/3)",
    ]


def test_converge_writes_its_progress_to_the_progress_file(conn, tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    path.write_text("")
    monkeypatch.setenv(progress.ENV, str(path))
    nets = networks()
    nets[0]["hosts"].append({"mac": "52:54:00:10:00:02", "name": "compute-01", "ip": "10.77.0.11"})
    run(conn, "running", networks=nets, wait_ssh=True, ssh_timeout=42, ssh_wait=lambda host, port, timeout: True)
    text = [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
    assert split_counts(text[:2]) == (["compute-01 started", "head started"], ["1/2", "2/2"])
    assert text[2] == "waiting for SSH on compute-01, head (up to 42 s)"
    assert split_counts(text[3:]) == (["compute-01 up: SSH after 0 s", "head up: SSH after 0 s"], ["1/2", "2/2"])


def test_check_mode_reports_nothing(conn):
    lines = []
    nets = networks()
    nets[0]["hosts"].append({"mac": "52:54:00:10:00:02", "name": "compute-01", "ip": "10.77.0.11"})
    run(conn, "running", networks=nets, check_mode=True, wait_ssh=True, progress=lines.append,
        ssh_wait=lambda host, port, timeout: True)
    assert lines == []


# ---------------------------------------------------------------- specs checked before any change (issue #10)
def test_bad_network_host_ip_changes_nothing(conn):
    nets = networks()
    nets[0]["hosts"][0]["ip"] = "x"
    with pytest.raises(HyperscalerError) as exc:
        run(conn, networks=nets)
    assert exc.value.msg == ("network 'hs-net' host 'head': ip 'x' is not an IPv4 address (for example "
                             "10.77.0.10)")
    assert exc.value.details["object"] == {"kind": "network", "name": "hs-net"}
    # checked before the pool and the overlays, which converge first
    assert "hs-pool" not in [p.name() for p in conn.listAllStoragePools()]


def test_nic_network_must_be_defined_or_exist(conn):
    doms = domains()
    doms[1]["nics"] = [{"network": "hs-net"}, {"network": "hs-storage"}]
    with pytest.raises(HyperscalerError) as exc:
        run(conn, domains=doms)
    assert exc.value.msg.startswith("domain 'compute-01' nic 1: network 'hs-storage' is neither defined by this "
                                    "task (networks: hs-net) nor present in libvirt")
    assert [d.name() for d in conn.listAllDomains()] == ["foreign"]
    doms[1]["nics"][1]["network"] = "default"  # the host's own network: attaching to it is fine
    res = run(conn, domains=doms)
    assert ("domain", "compute-01", "define") in actions(res)
    # absent never needs the networks; a run without networks attaches to networks managed elsewhere
    run(conn, "absent", domains=doms)
    libvirt_converge.check_specs(conn, [], doms)
