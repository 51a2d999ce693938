# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""libvirt XML for the emulated data centre: domains, networks, pools, volumes.

Pure functions on plain dicts ("specs"), stdlib ElementTree only, so they are
testable without libvirt. The config model produces the specs; the converge
layer (libvirt_converge) sends the XML to libvirt and compares it with what
libvirt reports, after :func:`normalise_xml` removed what libvirt adds itself.

Domain spec keys (defaults in brackets)::

    name, uuid [stable_uuid(cluster, name)], vcpus [1], memory_mib [1024],
    accelerator ('kvm'|'tcg') [tcg], tcg_tb_cache_mib [128], machine [q35],
    disk: {path, backing_path, capacity_gib, format [qcow2]},
    seed_iso [None], nics: [{network, mac [stable_mac(cluster, name, index)], model [virtio]}],
    console_log [/var/log/libvirt/qemu/<name>-console.log],
    cluster [''], node [name], role [''],
    gpus: [{kind: pci|mdev|vf|simulated, address, uuid, mdev_type, model, profile}]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import re
import uuid as uuidlib
import xml.etree.ElementTree as ET

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.pci import pci_address_parts
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_mac, stable_uuid

# Our own namespace for <metadata>: its presence marks a domain as created by this collection.
NS = "https://aihow.example/hyperscaler/1"
NS_PREFIX = "hyperscaler"
# Registered so that serialised XML (and diffs) read hyperscaler:instance rather than ns0:instance.
ET.register_namespace(NS_PREFIX, NS)

GPU_KINDS = ("pci", "mdev", "vf", "simulated")
ACCELERATORS = ("kvm", "tcg")

_UNIT_BYTES = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3,
    "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}


class XmlSpecError(ValueError):
    """A spec that cannot be turned into XML (missing or malformed field, named)."""


# --------------------------------------------------------------------------- helpers

def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = str(text)
    return el


def _tostring(root):
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _require(spec, key, what):
    value = spec.get(key)
    if value in (None, ""):
        raise XmlSpecError("%s: '%s' is required" % (what, key))
    return value


def _ipv4(value, what):
    """An IPv4 address, or XmlSpecError naming the field (ipaddress' own error says only 'octets')."""
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise XmlSpecError("%s '%s' is not an IPv4 address (for example 10.77.0.10)" % (what, value))


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac(value, what):
    mac = str(value).lower()
    if not _MAC_RE.match(mac):
        raise XmlSpecError("%s '%s' is not a MAC address (for example 52:54:00:10:00:01)" % (what, value))
    return mac


def _uuid(value, what):
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise XmlSpecError("%s '%s' is not a UUID (for example 0b6c1c3e-4d3a-5d0e-9f57-1a2b3c4d5e6f)"
                           % (what, value))


def parse_pci_address(address, what="PCI address"):
    """'0000:65:00.0' (or '65:00.0', or a dict) -> dict(domain, bus, slot, function) as libvirt hex."""
    if isinstance(address, dict):
        parts = dict(address)
        try:
            return {k: "0x%0*x" % (4 if k == "domain" else 2 if k != "function" else 1, int(str(parts.get(k, 0)), 16))
                    for k in ("domain", "bus", "slot", "function")}
        except ValueError:
            raise XmlSpecError("%s %r must have hex domain, bus, slot and function" % (what, address))
    parts = pci_address_parts(address)
    if parts is None or parts[0] > 0xffff:
        raise XmlSpecError("%s '%s' is not of the form 0000:65:00.0" % (what, address))
    return dict(zip(("domain", "bus", "slot", "function"), ("0x%04x" % parts[0], "0x%02x" % parts[1],
                                                            "0x%02x" % parts[2], "0x%x" % parts[3])))


# --------------------------------------------------------------------------- domains

