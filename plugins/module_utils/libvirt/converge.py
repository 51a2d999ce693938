# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Converge libvirt (networks, a directory pool, overlay volumes, domains) to wanted specs.

Ownership (what ``absent`` may remove, what ``present`` may rewrite):

* domains carry our ``<metadata>`` element (namespace :data:`definitions.NS`); a domain
  without it is foreign: ``present`` refuses to touch it, ``absent`` leaves it alone;
* networks and pools have no metadata on every libvirt we support (network metadata needs
  libvirt 9.7, pools have none), so they are owned when their name starts with the owner
  prefix (default ``hs-``); the same rule as for domains applies to the others;
* volumes are owned when they are a domain's overlay disk inside an owned pool; the golden
  image (the overlay's backing store) is never written or removed.

Every libvirt failure is raised as :class:`HyperscalerError` naming the object.
"""


from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import time

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common import progress as hs_progress
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import OWNER_PREFIX
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import definitions as libvirt_xml
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt.ssh import in_parallel, wait_for_ssh

DEFAULT_OWNER_PREFIX = OWNER_PREFIX
STATES = ("present", "running", "stopped", "absent")
# Seconds between two "still waiting for" progress lines while the VMs boot.
SSH_REPORT_EVERY = 20.0


def import_libvirt():
    """The libvirt module, imported only when needed (the XML layer works without it)."""
    try:
        import libvirt  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise HyperscalerError(
            "the Python libvirt bindings are missing on the libvirt host: install them with "
            "'apt-get install -y libvirt-dev pkg-config && pip install -r requirements-libvirt.txt' "
            "(or the distribution package python3-libvirt)")
    return libvirt


def _code_name(libvirt, code):
    for attr in dir(libvirt):
        if attr.startswith("VIR_ERR_") and getattr(libvirt, attr) == code:
            return attr
    return str(code)


def map_libvirt_error(exc, kind, name, action):
    """HyperscalerError for a libvirt.libvirtError, naming the object and the failed action."""
    libvirt = import_libvirt()
    code = exc.get_error_code()
    missing = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK,
               libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL)
    if code in missing:
        hint = "%s '%s' does not exist" % (kind, name)
    elif code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL, libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
                  libvirt.VIR_ERR_INVALID_ARG):
        hint = "libvirt rejected the definition of %s '%s'" % (kind, name)
    elif code == libvirt.VIR_ERR_OPERATION_INVALID:
        hint = "%s '%s' is not in a state that allows this" % (kind, name)
    elif code in (libvirt.VIR_ERR_OPERATION_DENIED, libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_ACCESS_DENIED):
        hint = "permission denied on %s '%s' (run as root or as a member of group libvirt)" % (kind, name)
    else:
        hint = "libvirt error on %s '%s'" % (kind, name)
    return HyperscalerError(
        "cannot %s %s '%s': %s: %s" % (action, kind, name, hint, exc.get_error_message() or exc),
        libvirt_error=_code_name(libvirt, code), object={"kind": kind, "name": name})


@contextlib.contextmanager
def guard(kind, name, action):
    """Turn libvirt errors raised inside the block into HyperscalerError."""
    libvirt = import_libvirt()
    try:
        yield
    except libvirt.libvirtError as exc:
        raise map_libvirt_error(exc, kind, name, action)


def connect(uri):
    """Open a read-write libvirt connection, with libvirt's own stderr printing silenced."""
    libvirt = import_libvirt()
    # libvirt prints every error to stderr by default; ours are raised as HyperscalerError instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HyperscalerError(
            "cannot connect to libvirt at '%s': %s (is virtqemud/libvirtd running and may this user use it?)"
            % (uri, exc.get_error_message() or exc), libvirt_error=_code_name(libvirt, exc.get_error_code()))


def _xmldesc(obj, inactive_flag):
    """Persistent (inactive) XML when the driver supports the flag, else the current one."""
    libvirt = import_libvirt()
    try:
        return obj.XMLDesc(inactive_flag)
    except libvirt.libvirtError as exc:
        # The test driver (and old drivers) reject the INACTIVE flag for networks and pools.
        if exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            return obj.XMLDesc(0)
        raise


