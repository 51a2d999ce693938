# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The MIG layout state file a boot-time unit re-applies (MIG instances do not survive a reboot).

:func:`save_layout` merges and writes it only when its content changes; :func:`load_layout` refuses
a file that is not a layout document, naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import (
    check_writable, file_label, read_json_object, write_text)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


DEFAULT_PERSIST_PATH = "/etc/aihow-hyperscaler/mig-layout.json"
LAYOUT_FILE_VERSION = 1


# ================================================================= state file
def layout_document(layouts):
    """The persisted form: enough to re-create the layout at boot (no ids)."""
    gpus = []
    for lay in layouts:
        if not lay["mig_capable"]:
            continue
        gpus.append({"pci_address": lay["pci_address"], "model": lay["model"],
                     "mig_enabled": bool(lay["mig_pending"]) if lay.get("mig_pending") is not None
                     else lay["mig_enabled"],
                     "instances": [{"profile": i["profile"], "start": i["start"], "size": i["size"],
                                    "compute_instances": [c["profile"] for c in i["compute_instances"]]}
                                   for i in sorted(lay["instances"], key=lambda i: i["start"])]})
    return {"version": LAYOUT_FILE_VERSION, "gpus": sorted(gpus, key=lambda g: g["pci_address"])}


def render_document(doc):
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def save_layout(path, doc, check_mode=False, what="persist_path"):
    """Write the state file when its content differs; returns True when it (would have) changed.

    GPUs in the file but not in ``doc`` are kept, so a run for some GPUs does not forget the others.
    A file that cannot be read is replaced; one that cannot be written fails naming ``what`` (the
    option), in check mode too, so check mode predicts the failure.
    """
    old = None
    if os.path.exists(path):
        try:
            old = load_layout(path, what)
        except HyperscalerError:
            old = None
    if old is None and not doc["gpus"]:
        return False  # nothing to re-apply at boot: no file needed
    merged = dict((g["pci_address"], g) for g in (old or {"gpus": []})["gpus"]
                  if isinstance(g, dict) and g.get("pci_address"))
    merged.update((g["pci_address"], g) for g in doc["gpus"])
    new = {"version": LAYOUT_FILE_VERSION, "gpus": [merged[k] for k in sorted(merged)]}
    if old == new:
        return False
    if check_mode:
        check_writable(path, what)
    else:
        write_text(path, render_document(new), what)
    return True


def load_layout(path, what="the MIG layout file"):
    """The saved layout document; HyperscalerError naming ``what`` and the path when it is unusable."""
    doc = read_json_object(path, what)  # StateFileError is a HyperscalerError naming the file
    if doc.get("version") != LAYOUT_FILE_VERSION or not isinstance(doc.get("gpus"), list):
        raise HyperscalerError("%s has no version %d gpus list (mig_partition writes it with persist_path)"
                               % (file_label(what, path), LAYOUT_FILE_VERSION))
    return doc
