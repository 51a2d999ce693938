"""Slurm output parsers and the textfile of the Slurm collector (plugins/module_utils/monitoring/slurm.py).

The inputs under tests/unit/data/monitoring/ are in the format of Slurm 22.05 (Debian 12): scontrol --oneliner
show node|job, squeue --format=%i|%P|%T, sinfo --format=%R, scontrol ping. Those under recorded/ are a live Slurm's
(tests/monitoring/record-slurm-samples.sh); the others are hand-written for states one node cannot show. Molecule's slurm scenario runs the
collector on a live slurmctld and checks the values in Prometheus.
"""
import ast
import os

import pytest

from helpers import repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.monitoring import slurm


def data(name):
    with open(repo_path("tests", "unit", "data", "monitoring", name)) as handle:
        return handle.read()


def test_oneliner_values_with_spaces_and_equals():
    rec = slurm.parse_oneliner("NodeName=n1 OS=Linux 6.1.0 #1 SMP (2024-11-01)  RealMemory=768 AllocTRES= "
                               "CfgTRES=cpu=2,mem=768M Reason=Not responding [slurm@2026-12-02T10:40:00]")
    assert rec == {"NodeName": "n1", "OS": "Linux 6.1.0 #1 SMP (2024-11-01)", "RealMemory": "768",
                   "AllocTRES": "", "CfgTRES": "cpu=2,mem=768M", "Reason": "Not responding [slurm@2026-12-02T10:40:00]"}


def test_oneliner_keys_with_colons_and_slashes():
    rec = slurm.parse_oneliner("JobId=1 AllocNode:Sid=h:12 CPUs/Task=1 ReqB:S:C:T=0:0:*:* Power=")
    assert rec["AllocNode:Sid"] == "h:12" and rec["CPUs/Task"] == "1" and rec["ReqB:S:C:T"] == "0:0:*:*"
    assert rec["Power"] == ""


def test_nodes():
    nodes = slurm.parse_nodes(data("scontrol-show-node.txt"))
    assert [n["name"] for n in nodes] == ["hpc-compute-01", "hpc-compute-02", "hpc-compute-03"]
    first, drained, down = nodes
    assert (first["state"], first["flags"]) == ("mixed", [])
    assert (first["cpus_total"], first["cpus_alloc"]) == (2, 1)
    assert (first["memory_bytes"], first["memory_alloc_bytes"]) == (768 << 20, 768 << 20)
    assert first["partitions"] == ["batch", "gpu"]
    assert (drained["state"], drained["flags"]) == ("idle", ["drain"])
    assert drained["reason"] == "disk check [root@2026-12-02T10:30:00]"
    assert (down["state"], down["flags"]) == ("down", ["not_responding"])


@pytest.mark.parametrize("text, base, flags", [
    ("IDLE", "idle", set()),
    ("down*", "down", {"not_responding"}),
    ("IDLE+DRAIN", "idle", {"drain"}),
    ("ALLOCATED+DRAIN+COMPLETING", "allocated", {"drain", "completing"}),
    ("idle~", "idle", {"powered_down"}),
    ("drained*", "drained", {"not_responding"}),
    ("MIXED+MAINT$", "mixed", {"maint"}),
])
def test_node_states(text, base, flags):
    assert slurm.split_node_state(text) == (base, flags)


def test_empty_state_is_refused():
    with pytest.raises(slurm.SlurmParseError):
        slurm.split_node_state("*")


def test_running_jobs_only_with_their_tres():
    jobs = slurm.parse_running_jobs(data("scontrol-show-job.txt"))
    assert [j["job_id"] for j in jobs] == ["7", "9"]
    train, arr = jobs
    assert train == {"job_id": "7", "name": "train", "user": "hyperscaler", "partition": "gpu",
                     "nodes": "hpc-compute-01", "cpus": 1, "memory_bytes": 768 << 20, "gpus": 1}
    assert (arr["memory_bytes"], arr["gpus"]) == (int(1.5 * (1 << 30)), 0)


def test_no_jobs():
    assert slurm.parse_running_jobs("No jobs in the system\n") == []


def test_garbage_is_refused():
    with pytest.raises(slurm.SlurmParseError):
        slurm.parse_nodes("slurm_load_node error: Unable to contact slurm controller\n")
    with pytest.raises(slurm.SlurmParseError):
        slurm.parse_queue("JOBID PARTITION STATE\n")
    with pytest.raises(slurm.SlurmParseError):
        slurm.parse_tres("cpu=1,mem")
    with pytest.raises(slurm.SlurmParseError):
        slurm.parse_memory_bytes("lots")


