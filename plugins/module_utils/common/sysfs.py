# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Tolerant reads of sysfs/procfs trees: a missing entry is an answer ("none"), not an error."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os


def read_text(path, default=None):
    """The whole text of a file, or ``default`` when it is missing or unreadable.

    Decoded leniently: kernel logs and hand-written config files may hold any bytes.
    """
    try:
        with io.open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def read_attr(path, default=None):
    """A sysfs attribute's value (stripped), or ``default`` when the attribute does not exist."""
    text = read_text(path)
    return default if text is None else text.strip()


def link_basename(path):
    """Basename of a symlink's target (e.g. a device's driver or iommu_group), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def listdir_sorted(path):
    """Sorted entries of a directory, or [] when it does not exist or cannot be read."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