def complete_domain_spec(spec):
    """Return a copy of a domain spec with every default filled in (stable uuid/MACs included)."""
    what = "domain spec"
    name = _require(spec, "name", what)
    what = "domain '%s'" % name
    out = dict(spec)
    out["cluster"] = cluster = out.get("cluster") or ""
    for key, default in (("vcpus", 1), ("memory_mib", 1024), ("accelerator", "tcg"), ("tcg_tb_cache_mib", 128),
                         ("machine", "q35"), ("role", ""), ("node", name),
                         ("console_log", "/var/log/libvirt/qemu/%s-console.log" % name)):
        if out.get(key) in (None, ""):
            out[key] = default
    if out["accelerator"] not in ACCELERATORS:
        raise XmlSpecError("%s: accelerator must be one of %s, not '%s'" % (what, "/".join(ACCELERATORS), out["accelerator"]))
    for key in ("vcpus", "memory_mib", "tcg_tb_cache_mib"):
        if int(out[key]) < 1:
            raise XmlSpecError("%s: %s must be a positive integer" % (what, key))
    if not out.get("uuid"):
        out["uuid"] = stable_uuid(cluster, name)
    _uuid(out["uuid"], "%s: uuid" % what)
    nics = []
    for index, nic in enumerate(out.get("nics") or []):
        nic = dict(nic)
        _require(nic, "network", "%s nic %d" % (what, index))
        if not nic.get("mac"):
            nic["mac"] = stable_mac(cluster, name, index)
        nic["mac"] = _mac(nic["mac"], "%s nic %d: mac" % (what, index))
        nic.setdefault("model", "virtio")
        nic["model"] = nic["model"] or "virtio"
        nics.append(nic)
    out["nics"] = nics
    gpus = []
    for index, gpu in enumerate(out.get("gpus") or []):
        gpu = dict(gpu)
        kind = gpu.get("kind")
        if kind not in GPU_KINDS:
            raise XmlSpecError("%s gpu %d: kind must be one of %s, not '%s'" % (what, index, "/".join(GPU_KINDS), kind))
        if kind in ("pci", "vf"):
            where = "%s gpu %d (%s)" % (what, index, kind)
            parse_pci_address(_require(gpu, "address", where), where + ": PCI address")
        if kind == "mdev":
            where = "%s gpu %d (mdev)" % (what, index)
            _uuid(_require(gpu, "uuid", where), where + ": uuid")
        gpus.append(gpu)
    out["gpus"] = gpus
    disk = out.get("disk")
    if disk is not None:
        disk = dict(disk)
        _require(disk, "path", "%s disk" % what)
        disk["format"] = disk.get("format") or "qcow2"
        out["disk"] = disk
    return out