@pytest.mark.parametrize("text, expected", [
    ("768M", 768 << 20), ("2G", 2 << 30), ("1536", 1536 << 20), ("512K", 512 << 10), ("0.50G", 1 << 29), ("1T", 1 << 40),
])
def test_memory(text, expected):
    assert slurm.parse_memory_bytes(text) == expected


def test_tres_total_gpus_not_typed_ones():
    assert slurm.parse_tres("cpu=2,mem=1G,node=1,gres/gpu=2,gres/gpu:1g.10gb=2") == {
        "cpus": 2, "memory_bytes": 1 << 30, "gpus": 2}
    assert slurm.parse_tres("(null)") == {"cpus": 0, "memory_bytes": 0, "gpus": 0}


def test_queue_counts_each_partition_of_a_pending_job():
    assert slurm.parse_queue(data("squeue.txt")) == {
        ("gpu", "running"): 1, ("batch", "pending"): 2, ("gpu", "pending"): 1, ("batch", "running"): 1,
        ("batch", "completing"): 1}


def test_partitions_in_order_once():
    assert slurm.parse_partitions(data("sinfo-partitions.txt")) == ["batch", "gpu"]


def test_ping():
    assert slurm.parse_ping(data("scontrol-ping-up.txt"), 0) == [("hpc-controller", True)]
    assert slurm.parse_ping(data("scontrol-ping-down.txt"), 1) == [("hpc-controller", False)]
    assert slurm.parse_ping("scontrol: error: s_p_parse_file: unable to read slurm.conf", 1) == []


def _samples(text):
    """{(name, frozenset(labels)): value} of an exposition text, with HELP/TYPE checked once per family."""
    out, typed = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, "TYPE twice for %s" % name
            typed.append(name)
            continue
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _sep, labels = series.partition("{")
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.rstrip("}").split('",') if p) if labels else frozenset()
        pairs = frozenset((k, v.strip('"')) for k, v in pairs)
        assert name in typed, "%s before its TYPE" % name
        out[(name, pairs)] = float(value)
    return out


def test_render_everything():
    text = slurm.render(
        "lab", [("hpc-controller", True)], nodes=slurm.parse_nodes(data("scontrol-show-node.txt")),
        queue=slurm.parse_queue(data("squeue.txt")), partitions=["batch", "gpu", "debug"],
        jobs=slurm.parse_running_jobs(data("scontrol-show-job.txt")), now=1700000000.5, duration=0.25)
    s = _samples(text)

    def get(name, **labels):
        return s[("hyperscaler_slurm_" + name, frozenset(dict(labels, slurm_cluster="lab").items()))]

    assert get("controller_up") == 1 and get("controller_host_up", controller="hpc-controller") == 1
    assert get("node_state", slurm_node="hpc-compute-01", state="mixed") == 1
    assert get("node_state", slurm_node="hpc-compute-01", state="idle") == 0
    assert get("node_state", slurm_node="hpc-compute-03", state="down") == 1
    assert get("node_flag", slurm_node="hpc-compute-02", flag="drain") == 1
    assert get("node_flag", slurm_node="hpc-compute-03", flag="not_responding") == 1
    assert get("node_flag", slurm_node="hpc-compute-01", flag="drain") == 0
    assert get("node_cpus_allocated", slurm_node="hpc-compute-01") == 1
    assert get("node_memory_bytes", slurm_node="hpc-compute-02") == 768 << 20
    assert get("nodes") == 3
    assert get("queue_jobs", partition="batch", state="pending") == 2
    assert get("queue_jobs", partition="batch", state="completing") == 1
    # A partition without jobs has its pending/running series at 0.
    assert get("queue_jobs", partition="debug", state="pending") == 0
    assert get("queue_jobs", partition="debug", state="running") == 0
    job = dict(job_id="7", job_name="train", user="hyperscaler", partition="gpu", slurm_nodes="hpc-compute-01")
    assert (get("job_cpus", **job), get("job_memory_bytes", **job), get("job_gpus", **job)) == (1, 768 << 20, 1)
    assert get("jobs_running") == 2
    assert get("collector_errors") == 0
    assert get("collector_last_run_timestamp_seconds") == 1700000000
    assert get("collector_duration_seconds") == 0.25
    # Every node has one series per base state and exactly one of them is 1.
    states = [k for k in s if k[0] == "hyperscaler_slurm_node_state" and ("slurm_node", "hpc-compute-02") in k[1]]
    assert len(states) == len(slurm.NODE_BASE_STATES) and sum(s[k] for k in states) == 1


