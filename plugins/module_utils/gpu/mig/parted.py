# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""mig-parted configs: validated as mig-parted does (v1 only, unknown keys refused), entries matched to GPUs
by device-filter and devices, device counts turned into GPU-instance groups. Pure: no backend is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import (
    json_type, parse_json_object, read_text)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog


_FILTER_RE = re.compile(r"^0x[0-9a-fA-F]{8}(:0x[0-9a-fA-F]{8})?$")
_TOP_KEYS = ("version", "mig-configs")
_ENTRY_KEYS = ("device-filter", "devices", "mig-enabled", "mig-devices")


# ============================================================== mig-parted input
def _fail(msg, **details):
    raise HyperscalerError(msg, **details)


def validate_mig_parted(config, selected):
    """Check a mig-parted config like mig-parted does; return the selected entry list.

    Each entry comes back normalised: {'filters': [(device_id, subsystem_or_None)],
    'devices': 'all' | [int], 'enabled': bool, 'mig_devices': {name: count}, 'position': i}.
    """
    if not isinstance(config, dict):
        _fail("the MIG config must be a mapping with version and mig-configs")
    unknown = sorted(set(config) - set(_TOP_KEYS))
    if unknown:
        _fail("unknown key%s in the MIG config: %s (allowed: %s)"
              % ("s" if len(unknown) > 1 else "", ", ".join(map(str, unknown)), ", ".join(_TOP_KEYS)))
    if config.get("version") != "v1":
        _fail("MIG config version %r is not supported; only v1 is" % (config.get("version"),))
    configs = config.get("mig-configs")
    if not isinstance(configs, dict) or not configs:
        _fail("mig-configs must be a non-empty mapping of label -> list of entries")
    if selected not in configs:
        _fail("selected config %r is not in mig-configs (labels: %s)"
              % (selected, ", ".join(sorted(str(k) for k in configs))))
    entries = configs[selected]
    if not isinstance(entries, list) or not entries:
        _fail("mig-configs.%s must be a non-empty list of entries" % selected)
    out = []
    for pos, entry in enumerate(entries):
        where = "mig-configs.%s[%d]" % (selected, pos)
        if not isinstance(entry, dict):
            _fail("%s must be a mapping" % where)
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            _fail("%s: unknown key%s %s (allowed: %s)" % (where, "s" if len(unknown) > 1 else "",
                                                          ", ".join(map(str, unknown)), ", ".join(_ENTRY_KEYS)))
        filters = entry.get("device-filter", [])
        if isinstance(filters, str):
            filters = [filters]
        if not isinstance(filters, list):
            _fail("%s.device-filter must be a string or a list of strings" % where)
        parsed_filters = []
        for flt in filters:
            if not isinstance(flt, str) or not _FILTER_RE.match(flt.strip()):
                _fail("%s.device-filter %r is not of the form 0xDDDDVVVV[:0xSSSSVVVV]" % (where, flt))
            parts = flt.strip().split(":")
            parsed_filters.append((int(parts[0], 16), int(parts[1], 16) if len(parts) > 1 else None))
        if "devices" not in entry:
            _fail("%s: devices is required ('all' or a list of GPU indices)" % where)
        devices = entry["devices"]
        if devices != "all":
            if not isinstance(devices, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                        for d in devices):
                _fail("%s.devices must be 'all' or a list of GPU indices, not %r" % (where, devices))
        if "mig-enabled" not in entry:
            _fail("%s: mig-enabled is required" % where)
        enabled = entry["mig-enabled"]
        if not isinstance(enabled, bool):
            _fail("%s.mig-enabled must be true or false" % where)
        mig_devices = entry.get("mig-devices")
        if enabled and mig_devices is None:
            _fail("%s: mig-devices is required when mig-enabled is true ({} is allowed)" % where)
        mig_devices = mig_devices or {}
        if not isinstance(mig_devices, dict):
            _fail("%s.mig-devices must be a mapping of MIG device name -> count" % where)
        if not enabled and mig_devices:
            _fail("%s: mig-devices must be empty when mig-enabled is false" % where)
        for name, count in mig_devices.items():
            try:
                gpu_catalog.parse_mig_device_name(str(name))
            except ValueError as exc:
                _fail("%s.mig-devices: %s" % (where, exc))
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                _fail("%s.mig-devices.%s: count must be an integer >= 0, not %r" % (where, name, count))
        if mig_devices and not any(mig_devices.values()):
            _fail("%s.mig-devices: all counts are zero; use {} for no MIG devices" % where)
        out.append({"filters": parsed_filters, "devices": devices, "enabled": enabled,
                    "mig_devices": dict((str(k), v) for k, v in mig_devices.items() if v), "position": pos})
    return out


