"""XML generation and normalisation for domains, networks, pools and volumes (no libvirt needed)."""
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import definitions as libvirt_xml
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_mac, stable_uuid

MDEV_UUID = "c2e088a0-5f2f-4c3f-9b5a-1f7f5b7c1a11"


def base_spec(**over):
    spec = dict(name="hpc-compute-01", cluster="lab", role="slurm-compute", vcpus=2, memory_mib=2048,
                disk={"path": "/pool/hpc-compute-01.qcow2"}, nics=[{"network": "hs-net"}])
    spec.update(over)
    return spec


def parse(xml_text):
    return ET.fromstring(xml_text)


def hostdevs(root):
    return root.findall("devices/hostdev")


# ---------------------------------------------------------------- accelerator

def test_tcg_domain_is_qemu_with_maximum_cpu_and_capped_tb_cache():
    root = parse(libvirt_xml.domain_xml(base_spec(accelerator="tcg")))
    assert root.get("type") == "qemu"
    assert root.find("cpu").get("mode") == "maximum"
    tb = root.find("features/tcg/tb-cache")
    assert (tb.get("unit"), tb.text) == ("MiB", "128")


def test_tcg_tb_cache_size_follows_spec():
    root = parse(libvirt_xml.domain_xml(base_spec(accelerator="tcg", tcg_tb_cache_mib=256)))
    assert root.find("features/tcg/tb-cache").text == "256"


def test_kvm_domain_has_no_tcg_features():
    root = parse(libvirt_xml.domain_xml(base_spec(accelerator="kvm")))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("features/tcg") is None


def test_unknown_accelerator_is_rejected():
    with pytest.raises(libvirt_xml.XmlSpecError, match="accelerator"):
        libvirt_xml.domain_xml(base_spec(accelerator="xen"))


# ---------------------------------------------------------------- basic devices

def test_memory_vcpus_and_identity_defaults_are_stable():
    root = parse(libvirt_xml.domain_xml(base_spec()))
    assert root.find("memory").text == str(2048 * 1024)
    assert root.find("currentMemory").text == str(2048 * 1024)
    assert root.find("vcpu").text == "2"
    assert root.findtext("uuid") == stable_uuid("lab", "hpc-compute-01")
    assert root.find("devices/interface/mac").get("address") == stable_mac("lab", "hpc-compute-01", 0)
    # Same spec, same XML: no spurious drift between runs.
    assert libvirt_xml.domain_xml(base_spec()) == libvirt_xml.domain_xml(base_spec())


def test_explicit_uuid_and_mac_are_used():
    spec = base_spec(uuid="11111111-2222-3333-4444-555555555555",
                     nics=[{"network": "hs-net", "mac": "52:54:00:AA:BB:CC"}, {"network": "hs-storage"}])
    root = parse(libvirt_xml.domain_xml(spec))
    assert root.findtext("uuid") == "11111111-2222-3333-4444-555555555555"
    ifaces = root.findall("devices/interface")
    assert [i.find("mac").get("address") for i in ifaces] == [
        "52:54:00:aa:bb:cc", stable_mac("lab", "hpc-compute-01", 1)]
    assert [i.find("source").get("network") for i in ifaces] == ["hs-net", "hs-storage"]
    assert ifaces[0].find("model").get("type") == "virtio"


def test_overlay_disk_seed_iso_and_serial_log():
    root = parse(libvirt_xml.domain_xml(base_spec(seed_iso="/pool/seed.iso", console_log="/var/log/hs/n1.log")))
    disk, cdrom = root.findall("devices/disk")
    assert disk.get("device") == "disk"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").get("file") == "/pool/hpc-compute-01.qcow2"
    assert cdrom.get("device") == "cdrom"
    assert cdrom.find("source").get("file") == "/pool/seed.iso"
    assert cdrom.find("readonly") is not None
    serial = root.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": "/var/log/hs/n1.log", "append": "on"}


def test_console_log_default_names_the_domain():
    root = parse(libvirt_xml.domain_xml(base_spec()))
    assert root.find("devices/serial/log").get("file") == "/var/log/libvirt/qemu/hpc-compute-01-console.log"


def test_no_seed_iso_no_cdrom():
    root = parse(libvirt_xml.domain_xml(base_spec()))
    assert [d.get("device") for d in root.findall("devices/disk")] == ["disk"]


# ---------------------------------------------------------------- GPUs

def test_whole_gpu_is_managed_pci_hostdev():
    root = parse(libvirt_xml.domain_xml(base_spec(gpus=[{"kind": "pci", "address": "0000:65:00.0"}])))
    (h,) = hostdevs(root)
    assert h.attrib == {"mode": "subsystem", "type": "pci", "managed": "yes"}
    assert h.find("source/address").attrib == {"domain": "0x0000", "bus": "0x65", "slot": "0x00", "function": "0x0"}