def test_render_controller_down():
    text = slurm.render("lab", [("hpc-controller", False)], errors=["ping", "nodes", "nodes"], now=5)
    assert 'hyperscaler_slurm_controller_up{slurm_cluster="lab"} 0' in text.splitlines()
    assert 'hyperscaler_slurm_collector_errors{slurm_cluster="lab"} 2' in text.splitlines()
    assert 'hyperscaler_slurm_collector_command_failed{slurm_cluster="lab",command="nodes"} 1' in text.splitlines()
    assert "node_state" not in text and "queue_jobs" not in text


def test_label_values_are_escaped():
    text = slurm.render("lab", [], jobs=[{"job_id": "1", "name": 'a "quoted"\\ name\nx', "user": "u", "partition": "p",
                                         "nodes": "n", "cpus": 1, "memory_bytes": 0, "gpus": 0}])
    assert 'job_name="a \\"quoted\\"\\\\ name\\nx"' in text


def test_the_parser_needs_nothing_of_the_collection():
    """The role copies slurm.py onto the controller alone, as slurm_metrics.py."""
    path = repo_path("plugins", "module_utils", "monitoring", "slurm.py")
    with open(path) as handle:
        tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert imported <= {"__future__", "re"}, imported
    assert os.path.basename(path) == "slurm.py"


# Recorded from a live Slurm 22.05.8 (Debian 12) by tests/monitoring/record-slurm-samples.sh (Molecule's slurm
# scenario: one node with two typed MIG GRES, a running GPU job, a 6-task array and a job pending, the node
# drained under them, then slurmctld stopped for the DOWN ping). The hand-written samples above cover what one
# node cannot show (several nodes, DOWN+NOT_RESPONDING, multi-partition jobs).
def recorded(name):
    return data(os.path.join("recorded", name))


def test_recorded_version_is_the_guests_slurm():
    assert recorded("VERSION").split() == ["slurm-wlm", "22.05.8"]


def test_recorded_ping():
    assert slurm.parse_ping(recorded("scontrol-ping-up.txt"), 0) == [("hpc-aio", True)]
    assert slurm.parse_ping(recorded("scontrol-ping-down.txt"), 1) == [("hpc-aio", False)]


def test_recorded_drained_node_with_typed_gres():
    (node,) = slurm.parse_nodes(recorded("scontrol-show-node.txt"))
    assert (node["name"], node["state"], node["flags"]) == ("hpc-aio", "allocated", ["drain"])
    assert (node["cpus_total"], node["cpus_alloc"]) == (1, 1)
    assert (node["memory_bytes"], node["memory_alloc_bytes"]) == (1536 << 20, 256 << 20)
    assert node["partitions"] == ["batch", "gpu"] and node["reason"].startswith("recorded drain [root@")


def test_recorded_queue_counts_each_array_task():
    assert slurm.parse_partitions(recorded("sinfo-partitions.txt")) == ["batch", "gpu"]
    # squeue --array lists every pending task of the array on its own line (2_0 ... 2_5).
    assert slurm.parse_queue(recorded("squeue.txt")) == {("batch", "pending"): 7, ("gpu", "running"): 1}


def test_recorded_running_job_counts_its_typed_gpu_once():
    # TRES=...,gres/gpu=1,gres/gpu:1g.10gb=1: the typed count is part of the total, not a second GPU.
    assert slurm.parse_running_jobs(recorded("scontrol-show-job.txt")) == [{
        "job_id": "1", "name": "train", "user": "root", "partition": "gpu", "nodes": "hpc-aio",
        "cpus": 1, "memory_bytes": 256 << 20, "gpus": 1}]


def test_recorded_output_renders():
    text = slurm.render(
        "molecule", slurm.parse_ping(recorded("scontrol-ping-up.txt"), 0),
        nodes=slurm.parse_nodes(recorded("scontrol-show-node.txt")), queue=slurm.parse_queue(recorded("squeue.txt")),
        partitions=slurm.parse_partitions(recorded("sinfo-partitions.txt")),
        jobs=slurm.parse_running_jobs(recorded("scontrol-show-job.txt")), now=1, duration=0.1)
    s = _samples(text)
    drained = frozenset({("slurm_cluster", "molecule"), ("slurm_node", "hpc-aio"), ("flag", "drain")})
    assert s[("hyperscaler_slurm_node_flag", drained)] == 1
    assert s[("hyperscaler_slurm_jobs_running", frozenset({("slurm_cluster", "molecule")}))] == 1