def domain_xml(spec):
    """Domain XML (string) for a domain spec; see the module docstring for the keys."""
    s = complete_domain_spec(spec)
    kvm = s["accelerator"] == "kvm"
    root = ET.Element("domain", {"type": "kvm" if kvm else "qemu"})
    _sub(root, "name", s["name"])
    _sub(root, "uuid", s["uuid"])

    meta = _sub(root, "metadata")
    inst = _sub(meta, "{%s}instance" % NS, cluster=s["cluster"], node=s["node"], role=s["role"])
    for gpu in s["gpus"]:
        attrs = {k: gpu[k] for k in sorted(gpu) if gpu[k] not in (None, "")}
        _sub(inst, "{%s}gpu" % NS, **attrs)

    # memory in KiB and the libvirt defaults written out, so what libvirt echoes back is equal.
    _sub(root, "memory", int(s["memory_mib"]) * 1024, unit="KiB")
    _sub(root, "currentMemory", int(s["memory_mib"]) * 1024, unit="KiB")
    _sub(root, "vcpu", int(s["vcpus"]), placement="static")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=s["machine"])
    _sub(os_el, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if kvm:
        _sub(root, "cpu", mode="host-passthrough")
    else:
        # TCG: emulate the richest CPU QEMU can, and cap the translation cache (QEMU's default
        # is 1 GiB per VM, too much with several VMs on one workstation).
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", int(s["tcg_tb_cache_mib"]), unit="MiB")
        _sub(root, "cpu", mode="maximum")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    disk = s.get("disk")
    if disk:
        d = _sub(devices, "disk", type="file", device="disk")
        _sub(d, "driver", name="qemu", type=disk["format"], discard="unmap")
        _sub(d, "source", file=disk["path"])
        _sub(d, "target", dev="vda", bus="virtio")
    if s.get("seed_iso"):
        d = _sub(devices, "disk", type="file", device="cdrom")
        _sub(d, "driver", name="qemu", type="raw")
        _sub(d, "source", file=s["seed_iso"])
        _sub(d, "target", dev="sda", bus="sata")
        _sub(d, "readonly")
    for nic in s["nics"]:
        i = _sub(devices, "interface", type="network")
        _sub(i, "mac", address=nic["mac"])
        _sub(i, "source", network=nic["network"])
        _sub(i, "model", type=nic["model"])
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=s["console_log"], append="on")
    _sub(serial, "target", port="0")
    for gpu in s["gpus"]:
        kind = gpu["kind"]
        if kind in ("pci", "vf"):
            # A whole GPU is bound to vfio-pci by libvirt (managed); a vendor VF is already bound
            # by the vendor's VFIO driver, so libvirt must not rebind it (managed='no').
            h = _sub(devices, "hostdev", mode="subsystem", type="pci", managed="yes" if kind == "pci" else "no")
            src = _sub(h, "source")
            _sub(src, "address", **parse_pci_address(gpu["address"]))
        elif kind == "mdev":
            h = _sub(devices, "hostdev", mode="subsystem", type="mdev", model="vfio-pci", display="off")
            src = _sub(h, "source")
            _sub(src, "address", uuid=gpu["uuid"])
        # 'simulated' GPUs exist only in the metadata (the guest runs a GPU simulator).
    return _tostring(root)


# --------------------------------------------------------------------------- networks

