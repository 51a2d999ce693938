# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Stable identities derived from names, so re-runs and rebuilds give the same ids.

A VM's MAC, a vGPU's mdev UUID or a domain UUID must not change between runs:
guests keep their DHCP leases, libvirt XML stays equal (no spurious drift) and
mdevctl definitions keep their file names. All are name-based (UUIDv5 / hash).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import uuid

# Fixed namespace for every id this collection derives (uuid5 of the collection name).
HYPERSCALER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "hyperscaler.aihow")
# The two clusters a cluster.yaml may define, in the order everything lists them.
CLUSTERS = ("hpc", "cloud")
# Name prefix of the libvirt networks and pools the collection owns (they carry no metadata to mark them).
OWNER_PREFIX = "hs-"


def _key(parts):
    if not parts:
        raise ValueError("a stable id needs at least one name part")
    return "/".join(str(p) for p in parts)


def stable_uuid(*parts):
    """UUIDv5 (hyphenated string) of the joined name parts, e.g. ('lab', 'hpc-compute-01', 0)."""
    return str(uuid.uuid5(HYPERSCALER_NAMESPACE, _key(parts)))


def stable_mac(*parts):
    """A locally administered unicast MAC in QEMU's 52:54:00 range, derived from the name parts."""
    digest = hashlib.sha256(_key(parts).encode("utf-8")).digest()
    return "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])


def mdev_uuid(cluster, vm_name, index):
    """The UUID of a VM's ``index``-th vGPU (mdev): vgpu_mdev creates it, the VM's XML refers to it."""
    return stable_uuid(cluster, vm_name, index)