def test_vendor_vf_is_unmanaged_pci_hostdev():
    root = parse(libvirt_xml.domain_xml(base_spec(gpus=[{"kind": "vf", "address": "b3:01.2"}])))
    (h,) = hostdevs(root)
    assert (h.get("type"), h.get("managed")) == ("pci", "no")
    assert h.find("source/address").attrib == {"domain": "0x0000", "bus": "0xb3", "slot": "0x01", "function": "0x2"}


def test_mdev_vgpu_hostdev():
    root = parse(libvirt_xml.domain_xml(base_spec(gpus=[{"kind": "mdev", "uuid": MDEV_UUID, "mdev_type": "nvidia-1040"}])))
    (h,) = hostdevs(root)
    assert h.attrib == {"mode": "subsystem", "type": "mdev", "model": "vfio-pci", "display": "off"}
    assert h.find("source/address").get("uuid") == MDEV_UUID


def test_simulated_gpu_is_metadata_only():
    spec = base_spec(gpus=[{"kind": "simulated", "model": "H100", "profile": "1g.10gb"}])
    xml = libvirt_xml.domain_xml(spec)
    assert hostdevs(parse(xml)) == []
    meta = libvirt_xml.owner_metadata(xml)
    assert meta["gpus"] == [{"kind": "simulated", "model": "H100", "profile": "1g.10gb"}]


def test_metadata_records_cluster_node_role_and_all_gpus():
    gpus = [{"kind": "pci", "address": "0000:65:00.0", "model": "L40S"},
            {"kind": "mdev", "uuid": MDEV_UUID},
            {"kind": "simulated", "model": "H100"}]
    xml = libvirt_xml.domain_xml(base_spec(gpus=gpus, node="compute-01"))
    el = parse(xml).find("metadata/{%s}instance" % libvirt_xml.NS)
    assert el is not None
    meta = libvirt_xml.owner_metadata(xml)
    assert (meta["cluster"], meta["node"], meta["role"]) == ("lab", "compute-01", "slurm-compute")
    assert [g["kind"] for g in meta["gpus"]] == ["pci", "mdev", "simulated"]
    assert len(hostdevs(parse(xml))) == 2


def test_foreign_domain_has_no_owner_metadata():
    assert libvirt_xml.owner_metadata("<domain type='kvm'><name>x</name><metadata><o:x xmlns:o='urn:other'/></metadata></domain>") is None


@pytest.mark.parametrize("gpu, message", [
    ({"kind": "pci", "address": "65-00-0"}, "PCI address"),
    ({"kind": "pci"}, "address"),
    ({"kind": "mdev"}, "uuid"),
    ({"kind": "tpu"}, "kind"),
])
def test_bad_gpu_specs_name_the_problem(gpu, message):
    with pytest.raises(libvirt_xml.XmlSpecError, match=message):
        libvirt_xml.domain_xml(base_spec(gpus=[gpu]))


def test_missing_name_is_an_error():
    with pytest.raises(libvirt_xml.XmlSpecError, match="name"):
        libvirt_xml.domain_xml({"vcpus": 1})


# ---------------------------------------------------------------- networks, pools, volumes

def net_spec(**over):
    spec = dict(name="hs-net", subnet="10.77.0.0/24", domain="lab.internal",
                hosts=[{"mac": "52:54:00:00:00:0A", "name": "head", "ip": "10.77.0.10"}],
                dns_hosts=[{"ip": "10.77.0.10", "hostnames": ["head", "slurm"]}])
    spec.update(over)
    return spec


def test_network_defaults_gateway_range_and_nat():
    root = parse(libvirt_xml.network_xml(net_spec()))
    assert root.find("forward").get("mode") == "nat"
    ip = root.find("ip")
    assert ip.attrib == {"address": "10.77.0.1", "prefix": "24"}
    rng = ip.find("dhcp/range")
    assert (rng.get("start"), rng.get("end")) == ("10.77.0.128", "10.77.0.254")
    host = ip.find("dhcp/host")
    assert host.attrib == {"mac": "52:54:00:00:00:0a", "name": "head", "ip": "10.77.0.10"}
    assert [h.text for h in root.findall("dns/host/hostname")] == ["head", "slurm"]
    assert root.find("domain").get("name") == "lab.internal"
    assert root.find("bridge").get("name") == "virbr-hs-net"


def test_network_explicit_values_and_isolated():
    root = parse(libvirt_xml.network_xml(net_spec(gateway="10.77.0.254", bridge="hsbr0", forward="none",
                                         dhcp_range=["10.77.0.100", "10.77.0.150"])))
    assert root.find("forward") is None
    assert root.find("ip").get("address") == "10.77.0.254"
    assert root.find("bridge").get("name") == "hsbr0"
    assert root.find("ip/dhcp/range").attrib == {"start": "10.77.0.100", "end": "10.77.0.150"}