class Converger:
    """One convergence run on an open connection. Check mode computes and changes nothing."""

    def __init__(self, conn, check_mode=False, owner_prefix=DEFAULT_OWNER_PREFIX, stop_timeout=60,
                 ssh_wait=None, sleep=time.sleep, progress=None, clock=time.monotonic,
                 report_every=SSH_REPORT_EVERY, poll=1.0):
        self.libvirt = import_libvirt()
        self.conn = conn
        self.check_mode = check_mode
        self.owner_prefix = owner_prefix
        self.stop_timeout = stop_timeout
        self.ssh_wait = ssh_wait or wait_for_ssh
        self.sleep = sleep
        # progress(line): live notes for the progress callback (module_utils/progress.py); while
        # waiting, a note every report_every seconds of clock(), checked every poll seconds.
        self.progress = progress or hs_progress.report
        self.clock = clock
        self.report_every = report_every
        self.poll = poll
        self.changes = []
        self.notes = []
        self.skipped = []
        self.restart_required = []
        self.domains = {}
        self.networks = {}

    # -- bookkeeping
    def _record(self, kind, name, action, before="", after="", note=None):
        entry = {"kind": kind, "name": name, "action": action}
        diff = libvirt_xml.xml_diff(before, after, "%s/%s" % (kind, name))
        if diff:
            entry["diff"] = diff
        entry["before"], entry["after"] = before, after
        if note:
            entry["note"] = note
            self.notes.append(note)
        self.changes.append(entry)

    def _owned_name(self, name):
        return bool(self.owner_prefix) and name.startswith(self.owner_prefix)

    def _lookup(self, kind, name, fn):
        lv = self.libvirt
        missing = {"domain": lv.VIR_ERR_NO_DOMAIN, "network": lv.VIR_ERR_NO_NETWORK,
                   "pool": lv.VIR_ERR_NO_STORAGE_POOL, "volume": lv.VIR_ERR_NO_STORAGE_VOL}[kind]
        try:
            return fn(name)
        except lv.libvirtError as exc:
            if exc.get_error_code() == missing:
                return None
            raise map_libvirt_error(exc, kind, name, "look up")

    # -- networks
    def network(self, spec, state):
        name = spec.get("name")
        with guard("network", name, "look up"):
            net = self._lookup("network", name, self.conn.networkLookupByName)
        if not self._owned_name(name):
            if state == "absent":
                self.skipped.append({"kind": "network", "name": name, "reason": "name lacks owner prefix '%s'" % self.owner_prefix})
                return
            raise HyperscalerError(
                "network '%s' is not owned by aihow.hyperscaler: managed network names must start with '%s'"
                % (name, self.owner_prefix), object={"kind": "network", "name": name})
        if state == "absent":
            if net is None:
                return
            with guard("network", name, "remove"):
                before = libvirt_xml.normalise_xml(_xmldesc(net, self.libvirt.VIR_NETWORK_XML_INACTIVE))
                if not self.check_mode:
                    if net.isActive():
                        net.destroy()
                    if net.isPersistent():
                        net.undefine()
            self._record("network", name, "undefine", before, "")
            self.networks[name] = {"state": "absent"}
            return
        wanted_spec = dict(spec)
        if net is not None and not spec.get("uuid"):
            with guard("network", name, "read"):
                wanted_spec["uuid"] = net.UUIDString()
        try:
            raw = libvirt_xml.network_xml(wanted_spec)
            wanted = libvirt_xml.normalise_xml(raw)
        except libvirt_xml.XmlSpecError as exc:
            raise HyperscalerError(str(exc), object={"kind": "network", "name": name})
        with guard("network", name, "converge"):
            if net is None:
                self._record("network", name, "define", "", wanted)
                if not self.check_mode:
                    net = self.conn.networkDefineXML(raw)
                    net.setAutostart(1)
                    net.create()
                self.networks[name] = {"state": "active"}
                return
            before = libvirt_xml.normalise_xml(_xmldesc(net, self.libvirt.VIR_NETWORK_XML_INACTIVE))
            active = bool(net.isActive())
            if before != wanted:
                note = None
                if active:
                    # libvirt applies a changed network definition only on restart; guests attached
                    # to the bridge lose their link until they are restarted or their NICs re-plugged.
                    note = ("network '%s' was re-defined while active: destroyed, defined and started again; "
                            "running guests on it lose connectivity until restarted" % name)
                self._record("network", name, "redefine", before, wanted, note=note)
                if not self.check_mode:
                    if active:
                        net.destroy()
                    net = self.conn.networkDefineXML(raw)
                    net.create()
                    active = True
            if not active:
                self._record("network", name, "start")
                if not self.check_mode:
                    net.create()
            if not self.check_mode and not net.autostart():
                net.setAutostart(1)
        self.networks[name] = {"state": "active"}

    # -- pool and volumes
    def pool(self, spec, state):
        name = spec.get("name")
        pool = self._lookup("pool", name, self.conn.storagePoolLookupByName)
        if not self._owned_name(name):
            if state == "absent":
                self.skipped.append({"kind": "pool", "name": name, "reason": "name lacks owner prefix '%s'" % self.owner_prefix})
                return None
            raise HyperscalerError(
                "pool '%s' is not owned by aihow.hyperscaler: managed pool names must start with '%s'"
                % (name, self.owner_prefix), object={"kind": "pool", "name": name})
        inactive = self.libvirt.VIR_STORAGE_XML_INACTIVE
        if state == "absent":
            if pool is None:
                return None
            with guard("pool", name, "remove"):
                before = libvirt_xml.normalise_xml(_xmldesc(pool, inactive))
                if not self.check_mode:
                    # destroy + undefine only: the directory (and the golden images in it) stays.
                    if pool.isActive():
                        pool.destroy()
                    pool.undefine()
            self._record("pool", name, "undefine", before, "")
            return None
        wanted_spec = dict(spec)
        if pool is not None and not spec.get("uuid"):
            wanted_spec["uuid"] = pool.UUIDString()
        try:
            raw = libvirt_xml.pool_xml(wanted_spec)
        except libvirt_xml.XmlSpecError as exc:
            raise HyperscalerError(str(exc), object={"kind": "pool", "name": name})
        wanted = libvirt_xml.normalise_xml(raw)
        with guard("pool", name, "converge"):
            if pool is None:
                self._record("pool", name, "define", "", wanted)
                if self.check_mode:
                    return None
                pool = self.conn.storagePoolDefineXML(raw)
                pool.build(0)
                pool.setAutostart(1)
                pool.create()
                return pool
            before = libvirt_xml.normalise_xml(_xmldesc(pool, inactive))
            active = bool(pool.isActive())
            if before != wanted:
                note = ("pool '%s' was re-defined while active: stopped, defined and started again (its files are kept)"
                        % name) if active else None
                self._record("pool", name, "redefine", before, wanted, note=note)
                if not self.check_mode:
                    if active:
                        pool.destroy()
                    pool = self.conn.storagePoolDefineXML(raw)
                    pool.build(0)
                    pool.create()
                    active = True
            if not active:
                self._record("pool", name, "start")
                if not self.check_mode:
                    pool.create()
            if not self.check_mode and not pool.autostart():
                pool.setAutostart(1)
        return pool

    def volume(self, pool, pool_spec, domain_spec, state):
        """The overlay disk of a domain, created from its golden image (backing_path)."""
        disk = domain_spec.get("disk") or {}
        if not disk.get("backing_path"):
            return  # the disk is provided by someone else; only referenced
        dname = domain_spec["name"]
        if not pool_spec:
            raise HyperscalerError("domain '%s': disk.backing_path needs the pool option to create its overlay" % dname)
        vol_name = os.path.basename(disk["path"])
        if os.path.normpath(os.path.dirname(disk["path"])) != os.path.normpath(pool_spec["path"]):
            raise HyperscalerError("domain '%s': disk path %s is not inside pool '%s' (%s)"
                                   % (dname, disk["path"], pool_spec["name"], pool_spec["path"]))
        if disk["path"] == disk["backing_path"]:
            raise HyperscalerError("domain '%s': disk path and backing_path are the same file; the golden image "
                                   "must never be written" % dname)
        if pool is None:  # check mode with a pool still to be created
            if state != "absent":
                self._record("volume", vol_name, "create", "", libvirt_xml.volume_xml(dict(disk, name=vol_name)))
            return
        with guard("volume", vol_name, "look up"):
            if not pool.isActive():
                return
            vol = self._lookup("volume", vol_name, pool.storageVolLookupByName)
        if state == "absent":
            if vol is not None and self._owned_name(pool_spec["name"]):
                self._record("volume", vol_name, "delete")
                if not self.check_mode:
                    with guard("volume", vol_name, "delete"):
                        vol.delete(0)
            return
        if vol is None:
            xml = libvirt_xml.volume_xml(dict(disk, name=vol_name, capacity_gib=None,
                                              capacity_bytes=self._overlay_capacity(dname, disk)))
            self._record("volume", vol_name, "create", "", xml)
            if not self.check_mode:
                with guard("volume", vol_name, "create"):
                    pool.createXML(xml, 0)
            return
        with guard("volume", vol_name, "read"):
            have = libvirt_xml.ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")
        if have != disk["backing_path"]:
            # An overlay holds the guest's data: report, never re-create it silently.
            self.notes.append("volume '%s' has backing store %s, not %s: left as it is (delete it to rebuild)"
                              % (vol_name, have, disk["backing_path"]))

    def _overlay_capacity(self, dname, disk):
        """Bytes: disk.capacity_gib, else the golden image's size when libvirt knows the image."""
        if disk.get("capacity_gib"):
            return int(disk["capacity_gib"]) * 1024 ** 3
        try:
            return self.conn.storageVolLookupByPath(disk["backing_path"]).info()[1]
        except self.libvirt.libvirtError:
            raise HyperscalerError(
                "domain '%s': set disk.capacity_gib; the size of the golden image %s is unknown to libvirt "
                "(it is in no storage pool)" % (dname, disk["backing_path"]))

    # -- domains
    def domain(self, spec, state):
        name = spec.get("name")
        dom = self._lookup("domain", name, self.conn.lookupByName)
        inactive = self.libvirt.VIR_DOMAIN_XML_INACTIVE
        current = None
        if dom is not None:
            with guard("domain", name, "read"):
                current = dom.XMLDesc(inactive)
        owned = current is not None and libvirt_xml.owner_metadata(current) is not None
        if state == "absent":
            if dom is None:
                return
            if not owned:
                self.skipped.append({"kind": "domain", "name": name,
                                     "reason": "no aihow.hyperscaler metadata: not created by this collection"})
                return
            before = libvirt_xml.normalise_xml(current)
            with guard("domain", name, "remove"):
                if not self.check_mode:
                    if dom.isActive():
                        dom.destroy()
                    self._undefine(dom)
            self._record("domain", name, "undefine", before, "")
            self.domains[name] = {"state": "absent"}
            return
        if dom is not None and not owned:
            raise HyperscalerError(
                "domain '%s' exists but has no aihow.hyperscaler metadata (it was not created by this collection); "
                "refusing to change it: rename the node or remove the domain yourself" % name,
                object={"kind": "domain", "name": name})
        wanted_spec = dict(spec)
        if current is not None:
            # Keep libvirt's identity where the spec leaves it open (as community.libvirt does):
            # a new UUID would be refused, new MACs would lose the guests' DHCP leases.
            uuid, macs = libvirt_xml.domain_identity(current)
            if not spec.get("uuid"):
                wanted_spec["uuid"] = uuid
            elif spec["uuid"].lower() != (uuid or "").lower():
                raise HyperscalerError("domain '%s' has UUID %s, the spec asks for %s: libvirt cannot change the "
                                       "UUID of a defined domain; undefine it first" % (name, uuid, spec["uuid"]))
            nics = []
            for index, nic in enumerate(spec.get("nics") or []):
                nic = dict(nic)
                if not nic.get("mac") and index < len(macs) and macs[index]:
                    nic["mac"] = macs[index]
                nics.append(nic)
            wanted_spec["nics"] = nics
        try:
            full = libvirt_xml.complete_domain_spec(wanted_spec)
            raw = libvirt_xml.domain_xml(full)
            wanted = libvirt_xml.normalise_xml(raw)
        except libvirt_xml.XmlSpecError as exc:
            raise HyperscalerError(str(exc), object={"kind": "domain", "name": name})
        info = {"uuid": full["uuid"], "macs": [n["mac"] for n in full["nics"]], "accelerator": full["accelerator"]}
        with guard("domain", name, "define"):
            if dom is None:
                self._record("domain", name, "define", "", wanted)
                if not self.check_mode:
                    dom = self.conn.defineXML(raw)
            else:
                before = libvirt_xml.normalise_xml(current)
                if before != wanted:
                    active = bool(dom.isActive())
                    note = None
                    if active:
                        note = "domain '%s' is running: the new definition applies at its next cold boot" % name
                        self.restart_required.append(name)
                    self._record("domain", name, "redefine", before, wanted, note=note)
                    if not self.check_mode:
                        dom = self.conn.defineXML(raw)
        info["running"] = bool(dom is not None and dom.isActive())
        self.domains[name] = info
        return dom

    def _undefine(self, dom):
        lv = self.libvirt
        flags = (lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | lv.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | lv.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | lv.VIR_DOMAIN_UNDEFINE_NVRAM)
        try:
            dom.undefineFlags(flags)
        except lv.libvirtError as exc:
            if exc.get_error_code() not in (lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_SUPPORT):
                raise
            dom.undefine()

    # -- run state
    def start_all(self, names):
        """Start the named (defined) domains in parallel; one error listing every failure."""
        to_start = [n for n in names if not self.domains.get(n, {}).get("running")]
        for n in to_start:
            self._record("domain", n, "start")
            self.domains.setdefault(n, {})["running"] = True
        if self.check_mode or not to_start:
            return

        def start(name):
            try:
                self.conn.lookupByName(name).create()
                return None
            except self.libvirt.libvirtError as exc:
                return map_libvirt_error(exc, "domain", name, "start").msg

        errors = {}
        for name, error in in_parallel(start, [(n, (n,)) for n in to_start]):
            errors[name] = error
            self.progress("%s %s (%d/%d)" % (name, "failed to start" if error else "started", len(errors), len(to_start)))
        failures = [errors[n] for n in to_start if errors[n]]
        if failures:
            raise HyperscalerError("%d of %d domains failed to start: %s" % (len(failures), len(to_start), "; ".join(failures)),
                                   failures=failures)

    def stop_all(self, names):
        """ACPI shutdown, then destroy whatever still runs after stop_timeout seconds."""
        running = [n for n in names if self.domains.get(n, {}).get("running")]
        for n in running:
            self._record("domain", n, "stop")
            self.domains[n]["running"] = False
        if self.check_mode or not running:
            return
        doms = {}
        for n in running:
            with guard("domain", n, "shut down"):
                doms[n] = self.conn.lookupByName(n)
                doms[n].shutdown()
        deadline = time.monotonic() + self.stop_timeout
        while any(d.isActive() for d in doms.values()) and time.monotonic() < deadline:
            self.sleep(1)
        for n, d in doms.items():
            if d.isActive():
                self.notes.append("domain '%s' ignored the shutdown request for %ss: powered off" % (n, self.stop_timeout))
                with guard("domain", n, "power off"):
                    d.destroy()

    def wait_ssh(self, targets, timeout):
        """targets: {name: (host, port)}; waits in parallel, raises naming every VM that stayed silent.

        Progress lines: one when a VM's SSH port answers (or gives up), and every report_every
        seconds the VMs still waited for.
        """
        if self.check_mode or not targets:
            return {}
        names = sorted(targets)
        start = last_report = self.clock()
        self.progress("waiting for SSH on %s (up to %s s)" % (", ".join(names), timeout))

        def still_waiting(pending):
            nonlocal last_report
            now = self.clock()
            if now - last_report >= self.report_every:
                last_report = now
                self.progress("still waiting for: %s (%d s)" % (", ".join(pending), now - start))

        answered = {}
        items = [(n, (targets[n][0], targets[n][1], timeout)) for n in names]
        for name, ok in in_parallel(self.ssh_wait, items, self.poll, still_waiting):
            answered[name] = bool(ok)
            self.progress("%s %s after %d s (%d/%d)" % (
                name, "up: SSH" if ok else "silent: no SSH", self.clock() - start, len(answered), len(names)))
        silent = sorted(n for n, ok in answered.items() if not ok)
        if silent:
            raise HyperscalerError("SSH did not answer within %ss on: %s" % (
                timeout, ", ".join("%s (%s:%s)" % (n, targets[n][0], targets[n][1]) for n in silent)), silent=silent)
        return answered


