"""hpc_verify.yml's choice of a partition for each QoS limit check."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aihow.hyperscaler.plugins.filter.qos_test_partitions import (
    FilterModule, qos_test_partitions)

GROUPS = {"all": [], "hpc_partition_debug": ["n1"], "hpc_partition_batch": ["n2"]}
QOS = [{"name": "normal", "max_wall_minutes": None}, {"name": "short", "max_wall_minutes": 10}]


def part(name, max_time, group=None):
    return {"name": name, "group": group or "hpc_partition_" + name, "max_time_minutes": max_time}


def test_the_first_partition_with_nodes_whose_max_time_is_over_the_max_wall():
    parts = [part("debug", 10), part("batch", 30)]
    assert qos_test_partitions(QOS, parts, GROUPS) == {"short": "batch"}


def test_an_unlimited_partition_qualifies():
    assert qos_test_partitions(QOS, [part("debug", None)], GROUPS) == {"short": "debug"}


def test_a_partition_without_nodes_is_passed_over():
    parts = [part("gpu", None), part("debug", 11)]
    assert qos_test_partitions(QOS, parts, GROUPS) == {"short": "debug"}


def test_a_qos_without_a_usable_partition_is_left_out():
    assert qos_test_partitions(QOS, [part("debug", 10), part("gpu", None)], GROUPS) == {}


def test_no_qos_or_no_partitions():
    assert qos_test_partitions(None, [part("debug", None)], GROUPS) == {}
    assert qos_test_partitions(QOS, None, GROUPS) == {}


@pytest.mark.parametrize("qos,parts,match", [
    ("short", [], "qos_settings must be a list"),
    (QOS, {"debug": 1}, "partition_details must be a list"),
    ([{"name": "short", "max_wall_minutes": "10"}], [], "QoS 'short' has max_wall_minutes '10'"),
    (QOS, [part("debug", True)], "partition 'debug' has max_time_minutes True"),
])
def test_bad_input_names_what_is_wrong(qos, parts, match):
    with pytest.raises(AnsibleFilterError, match=match):
        qos_test_partitions(qos, parts, GROUPS)


def test_registered_under_its_name():
    assert FilterModule().filters()["qos_test_partitions"] is qos_test_partitions