@pytest.mark.parametrize("over, message", [
    ({"subnet": "10.77.0.1/24"}, "subnet"),
    ({"hosts": [{"mac": "52:54:00:00:00:01", "name": "x", "ip": "10.78.0.5"}]}, "outside"),
    ({"bridge": "a-very-long-bridge-name"}, "15 characters"),
    ({"gateway": "192.0.2.1"}, "outside"),
])
def test_network_spec_errors(over, message):
    with pytest.raises(libvirt_xml.XmlSpecError, match=message):
        libvirt_xml.network_xml(net_spec(**over))


def test_pool_and_overlay_volume():
    pool = parse(libvirt_xml.pool_xml({"name": "hs-pool", "path": "/var/lib/hs"}))
    assert (pool.get("type"), pool.findtext("name"), pool.findtext("target/path")) == ("dir", "hs-pool", "/var/lib/hs")
    vol = parse(libvirt_xml.volume_xml({"name": "n1.qcow2", "backing_path": "/golden/debian.qcow2", "capacity_gib": 40}))
    assert vol.find("target/format").get("type") == "qcow2"
    assert vol.findtext("backingStore/path") == "/golden/debian.qcow2"
    assert vol.find("capacity").attrib == {"unit": "GiB"} and vol.findtext("capacity") == "40"
    # Without a capacity the overlay inherits the golden image's size.
    assert parse(libvirt_xml.volume_xml({"name": "n2.qcow2", "backing_path": "/g.qcow2"})).find("capacity") is None


# ---------------------------------------------------------------- normalisation

# What a qemu:///system driver returns for the spec below: ids, aliases, guest addresses, seclabels,
# controllers, a console mirroring the serial port, the versioned machine type, other units.
LIBVIRT_ECHO = """<domain type='qemu' id='7'>
  <name>hpc-compute-01</name>
  <uuid>{uuid}</uuid>
  <metadata>
    <hs:instance xmlns:hs="https://aihow.example/hyperscaler/1" cluster="lab" node="hpc-compute-01" role="slurm-compute">
      <hs:gpu kind="pci" address="0000:65:00.0"/>
    </hs:instance>
  </metadata>
  <memory unit='MiB'>2048</memory>
  <vcpu>2</vcpu>
  <resource><partition>/machine</partition></resource>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <features><apic/><acpi/><tcg><tb-cache unit='KiB'>131072</tb-cache></tcg></features>
  <cpu mode='maximum' check='none' migratable='on'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/pool/hpc-compute-01.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='hs-net'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/hpc-compute-01-console.log' append='on'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <driver name='vfio'/>
      <source><address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </hostdev>
    <watchdog model='itco' action='reset'/>
    <memballoon model='virtio'/>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>"""


def echo(spec):
    full = libvirt_xml.complete_domain_spec(spec)
    return LIBVIRT_ECHO.format(uuid=full["uuid"], mac=full["nics"][0]["mac"])


def gpu_spec(**over):
    return base_spec(accelerator="tcg", gpus=[{"kind": "pci", "address": "0000:65:00.0"}], **over)


def test_libvirt_additions_normalise_away():
    spec = gpu_spec()
    assert libvirt_xml.normalise_xml(echo(spec)) == libvirt_xml.normalise_xml(libvirt_xml.domain_xml(spec))


def test_normalisation_does_not_hide_real_drift():
    spec = gpu_spec()
    got = echo(spec).replace("<vcpu>2</vcpu>", "<vcpu>4</vcpu>")
    diff = libvirt_xml.xml_diff(libvirt_xml.normalise_xml(got), libvirt_xml.normalise_xml(libvirt_xml.domain_xml(spec)), "domain/x")
    assert "-  <vcpu placement=\"static\">4</vcpu>" in diff
    assert "+  <vcpu placement=\"static\">2</vcpu>" in diff


def test_hostdev_source_address_survives_normalisation():
    # Guest addresses are dropped, the host GPU address is ours and must be compared.
    spec = gpu_spec()
    got = echo(spec).replace("bus='0x65'", "bus='0x66'")
    assert libvirt_xml.normalise_xml(got) != libvirt_xml.normalise_xml(libvirt_xml.domain_xml(spec))


def test_normalisation_is_idempotent_and_reparses():
    for xml in (libvirt_xml.domain_xml(gpu_spec()), echo(gpu_spec()), libvirt_xml.network_xml(net_spec()),
                libvirt_xml.pool_xml({"name": "hs-p", "path": "/p"})):
        once = libvirt_xml.normalise_xml(xml)
        assert libvirt_xml.normalise_xml(once) == once
        ET.fromstring(once)


