# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Filter qos_test_partitions: for each QoS with a MaxWall, a partition where a job can exceed it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def _minutes(item, key, what):
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnsibleFilterError("qos_test_partitions: %s %r has %s %r, expected whole minutes or none"
                                 % (what, item.get("name"), key, value))
    return value


def qos_test_partitions(qos_settings, partition_details, groups):
    """``{qos name: partition name}`` for every QoS with ``max_wall_minutes``.

    The partition is the first of ``partition_details`` whose inventory group exists (it has nodes) and
    whose own MaxTime is over the QoS's MaxWall (or unlimited), so that a job one minute over the MaxWall is
    refused by the QoS and not by the partition. A QoS without such a partition is left out.
    """
    for arg, name in ((qos_settings, "qos_settings"), (partition_details, "partition_details")):
        if arg is not None and (isinstance(arg, (str, dict)) or not isinstance(arg, (list, tuple))):
            raise AnsibleFilterError("qos_test_partitions: %s must be a list of mappings, got %r" % (name, arg))
    result = {}
    for qos in qos_settings or []:
        wall = _minutes(qos, "max_wall_minutes", "QoS")
        if wall is None:
            continue
        for part in partition_details or []:
            max_time = _minutes(part, "max_time_minutes", "partition")
            if part.get("group") in (groups or {}) and (max_time is None or max_time > wall):
                result[qos["name"]] = part["name"]
                break
    return result


class FilterModule(object):
    def filters(self):
        return {"qos_test_partitions": qos_test_partitions}
