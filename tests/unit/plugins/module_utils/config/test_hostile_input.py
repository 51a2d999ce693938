"""One regression test per class of hostile cluster.yaml found by fuzzing (issue 10).

Each asserts the one clear issue: its path (with the YAML line where the file gives one) and what
would be valid; none may raise anything but ConfigError, none may take long (the fuzz test bounds it).
"""
import pytest

from helpers import repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as cm
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import yaml_loader as config_yaml

with open(repo_path("config", "minimal.yml")) as _handle:
    MINIMAL = _handle.read()


def minimal_with(old, new, count=1):
    assert MINIMAL.count(old) == count, old
    return MINIMAL.replace(old, new)


def rejected(text, source="cluster.yaml"):
    with pytest.raises(cm.ConfigError) as exc:
        cm.parse_cluster_config(text, source)
    return exc.value.issues


def the_issue(text):
    issues = rejected(text)
    assert len(issues) == 1, issues
    return issues[0]


# ----------------------------------------------------------------- reading the file

def test_a_file_that_is_not_utf8_names_line_and_column(tmp_path):
    bad = tmp_path / "cluster.yaml"
    bad.write_bytes(MINIMAL.encode().replace(b"name: lab", b"name: l\xe4b"))
    with pytest.raises(cm.ConfigError) as exc:
        cm.load_cluster_config(str(bad))
    issue, = exc.value.issues
    assert issue.path == "line 5, column 10" and issue.line == 5
    assert "not UTF-8" in issue.message and "0xe4" in issue.message
    assert str(bad) in str(exc.value)


def test_a_utf8_byte_order_mark_is_accepted():
    assert cm.parse_cluster_config(b"\xef\xbb\xbf" + MINIMAL.encode()).name == "lab"


def test_a_directory_or_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    issue, = pytest.raises(cm.ConfigError, cm.load_cluster_config, str(tmp_path)).value.issues
    assert "cannot read the file" in issue.message and "directory" in issue.message
    huge = tmp_path / "huge.yml"
    huge.write_bytes(b"#" * (config_yaml.MAX_BYTES + 10))
    issue, = pytest.raises(cm.ConfigError, cm.load_cluster_config, str(huge)).value.issues
    assert "a cluster.yaml is a few KiB" in issue.message