def complete_network_spec(spec):
    """Copy of a network spec with gateway, prefix, DHCP range and host entries filled in."""
    name = _require(spec, "name", "network spec")
    what = "network '%s'" % name
    out = dict(spec)
    try:
        net = ipaddress.IPv4Network(_require(spec, "subnet", what), strict=True)
    except ValueError as exc:
        raise XmlSpecError("%s: subnet: %s" % (what, exc))
    hosts = list(net.hosts())
    if len(hosts) < 4:
        raise XmlSpecError("%s: subnet %s is too small" % (what, net))
    out["bridge"] = out.get("bridge") or ("virbr-" + name)[:15]
    if len(out["bridge"]) > 15:
        raise XmlSpecError("%s: bridge name '%s' is longer than 15 characters" % (what, out["bridge"]))
    out["gateway"] = str(out.get("gateway") or hosts[0])
    if _ipv4(out["gateway"], "%s: gateway" % what) not in net:
        raise XmlSpecError("%s: gateway %s is outside %s" % (what, out["gateway"], net))
    out["prefix"] = net.prefixlen
    out["forward"] = out.get("forward") or "nat"
    # Default DHCP pool: the upper half of the subnet, so static entries can use the lower half.
    rng = out.get("dhcp_range") or [str(hosts[len(hosts) // 2]), str(hosts[-1])]
    if len(rng) != 2 or not all(_ipv4(a, "%s: dhcp_range address" % what) in net for a in rng):
        raise XmlSpecError("%s: dhcp_range %s must be two addresses in %s" % (what, rng, net))
    out["dhcp_range"] = [str(a) for a in rng]
    hosts_out = []
    for index, host in enumerate(out.get("hosts") or []):
        host = dict(host)
        for key in ("mac", "name", "ip"):
            _require(host, key, "%s host %d" % (what, index))
        if _ipv4(host["ip"], "%s host '%s': ip" % (what, host["name"])) not in net:
            raise XmlSpecError("%s host '%s': ip %s is outside %s" % (what, host["name"], host["ip"], net))
        host["mac"] = _mac(host["mac"], "%s host '%s': mac" % (what, host["name"]))
        hosts_out.append(host)
    out["hosts"] = hosts_out
    dns_out = []
    for index, h in enumerate(out.get("dns_hosts") or []):
        h = dict(h)
        _ipv4(_require(h, "ip", "%s dns host %d" % (what, index)), "%s dns host %d: ip" % (what, index))
        if not (h.get("hostnames") or h.get("hostname")):
            raise XmlSpecError("%s dns host %d (%s): hostnames must list at least one name" % (what, index, h["ip"]))
        dns_out.append(h)
    out["dns_hosts"] = dns_out
    if out.get("uuid"):
        _uuid(out["uuid"], "%s: uuid" % what)
    return out


def network_xml(spec):
    """Network XML: bridge, NAT (or isolated), DHCP range + static hosts, DNS hosts, domain name.

    Keys: name, subnet (CIDR), bridge, gateway [first host], forward ['nat'|'none'],
    dhcp_range [upper half], hosts [{mac, name, ip}], dns_hosts [{ip, hostnames}], domain, uuid.
    """
    s = complete_network_spec(spec)
    root = ET.Element("network")
    _sub(root, "name", s["name"])
    if s.get("uuid"):
        _sub(root, "uuid", s["uuid"])
    if s["forward"] != "none":
        _sub(root, "forward", mode=s["forward"])
    _sub(root, "bridge", name=s["bridge"], stp="on", delay="0")
    if s.get("domain"):
        _sub(root, "domain", name=s["domain"], localOnly="yes")
    dns_hosts = list(s["dns_hosts"])
    if dns_hosts:
        dns = _sub(root, "dns")
        for h in dns_hosts:
            names = h.get("hostnames") or [h.get("hostname")]
            he = _sub(dns, "host", ip=_require(h, "ip", "network '%s' dns host" % s["name"]))
            for n in names:
                _sub(he, "hostname", n)
    ip = _sub(root, "ip", address=s["gateway"], prefix=s["prefix"])
    dhcp = _sub(ip, "dhcp")
    _sub(dhcp, "range", start=s["dhcp_range"][0], end=s["dhcp_range"][1])
    for h in s["hosts"]:
        _sub(dhcp, "host", mac=h["mac"], name=h["name"], ip=h["ip"])
    return _tostring(root)


# --------------------------------------------------------------------------- pools / volumes

def pool_xml(spec):
    """Directory pool: keys name, path."""
    name = _require(spec, "name", "pool spec")
    root = ET.Element("pool", type="dir")
    _sub(root, "name", name)
    if spec.get("uuid"):
        _sub(root, "uuid", spec["uuid"])
    target = _sub(root, "target")
    _sub(target, "path", _require(spec, "path", "pool '%s'" % name))
    return _tostring(root)


def volume_xml(spec):
    """qcow2 overlay on a golden image: keys name, backing_path, capacity_gib or capacity_bytes, format.

    The golden image is only the backing store: writes go to the overlay, never to it.
    """
    name = _require(spec, "name", "volume spec")
    root = ET.Element("volume", type="file")
    _sub(root, "name", name)
    if spec.get("capacity_gib"):
        _sub(root, "capacity", int(spec["capacity_gib"]), unit="GiB")
    elif spec.get("capacity_bytes"):
        _sub(root, "capacity", int(spec["capacity_bytes"]), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type=spec.get("format") or "qcow2")
    if spec.get("backing_path"):
        bs = _sub(root, "backingStore")
        _sub(bs, "path", spec["backing_path"])
        _sub(bs, "format", type=spec.get("backing_format") or "qcow2")
    return _tostring(root)


# --------------------------------------------------------------------------- reading XML back

def _parse(xml_text):
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise XmlSpecError("not well-formed XML: %s" % exc)


def owner_metadata(xml_text):
    """Our <metadata> record of a domain as a dict (cluster, node, role, gpus), or None if foreign."""
    inst = _parse(xml_text).find("metadata/{%s}instance" % NS)
    if inst is None:
        return None
    out = dict(inst.attrib)
    out["gpus"] = [dict(g.attrib) for g in inst.findall("{%s}gpu" % NS)]
    return out


def domain_identity(xml_text):
    """(uuid, [mac of each <interface>, in order]) of a domain XML."""
    root = _parse(xml_text)
    uuid = root.findtext("uuid")
    macs = [(i.find("mac").get("address") if i.find("mac") is not None else None)
            for i in root.findall("devices/interface")]
    return uuid, macs


def object_uuid(xml_text):
    return _parse(xml_text).findtext("uuid")


# --------------------------------------------------------------------------- normalisation

def _to_kib(el):
    unit = (el.get("unit") or "KiB").lower()
    if unit not in _UNIT_BYTES or not (el.text or "").strip().isdigit():
        return
    el.text = str(int(el.text.strip()) * _UNIT_BYTES[unit] // 1024)
    el.set("unit", "KiB")


def _drop(parent, pred):
    for child in list(parent):
        if pred(child):
            parent.remove(child)


def _machine_alias(machine):
    # libvirt expands 'q35' to the versioned type (pc-q35-7.2): compare the family only.
    if machine and machine.startswith("pc-q35"):
        return "q35"
    if machine and (machine.startswith("pc-i440fx") or machine == "pc"):
        return "pc"
    return machine


def _normalise_domain(root, drop_uuid, drop_macs):
    root.attrib.pop("id", None)
    _drop(root, lambda c: c.tag in ("resource", "seclabel", "keywrap", "launchSecurity") or (drop_uuid and c.tag == "uuid"))
    vcpu = root.find("vcpu")
    if vcpu is not None:
        vcpu.set("placement", vcpu.get("placement", "static"))
    for tag in ("memory", "currentMemory", "maxMemory", "features/tcg/tb-cache"):
        for el in root.findall(tag):
            _to_kib(el)
    mem, cur = root.find("memory"), root.find("currentMemory")
    if mem is not None and cur is None:
        cur = ET.SubElement(root, "currentMemory", dict(mem.attrib))
        cur.text = mem.text
    ostype = root.find("os/type")
    if ostype is not None and ostype.get("machine"):
        ostype.set("machine", _machine_alias(ostype.get("machine")))
    cpu = root.find("cpu")
    if cpu is not None:
        # Attributes libvirt fills in for host-passthrough/maximum CPUs.
        for attr in ("check", "migratable"):
            cpu.attrib.pop(attr, None)
    devices = root.find("devices")
    if devices is not None:
        def auto_added(dev):
            if dev.tag in ("emulator", "controller", "memballoon", "console", "audio", "panic"):
                return True
            if dev.tag == "input" and dev.get("bus") == "ps2":
                return True
            if dev.tag == "watchdog" and dev.get("model") == "itco":
                return True
            return False
        _drop(devices, auto_added)
        for dev in devices:
            # Guest-side addresses and aliases are libvirt's choice; hostdev <source><address> is ours.
            _drop(dev, lambda c: c.tag in ("address", "alias", "seclabel") or (dev.tag == "interface" and c.tag == "target"))
            if dev.tag == "interface" and drop_macs:
                _drop(dev, lambda c: c.tag == "mac")
            if dev.tag == "hostdev":
                _drop(dev, lambda c: c.tag == "driver")
                if dev.get("type") == "mdev":
                    dev.set("managed", dev.get("managed", "no"))
            if dev.tag == "serial":
                tgt = dev.find("target")
                if tgt is not None:
                    tgt.attrib.pop("type", None)
                    _drop(tgt, lambda c: c.tag == "model")
            if dev.tag == "disk":
                _drop(dev, lambda c: c.tag == "backingStore")
        devices[:] = sorted(devices, key=lambda c: c.tag)


def _normalise_network(root, drop_uuid, _drop_macs):
    root.attrib.pop("connections", None)
    # The bridge's own MAC is generated by libvirt; it is never part of our spec.
    _drop(root, lambda c: c.tag == "mac" or (drop_uuid and c.tag == "uuid"))
    bridge = root.find("bridge")
    if bridge is not None:
        bridge.set("stp", bridge.get("stp", "on"))
        bridge.set("delay", bridge.get("delay", "0"))
    fwd = root.find("forward")
    if fwd is not None:
        def default_nat(c):
            if c.tag != "nat":
                return False
            ports = c.findall("port")
            return len(c) == len(ports) and all(p.get("start") == "1024" and p.get("end") == "65535" for p in ports)
        _drop(fwd, default_nat)
    for ip in root.findall("ip"):
        if ip.get("family") == "ipv4":
            del ip.attrib["family"]


def _normalise_pool(root, drop_uuid, _drop_macs):
    _drop(root, lambda c: c.tag in ("capacity", "allocation", "available") or (drop_uuid and c.tag == "uuid"))
    src = root.find("source")
    if src is not None and len(src) == 0 and not src.attrib:
        root.remove(src)
    tgt = root.find("target")
    if tgt is not None:
        _drop(tgt, lambda c: c.tag == "permissions")


# libvirt's own output order, so normalised XML reads like `virsh dumpxml`; others go last.
_ORDER = [
    "name", "uuid", "title", "description", "metadata", "maxMemory", "memory", "currentMemory", "vcpu",
    "os", "features", "cpu", "clock", "on_poweroff", "on_reboot", "on_crash", "pm", "devices",
    "forward", "bridge", "mtu", "domain", "dns", "ip", "source", "target",
    "emulator", "disk", "controller", "filesystem", "interface", "serial", "console", "channel", "input",
    "graphics", "video", "hostdev", "watchdog", "memballoon", "rng",
    "acpi", "apic", "tcg",
]
_RANK = {tag: i for i, tag in enumerate(_ORDER)}


def _sort_children(el):
    el[:] = sorted(el, key=lambda c: (_RANK.get(c.tag, len(_ORDER)), c.tag if c.tag not in _RANK else ""))


def _canonical(el):
    el.attrib = dict(sorted(el.attrib.items()))
    el.text = el.text.strip() if el.text and el.text.strip() else None
    el.tail = None
    for child in el:
        _canonical(child)


def normalise_xml(xml_text, drop_uuid=False, drop_macs=False):
    """Canonical form of a domain/network/pool XML, for comparing wanted with actual.

    Drops what libvirt adds itself (ids, guest addresses, aliases, seclabels, <resource>,
    controllers and other auto-added devices, the bridge MAC, pool sizes), converts memory
    units to KiB, sorts attributes and top-level/device elements, strips whitespace.
    ``drop_uuid``/``drop_macs`` also remove the UUID / interface MACs, for comparisons
    where the wanted spec leaves them to libvirt.
    """
    root = _parse(xml_text)
    if root.tag == "domain":
        _normalise_domain(root, drop_uuid, drop_macs)
    elif root.tag == "network":
        _normalise_network(root, drop_uuid, drop_macs)
    elif root.tag == "pool":
        _normalise_pool(root, drop_uuid, drop_macs)
    # Element order at these levels carries no meaning for libvirt (it reorders on output); a
    # stable sort keeps the order of repeated elements (disks, interfaces), which does.
    _sort_children(root)
    for path in ("devices", "features"):
        el = root.find(path)
        if el is not None:
            _sort_children(el)
    _canonical(root)
    return _tostring(root)


def xml_diff(before, after, name):
    """Unified diff of two XML texts (normalise them first); '' when equal."""
    return "".join(difflib.unified_diff(
        (before or "").splitlines(True), (after or "").splitlines(True),
        fromfile="%s (before)" % name, tofile="%s (after)" % name))