def load_mig_parted_file(path, what="mig_config_file"):
    """A mig-parted config file (YAML or JSON, UTF-8) as a mapping; HyperscalerError naming ``what`` and the file."""
    text = read_text(path, what)  # StateFileError is a HyperscalerError naming the option and file
    try:
        import yaml  # PyYAML ships with ansible-core
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
            raise HyperscalerError("%s: %s is not valid YAML%s: %s"
                                   % (what, path, where, getattr(exc, "problem", None) or exc))
    else:
        config = parse_json_object(text, path, what)
    if not isinstance(config, dict):
        raise HyperscalerError("%s: %s must hold a mig-parted config mapping (version: v1, mig-configs: ...), not %s"
                               % (what, path, json_type(config)))
    return config


def entry_matches(entry, index, pci):
    if entry["devices"] != "all" and index not in entry["devices"]:
        return False
    if not entry["filters"]:
        return True
    for device_id, subsystem in entry["filters"]:
        if device_id == pci["device_id"] and (subsystem is None or subsystem == pci.get("subsystem_id")):
            return True
    return False


def gi_groups_from_mig_devices(model, mig_devices, where):
    """mig-parted device counts -> [(gi profile name, [compute slices of each CI])].

    Flattened like mig-parted (G descending, then C descending); consecutive
    entries with the same GI profile reuse the GI while its compute slices last,
    so ``"1c.2g.20gb": 2`` is one 2g GI with two 1c CIs.
    """
    flat = []
    for name, count in mig_devices.items():
        gi_name, c = gpu_catalog.parse_mig_device_name(name)
        prof = model.profile(gi_name)
        if prof is None:
            _fail("%s: %s has no MIG profile %s (valid: %s)" % (where, model.name, gi_name, ", ".join(model.profile_names())))
        c = c or prof.compute_slices
        shapes = [s.compute_slices for s in model.ci_profiles(prof)]
        if c not in shapes:
            _fail("%s: %s is not a valid compute instance of a %s GPU instance (valid: %s)"
                  % (where, name, gi_name, ", ".join(ci_name(prof, s) for s in shapes)))
        flat.extend([(prof, c)] * count)
    flat.sort(key=lambda pc: (-pc[0].compute_slices, -pc[1], pc[0].name))
    groups = []
    for prof, c in flat:
        last = groups[-1] if groups else None
        if last and last[0] is prof and c < prof.compute_slices and \
                sum(last[1]) + c <= prof.compute_slices and all(x < prof.compute_slices for x in last[1]):
            last[1].append(c)
        else:
            groups.append((prof, [c]))
    return [(prof.name, sorted(cs, reverse=True)) for prof, cs in groups]


def ci_name(gi_prof, c):
    if c == gi_prof.compute_slices:
        return gi_prof.name
    base = gi_prof.name
    return "%dc.%s" % (c, base)


def _entry_text(entry):
    filters = ["0x%08X%s" % (d, ":0x%08X" % sub if sub is not None else "") for d, sub in entry["filters"]]
    devices = entry["devices"] if entry["devices"] == "all" else "[%s]" % ", ".join(map(str, entry["devices"]))
    return "device-filter %s, devices %s" % ("[%s]" % ", ".join(filters) if filters else "(none)", devices)


def unmatched_entries(entries, selected, gpus):
    """Entries that select no GPU of ``gpus`` ([(index, pci_info)]), as returned to the user."""
    out = []
    for e in entries:
        if not any(entry_matches(e, index, pci) for index, pci in gpus):
            out.append({"entry": "mig-configs.%s[%d]" % (selected, e["position"]), "selects": _entry_text(e)})
    return out
