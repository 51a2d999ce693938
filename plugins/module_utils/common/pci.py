# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""PCI addresses, read one way everywhere: NVML's '00000000:65:00.0', sysfs' '0000:65:00.0', '65:00.0'."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_ADDRESS_RE = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def pci_address_parts(value):
    """(domain, bus, slot, function) as ints, or None when ``value`` is not a PCI address."""
    match = _ADDRESS_RE.match(str(value or "").strip())
    if not match:
        return None
    domain, bus, slot, function = match.groups()
    return int(domain or "0", 16), int(bus, 16), int(slot, 16), int(function)


def normalize_bus_id(value):
    """Any accepted form -> '0000:65:00.0' (sysfs' form, lower case); None if not a PCI address."""
    parts = pci_address_parts(value)
    return None if parts is None else "%04x:%02x:%02x.%d" % parts
