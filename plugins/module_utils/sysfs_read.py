# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Tolerant reads of sysfs/procfs trees: a missing entry is an answer ("none"), not an error."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


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
