"""Real libvirt through the lab's libvirtd (qemu:///system), with the venv's libvirt-python.

    lab-smoke.py NETNS      (NETNS: the lab's network namespace, e.g. hs-fresh)

Defines and starts a NAT network with DHCP and a 64 MiB TCG domain with a virtio NIC on it that boots
from the network (no disk), checks both are active, the domain running and the network's bridge and
address inside NETNS and not in the caller's namespace, then destroys and undefines both, whatever
happened. Run by tests/fresh-machine/inside.sh; one line per step, "lab-smoke: ok" at the end.
"""

import subprocess
import sys
import time

import libvirt

NET = "hs-fresh-smoke"
BRIDGE = "virbr-hsfresh"
ADDRESS = "192.168.250.1"
DOM = "hs-fresh-smoke-vm"
NET_XML = f"""<network><name>{NET}</name><forward mode='nat'/>
<bridge name='{BRIDGE}' stp='on' delay='0'/>
<ip address='{ADDRESS}' netmask='255.255.255.0'>
<dhcp><range start='192.168.250.10' end='192.168.250.20'/></dhcp></ip></network>"""
DOM_XML = f"""<domain type='qemu'><name>{DOM}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>
<features><tcg><tb-cache unit='MiB'>32</tb-cache></tcg></features><cpu mode='maximum'/>
<devices><interface type='network'><source network='{NET}'/><model type='virtio'/></interface>
<serial type='pty'/><console type='pty'/></devices></domain>"""


def cleanup(conn):
    """Destroys and undefines what this script defines, if present (also after a failure)."""
    for lookup, name in ((conn.lookupByName, DOM), (conn.networkLookupByName, NET)):
        try:
            obj = lookup(name)
        except libvirt.libvirtError:
            continue
        if obj.isActive():
            obj.destroy()
        obj.undefine()


def bridge_address(netns):
    """The bridge's IPv4 addresses as `ip -o addr` prints them, in NETNS or (None) here; "" if absent."""
    cmd = ["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def main(netns):
    conn = libvirt.open("qemu:///system")
    print(f"lab-smoke: libvirtd {conn.getLibVersion()}, hypervisor {conn.getType()} {conn.getVersion()}")
    try:
        net = conn.networkDefineXML(NET_XML)
        net.create()
        print(f"lab-smoke: network {NET} active={net.isActive()} bridge={net.bridgeName()}")
        inside, here = bridge_address(netns), bridge_address(None)
        print(f"lab-smoke: {BRIDGE} in {netns}: {inside.split()[3] if inside else 'absent'}; "
              f"here: {here.split()[3] if here else 'absent'}")
        if ADDRESS not in inside or here:
            print(f"lab-smoke: the network's bridge must live in {netns} only", file=sys.stderr)
            return 1
        dom = conn.defineXML(DOM_XML)
        dom.create()
        state = None
        for _attempt in range(20):
            time.sleep(0.5)
            state, _reason = dom.state()
            if state == libvirt.VIR_DOMAIN_RUNNING:
                break
        print(f"lab-smoke: domain {DOM} state={state} (running={libvirt.VIR_DOMAIN_RUNNING})")
        if state != libvirt.VIR_DOMAIN_RUNNING or not net.isActive():
            print("lab-smoke: the domain is not running or the network is not active", file=sys.stderr)
            return 1
        # Still running a moment later: QEMU did not exit right after start (e.g. on a TCG or NIC error).
        time.sleep(2)
        if not dom.isActive():
            print("lab-smoke: the domain stopped by itself", file=sys.stderr)
            return 1
    finally:
        cleanup(conn)
    left = [d.name() for d in conn.listAllDomains()] + [n.name() for n in conn.listAllNetworks()]
    conn.close()
    if left:
        print(f"lab-smoke: left behind: {left}", file=sys.stderr)
        return 1
    print("lab-smoke: ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