def ssh_targets(domains, networks):
    """{domain name: (host, port)}: the spec's ssh_host, else its static DHCP entry (by MAC or name)."""
    by_mac, by_name = {}, {}
    for net in networks or []:
        for host in net.get("hosts") or []:
            by_mac[str(host.get("mac", "")).lower()] = host.get("ip")
            by_name[host.get("name")] = host.get("ip")
    targets = {}
    for spec in domains or []:
        full = libvirt_xml.complete_domain_spec(spec)
        host = spec.get("ssh_host")
        if not host:
            for nic in full["nics"]:
                host = by_mac.get(nic["mac"])
                if host:
                    break
        host = host or by_name.get(full["name"])
        if not host:
            raise HyperscalerError("cannot wait for SSH on domain '%s': no ssh_host and no static DHCP entry "
                                   "for its MAC or name" % full["name"])
        targets[full["name"]] = (host, int(spec.get("ssh_port") or 22))
    return targets


def check_specs(conn, networks, domains):
    """Validate every spec before anything changes, so a bad field cannot leave a half-converged cluster.

    Catches what libvirt would accept now and fail on later: malformed addresses (a network host's
    ``ip``, MACs, UUIDs) and, when the run defines networks, NICs on networks that neither it defines
    nor libvirt has (a run without networks attaches to networks managed elsewhere, as before).
    """
    for kind, items, complete in (("network", networks, libvirt_xml.complete_network_spec),
                                  ("domain", domains, libvirt_xml.complete_domain_spec)):
        for spec in items:
            try:
                complete(spec)
            except libvirt_xml.XmlSpecError as exc:
                raise HyperscalerError(str(exc), object={"kind": kind, "name": spec.get("name")})
    defined = [n.get("name") for n in networks]
    existing = {}
    for spec in domains if defined else ():
        for index, nic in enumerate(spec.get("nics") or []):
            net = nic.get("network")
            if net in defined:
                continue
            if net not in existing:
                existing[net] = _lookup_network(conn, net) is not None
            if not existing[net]:
                raise HyperscalerError(
                    "domain '%s' nic %d: network '%s' is neither defined by this task (networks: %s) nor present in "
                    "libvirt; add it to networks or attach the NIC to one of those"
                    % (spec.get("name"), index, net, ", ".join(sorted(defined)) or "none"),
                    object={"kind": "domain", "name": spec.get("name")})