def test_deep_nesting_is_refused_before_python_recursion():
    issue = the_issue(MINIMAL + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert issue.path.startswith("line 25, column") and "nested more than 64 levels" in issue.message


def test_a_recursive_alias_and_an_alias_bomb_are_refused():
    issue = the_issue(MINIMAL + "loop: &loop [*loop]\n")
    assert issue.path.startswith("loop[0][0]") and "recursive alias" in issue.message
    assert len(issue.path) < 120  # the path of a cycle is cut short, not printed 64 levels long
    bomb = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += ["b%d: &b%d [%s]" % (n, n, ", ".join(["*b%d" % (n - 1)] * 10)) for n in range(1, 9)]
    issue = the_issue(MINIMAL + "\n".join(bomb) + "\n")
    assert "more than 50000 values" in issue.message


def test_control_characters_and_python_tags_name_their_position():
    issue = the_issue(MINIMAL.replace("name: lab", "name: l\x00ab"))
    assert issue.path == "line 5, column 10" and "control character #x0000" in issue.message
    issue = the_issue(MINIMAL.replace("name: lab", "name: !!python/object:os.system lab"))
    assert issue.path.startswith("line 5") and "could not determine a constructor" in issue.message


def test_a_number_with_thousands_of_digits():
    assert "thousands of digits" in the_issue(MINIMAL + "big: " + "9" * 5000 + "\n").message


# ----------------------------------------------------------------- exact YAML

def test_duplicate_keys_are_refused_naming_both_lines():
    text = minimal_with("      max_job_time: \"01:00:00\"", "      max_job_time: \"01:00:00\"\n      max_job_time: \"9\"")
    issue = the_issue(text)
    assert issue.path == "clusters.hpc.slurm_config.max_job_time" and issue.line == 25
    assert "duplicate key 'max_job_time': first at line 24, column 7, again at line 25, column 7" in issue.message


def test_duplicate_keys_in_a_flow_mapping_name_their_columns():
    issue = the_issue(minimal_with("memory_gb: 1, disk_gb: 8, ip_address",
                                   "memory_gb: 24, memory_gb: 999, disk_gb: 8, ip_address"))
    assert issue.path == "clusters.hpc.controller.memory_gb"
    assert "first at line 19, column 32, again at line 19, column 47" in issue.message


def test_a_duplicated_address_key_is_refused():
    text = minimal_with('ip_address: "192.168.100.10"}', 'ip_address: "192.168.100.10", ip_address: "192.168.100.12"}')
    assert "duplicate key 'ip_address'" in the_issue(text).message


def test_merge_keys_may_be_overridden():
    text = minimal_with("    controller: {cpu_cores: 1, memory_gb: 1, disk_gb: 8, ip_address: \"192.168.100.10\"}",
                        "    controller: {<<: {cpu_cores: 1, memory_gb: 2, disk_gb: 8}, memory_gb: 1,"
                        " ip_address: \"192.168.100.10\"}")
    assert cm.parse_cluster_config(text).node("hpc-controller").memory_gb == 1


@pytest.mark.parametrize("key, kind", [("5", "a number"), ("yes", "a boolean"), ("~", "null"), ("1.5", "a number")])
def test_a_key_that_yaml_reads_as_not_text(key, kind):
    issue = the_issue(minimal_with("    hpc_network: {", "    %s: {" % key))
    assert issue.path == "global.networks.%s" % key and issue.line == 9
    assert "read as %s" % kind in issue.message and "quote it ('%s')" % key in issue.message


def test_a_non_string_key_in_data_given_directly():
    raw = cm.parse_cluster_config(MINIMAL).data
    raw["global"]["networks"] = {5: raw["global"]["networks"]["hpc_network"]}
    with pytest.raises(cm.ConfigError) as exc:
        cm.build_cluster_config(raw)
    issue, = exc.value.issues
    assert issue.path == "global.networks.5" and "the key 5 is a number, not text" in issue.message


def test_an_empty_key_has_a_path():
    issue = the_issue(MINIMAL + '"": 1\n')
    assert issue.path == '""' and "unknown key ''" in issue.message


# ----------------------------------------------------------------- numbers

@pytest.mark.parametrize("old, new, path, fragment", [
    ("count: 2,", "count: 2.0,", "clusters.hpc.compute_nodes.count", "2.0 is not an integer; write 2"),
    ("controller: {cpu_cores: 1,", "controller: {cpu_cores: 2.0,", "clusters.hpc.controller.cpu_cores",
     "2.0 is not an integer; write 2"),
    ("disk_gb: 8, ip_range", "disk_gb: .inf, ip_range", "clusters.hpc.compute_nodes.disk_gb",
     "inf is not a finite number"),
    ("memory_gb: 1, disk_gb: 8, ip_address", "memory_gb: .nan, disk_gb: 8, ip_address",
     "clusters.hpc.controller.memory_gb", "nan is not a finite number"),
    ("memory_gb: 24,", "memory_gb: -.inf,", "hypervisor.hosts[0].capacity.memory_gb", "-inf is not a finite number"),
    ("memory_gb: 1, disk_gb: 8, ip_address", "memory_gb: 1.0e+308, disk_gb: 8, ip_address",
     "clusters.hpc.controller.memory_gb", "out of range; must be between 0.5 and 4096"),
])
def test_numbers_that_are_not_what_the_field_takes(old, new, path, fragment):
    issues = rejected(minimal_with(old, new))
    assert [i.path for i in issues] == [path]
    assert fragment in issues[0].message and issues[0].line is not None


def test_sizes_the_schema_rejects_are_never_iterated():
    # Each would take minutes (or all memory) if a check walked it before the rejection.
    issue = the_issue(minimal_with("count: 2,", "count: 100000000000,"))
    assert issue.path == "clusters.hpc.compute_nodes.count" and "between 0 and 4096" in issue.message
    issue = the_issue(minimal_with('ip_range: "192.168.100.11-12"', 'ip_range: "10.0.0.1-10.255.255.254"'))
    assert issue.path == "clusters.hpc.compute_nodes.ip_range"
    assert "holds 16777214 addresses; a node group has at most 4096 nodes" in issue.message


def test_null_clusters():
    issue = the_issue(MINIMAL.split("clusters:")[0] + "clusters:\n")
    assert issue.path == "clusters" and "must be of type object, got None" in issue.message


def test_an_empty_file_and_a_list():
    assert "the file is empty" in the_issue("").message
    assert "the file holds a list" in the_issue("- a\n").message


# ----------------------------------------------------------------- accepted though wrong, before

@pytest.mark.parametrize("bridge, what", [("lo", "loopback"), ("virbr0", "libvirt's own 'default' network"),
                                          ("docker0", "Docker")])
def test_bridges_of_the_host_or_other_tools(bridge, what):
    issue = the_issue(minimal_with('bridge: "hsbr-hpc"', "bridge: %s" % bridge))
    assert issue.path == "global.networks.hpc_network.bridge" and what in issue.message


def test_an_hpc_cluster_without_compute_nodes():
    issue = the_issue(minimal_with('count: 2, cpu_cores: 1, memory_gb: 1, disk_gb: 8, ip_range: "192.168.100.11-12"',
                                   "count: 0, cpu_cores: 1, memory_gb: 1, disk_gb: 8"))
    assert issue.path == "clusters.hpc.compute_nodes.count" and "at least 1 compute node" in issue.message


@pytest.mark.parametrize("value, fragment", [
    ("25:99:00", "minutes must be 0-59, got 99"),
    ("1-24", "hours after the days must be 0-23, got 24"),
    ("1-02:60", "minutes must be 0-59, got 60"),
    ("10:61", "seconds must be 0-59, got 61"),
])
def test_invalid_slurm_time_strings(value, fragment):
    issue = the_issue(minimal_with('"01:00:00"', '"%s"' % value))
    assert issue.path == "clusters.hpc.slurm_config.max_job_time"
    assert fragment in issue.message and "D-HH:MM:SS" in issue.message


@pytest.mark.parametrize("text, minutes", [("90", 90), ("00:75", None), ("05:30", 6), ("25:00:00", 1500),
                                           ("1-12", 2160), ("2-03:04:05", 3065), ("UNLIMITED", None)])
def test_slurm_time_minutes(text, minutes):
    if text == "00:75":
        with pytest.raises(ValueError, match="seconds must be 0-59"):
            cm.slurm_time_minutes(text)
    else:
        assert cm.slurm_time_minutes(text) == minutes


def test_partition_max_time_and_nodes_listed_twice():
    text = minimal_with('partitions: ["compute", "debug"]',
                        'partitions: [{name: compute, max_time: "00:75"},'
                        ' {name: debug, nodes: [hpc-compute-01, hpc-compute-02, hpc-compute-01]}]')
    issues = rejected(text)
    assert [(i.path, i.line) for i in issues] == [("clusters.hpc.slurm_config.partitions[0].max_time", 22),
                                                  ("clusters.hpc.slurm_config.partitions[1].nodes", 22)]
    assert "seconds must be 0-59, got 75" in issues[0].message
    assert "lists hpc-compute-01 more than once" in issues[1].message


def test_a_partition_that_selects_no_node():
    issue = the_issue(minimal_with('partitions: ["compute", "debug"]', 'partitions: ["compute", {name: gpu, nodes: gpu}]'))
    assert issue.path == "clusters.hpc.slurm_config.partitions[1].nodes"
    assert "selects no node: no compute node is GPU-enabled" in issue.message


def test_duplicate_qos_names_and_their_max_wall():
    text = minimal_with('max_job_time: "01:00:00"', 'max_job_time: "01:00:00"\n'
                        '      qos: [{name: normal}, {name: long, max_wall: "1-25"}, {name: normal}]')
    issues = rejected(text)
    assert [i.path for i in issues] == ["clusters.hpc.slurm_config.qos[1].max_wall",
                                        "clusters.hpc.slurm_config.qos[2].name"]
    assert "duplicate QoS 'normal' (also qos[0])" in issues[1].message


def test_a_base_image_that_does_not_exist(tmp_path):
    issue = the_issue(MINIMAL + "images:\n  hpc: {base_image: %s/none.qcow2}\n" % tmp_path)
    assert issue.path == "images.hpc.base_image" and "does not exist on this controller" in issue.message
    issue = the_issue(MINIMAL + "images:\n  hpc: {base_image: %s}\n" % tmp_path)
    assert "is not a regular file" in issue.message
    issue = the_issue(MINIMAL + "images:\n  hpc: {base_image: base.qcow2}\n")
    assert "is not valid" in issue.message and "absolute path" in issue.message
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"QFI\xfb")
    assert cm.parse_cluster_config(MINIMAL + "images:\n  hpc: {base_image: %s}\n" % image).name == "lab"