def test_normalised_attributes_sorted_and_whitespace_stripped():
    out = libvirt_xml.normalise_xml("<pool type='dir'>\n  <name> hs-p </name><target path_b='1' path_a='2'><path>/p</path></target></pool>")
    assert "<name>hs-p</name>" in out
    assert '<target path_a="2" path_b="1">' in out


def test_drop_uuid_and_macs():
    xml = libvirt_xml.domain_xml(base_spec())
    out = libvirt_xml.normalise_xml(xml, drop_uuid=True, drop_macs=True)
    assert "<uuid>" not in out and "<mac " not in out
    assert "<uuid>" in libvirt_xml.normalise_xml(xml)


def test_network_echo_normalises_to_wanted():
    wanted = libvirt_xml.network_xml(net_spec(uuid="9b7b3fb4-0b3f-4b1b-8a53-7c1c1f3b7e11"))
    echoed = wanted.replace("<network>", "<network connections='2'>").replace(
        '<forward mode="nat" />', "<forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>").replace(
        '<bridge name="virbr-hs-net" stp="on" delay="0" />', "<bridge name='virbr-hs-net'/><mac address='52:54:00:12:34:56'/>")
    assert echoed != wanted
    assert libvirt_xml.normalise_xml(echoed) == libvirt_xml.normalise_xml(wanted)


def test_pool_echo_normalises_to_wanted():
    wanted = libvirt_xml.pool_xml({"name": "hs-p", "path": "/p"})
    echoed = ("<pool type='dir'><name>hs-p</name><capacity unit='bytes'>1</capacity><allocation unit='bytes'>0</allocation>"
              "<available unit='bytes'>1</available><source></source><target><path>/p</path>"
              "<permissions><mode>0711</mode></permissions></target></pool>")
    assert libvirt_xml.normalise_xml(echoed) == libvirt_xml.normalise_xml(wanted)


def test_xml_diff_empty_when_equal():
    x = libvirt_xml.normalise_xml(libvirt_xml.domain_xml(base_spec()))
    assert libvirt_xml.xml_diff(x, x, "domain/x") == ""


def test_malformed_xml_is_reported():
    with pytest.raises(libvirt_xml.XmlSpecError, match="well-formed"):
        libvirt_xml.normalise_xml("<domain>")


@pytest.mark.parametrize("over, message", [
    ({"hosts": [{"mac": "52:54:00:00:00:01", "name": "x", "ip": "x"}]},
     "network 'hs-net' host 'x': ip 'x' is not an IPv4 address"),
    ({"gateway": "10.77.0"}, "network 'hs-net': gateway '10.77.0' is not an IPv4 address"),
    ({"dhcp_range": ["10.77.0.100", "ten"]}, "network 'hs-net': dhcp_range address 'ten' is not an IPv4 address"),
    ({"dns_hosts": [{"ip": "::1", "hostnames": ["a"]}]}, "network 'hs-net' dns host 0: ip '::1' is not an IPv4"),
    ({"dns_hosts": [{"ip": "10.77.0.9", "hostnames": []}]}, "dns host 0 \\(10.77.0.9\\): hostnames must list"),
    ({"hosts": [{"mac": "52:54:00:00:01", "name": "x", "ip": "10.77.0.5"}]},
     "network 'hs-net' host 'x': mac '52:54:00:00:01' is not a MAC address"),
    ({"uuid": "1234"}, "network 'hs-net': uuid '1234' is not a UUID"),
])
def test_network_addresses_are_checked_with_the_field_named(over, message):
    with pytest.raises(libvirt_xml.XmlSpecError, match=message):
        libvirt_xml.network_xml(net_spec(**over))


@pytest.mark.parametrize("over, message", [
    ({"uuid": "nope"}, "domain 'hpc-compute-01': uuid 'nope' is not a UUID"),
    ({"nics": [{"network": "hs-net", "mac": "52:54:00:zz:00:01"}]},
     "domain 'hpc-compute-01' nic 0: mac '52:54:00:zz:00:01' is not a MAC address"),
    ({"gpus": [{"kind": "mdev", "uuid": "1"}]}, "domain 'hpc-compute-01' gpu 0 \\(mdev\\): uuid '1' is not a UUID"),
    ({"gpus": [{"kind": "vf", "address": {"bus": "zz"}}]}, "gpu 0 \\(vf\\): PCI address .* must have hex"),
])
def test_domain_ids_are_checked_with_the_field_named(over, message):
    with pytest.raises(libvirt_xml.XmlSpecError, match=message):
        libvirt_xml.domain_xml(base_spec(**over))