def _lookup_network(conn, name):
    libvirt = import_libvirt()
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None
        raise map_libvirt_error(exc, "network", name, "look up")


def converge(conn, state="present", networks=None, pool=None, domains=None, check_mode=False,
             owner_prefix=DEFAULT_OWNER_PREFIX, wait_ssh=False, ssh_timeout=300, ssh_wait=None, stop_timeout=60,
             progress=None):
    """Converge everything; returns a dict: changed, changes, domains, networks, notes, skipped, ...

    Order: pool, overlays, networks, domain definitions, then run state (parallel starts);
    absent goes the other way round (domains first, the pool last). Domain starts and the SSH wait
    report through progress(line) (default: module_utils/progress.py, shown by the progress callback).
    """
    if state not in STATES:
        raise HyperscalerError("state must be one of %s, not '%s'" % (", ".join(STATES), state))
    networks, domains = list(networks or []), list(domains or [])
    for kind, items in (("network", networks), ("domain", domains)):
        names = [i.get("name") for i in items]
        dupes = sorted(set(n for n in names if names.count(n) > 1))
        if dupes:
            raise HyperscalerError("%s names must be unique, repeated: %s" % (kind, ", ".join(map(str, dupes))))
    if state != "absent":
        check_specs(conn, networks, domains)
    c = Converger(conn, check_mode=check_mode, owner_prefix=owner_prefix, ssh_wait=ssh_wait, stop_timeout=stop_timeout,
                  progress=progress)
    names = [d["name"] for d in domains]
    if state == "absent":
        for spec in domains:
            c.domain(spec, state)
        if pool:
            p = c._lookup("pool", pool["name"], conn.storagePoolLookupByName)
            if p is not None:
                for spec in domains:
                    c.volume(p, pool, spec, state)
            c.pool(pool, state)
        for spec in networks:
            c.network(spec, state)
    else:
        p = c.pool(pool, state) if pool else None
        for spec in domains:
            c.volume(p, pool, spec, state)
        for spec in networks:
            c.network(spec, state)
        for spec in domains:
            c.domain(spec, state)
        if state == "running":
            c.start_all(names)
        elif state == "stopped":
            c.stop_all(names)
    ssh = {}
    if wait_ssh and state == "running":
        ssh = c.wait_ssh(ssh_targets(domains, networks), ssh_timeout)
    return {
        "changed": bool(c.changes),
        "changes": c.changes,
        "domains": c.domains,
        "networks": c.networks,
        "notes": c.notes,
        "skipped": c.skipped,
        "restart_required": c.restart_required,
        "ssh": ssh,
    }