def test_the_same_problem_found_twice_is_reported_once():
    text = minimal_with("hpc_network: {", "other_network: {")
    issues = rejected(text)
    assert [i.path for i in issues] == ["clusters.hpc.network"]


def test_messages_cut_long_values_short():
    issue = the_issue(minimal_with("name: lab", "name: " + "x" * 5000))
    assert issue.path == "metadata.name" and len(issue.message) < 300


def _big(kind, n):
    """A file near the size bounds whose work a quadratic check would turn into a hang."""
    if kind == "hosts":
        hosts = "".join("    - {name: h%d, capacity: {cpu_cores: 1, memory_gb: 1}}\n" % i for i in range(n))
        return minimal_with("  accelerator: auto\n", hosts + "  accelerator: auto\n")
    if kind == "networks":
        nets = "".join('    n%d: {subnet: "10.%d.%d.0/24", bridge: "b%d"}\n' % (i, i // 256 % 256, i % 256, i)
                       for i in range(n))
        return minimal_with("  networks:\n", "  networks:\n" + nets)
    if kind == "partition-nodes":
        return minimal_with('partitions: ["compute", "debug"]',
                            'partitions: [{name: compute, nodes: [%s]}]' % ", ".join(["hpc-compute-01"] * n))
    if kind == "overrides":
        overrides = ", ".join("hpc-compute-%02d: {cpu_cores: 1}" % i for i in range(n))
        return minimal_with('ip_range: "192.168.100.11-12"', 'ip_range: "192.168.100.11-12", overrides: {%s}' % overrides)
    if kind == "unknown-keys":
        return MINIMAL + "".join("unknown_%d: 1\n" % i for i in range(n))
    raise ValueError(kind)


@pytest.mark.parametrize("kind, n", [("hosts", 4000), ("networks", 4000), ("partition-nodes", 15000),
                                     ("overrides", 7000), ("unknown-keys", 15000)])
def test_large_documents_end_in_a_bounded_answer(kind, n):
    import config_fuzz
    text = _big(kind, n).encode()
    assert len(text) < config_yaml.MAX_BYTES
    # A hang guard, not a timing target (benchmarks/fuzz_config.py measures): minutes would mean quadratic work.
    assert config_fuzz.check(text, seconds=60) is None
    issues = rejected(text)
    assert len(issues) <= cm.MAX_REPORTED_ISSUES + 1
    assert any("at most" in i.message or "more problems not listed" in i.message for i in issues), issues[:3]


def test_a_bad_byte_after_a_byte_order_mark_is_placed_right():
    issue = the_issue(b"\xef\xbb\xbfversion: \"1.0\"\nmetadata: {name: l\xe4b}\n")
    assert issue.path == "line 2, column 19"
