# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Slurm metrics for the node exporter's textfile collector: pure parsers of Slurm's command output.

roles/monitoring/files/hyperscaler_slurm_textfile.py runs the commands on the Slurm controller and
writes what ``render`` returns into the textfile directory; everything that reads Slurm's output is
here, so it is unit-tested on recorded outputs (tests/unit/plugins/module_utils/monitoring/).

Standard library only, and no import of the collection: the role copies this file next to the
collector on a guest that has no ansible-core.

Commands read (Slurm 22.05, Debian 12):
  scontrol ping                     -> controller up (rc 0 and "is UP")
  scontrol --oneliner show node     -> one line per node: State=IDLE+DRAIN, CPUTot, CPUAlloc, ...
  squeue --noheader --array --format=%i|%P|%T      -> queue by partition and state
  scontrol --oneliner show job      -> running jobs' TRES (cpu, mem, gres/gpu)
  sinfo --noheader --format=%R      -> the partitions, so that their queue counts exist at 0
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

PREFIX = "hyperscaler_slurm_"
# Queue states whose counts always exist for every partition (0 when no job), so that alerts and
# dashboards do not see a missing series when the queue is empty.
QUEUE_STATES = ("pending", "running")
# Slurm's base node states (slurm.h node_states, lower case as `sinfo %T` prints them); each node gets
# one 0/1 series per state, 1 for the state it is in.
NODE_BASE_STATES = ("unknown", "down", "idle", "allocated", "error", "mixed", "future")
# Flags that `scontrol show node` appends with '+': the ones worth a series of their own.
NODE_FLAGS = ("drain", "fail", "maint", "not_responding", "power_down", "powered_down", "reboot_requested",
              "reserved", "completing", "planned", "invalid_reg", "dynamic_norm", "cloud")
_KEY_VALUE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=(.*?)(?=\s+[A-Za-z][A-Za-z0-9_:/.]*=|\s*$)")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTP]?)$")
_MEMORY_FACTOR = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


class SlurmParseError(ValueError):
    """Output that does not look like what the Slurm command prints."""


def parse_oneliner(line):
    """One line of ``scontrol --oneliner show node|job``: {Key: value}.

    Values may contain spaces (``Reason=Not responding [slurm@...]``, ``OS=Linux 6.1.0 #1 SMP``) and
    '=' (``TRES=cpu=1,mem=768M``): a value ends where whitespace is followed by the next ``Key=``.
    """
    out = {}
    for match in _KEY_VALUE.finditer(line.strip()):
        out[match.group(1)] = match.group(2)
    return out


def _oneliners(text, first_key):
    """The records of ``scontrol --oneliner show ...``; "No jobs in the system" and blank lines give none."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("No ") and "=" not in line:
            continue
        record = parse_oneliner(line)
        if first_key not in record:
            raise SlurmParseError("expected a line starting with %s=, got %r" % (first_key, line[:120]))
        records.append(record)
    return records


def parse_ping(text, rc):
    """``scontrol ping``: [(controller host, up)]. "Slurmctld(primary) at hpc-01 is UP"; rc 1 when down."""
    out = []
    for match in re.finditer(r"Slurmctld\((\w+)\) at (\S+) is (UP|DOWN)", text):
        out.append((match.group(2), match.group(3) == "UP" and rc == 0))
    return out


def split_node_state(state):
    """``IDLE+DRAIN`` / ``DOWN*`` / ``idle~`` -> (base state, set of flags), both lower case.

    A trailing '*' (sinfo's "not responding") becomes the flag not_responding, '~' powered_down,
    '#' powering up, '%' powering down, '!' power_down, '@' reboot_requested, '$' maint, '^' reboot_issued,
    '-' planned.
    """
    suffix_flags = {"*": "not_responding", "~": "powered_down", "#": "powering_up", "%": "powering_down",
                    "!": "power_down", "@": "reboot_requested", "$": "maint", "^": "reboot_issued",
                    "-": "planned"}
    flags = set()
    state = state.strip()
    while state and state[-1] in suffix_flags:
        flags.add(suffix_flags[state[-1]])
        state = state[:-1]
    parts = [p for p in state.lower().split("+") if p]
    if not parts:
        raise SlurmParseError("empty node state")
    base = parts[0]
    flags.update(parts[1:])
    # scontrol prints NOT_RESPONDING as a flag too; keep one spelling.
    return base, flags


def parse_memory_bytes(value):
    """A Slurm memory amount (``768M``, ``2G``, ``1536`` in MB, ``0.50G``) in bytes."""
    match = _MEMORY.match(value.strip())
    if not match:
        raise SlurmParseError("not a Slurm memory amount: %r" % value)
    return int(float(match.group(1)) * _MEMORY_FACTOR[match.group(2)])


def parse_tres(value):
    """``cpu=2,mem=1536M,node=1,billing=2,gres/gpu=1,gres/gpu:1g.10gb=1`` -> {cpus, memory_bytes, gpus}."""
    out = {"cpus": 0, "memory_bytes": 0, "gpus": 0}
    if not value or value == "(null)":
        return out
    for item in value.split(","):
        if "=" not in item:
            raise SlurmParseError("TRES item without '=': %r in %r" % (item, value))
        key, amount = item.split("=", 1)
        if key == "cpu":
            out["cpus"] = int(amount)
        elif key == "mem":
            out["memory_bytes"] = parse_memory_bytes(amount)
        elif key == "gres/gpu":  # the total; typed counts (gres/gpu:a100=1) are part of it
            out["gpus"] = int(amount)
    return out


def parse_nodes(text):
    """``scontrol --oneliner show node`` -> [{name, state, flags, cpus_total, cpus_alloc, memory_bytes,
    memory_alloc_bytes, partitions, reason}] in Slurm's order."""
    nodes = []
    for rec in _oneliners(text, "NodeName"):
        base, flags = split_node_state(rec.get("State", "UNKNOWN"))
        nodes.append({
            "name": rec["NodeName"],
            "state": base,
            "flags": sorted(flags),
            "cpus_total": int(rec.get("CPUTot", "0")),
            "cpus_alloc": int(rec.get("CPUAlloc", "0")),
            # RealMemory and AllocMem are MB.
            "memory_bytes": int(rec.get("RealMemory", "0")) << 20,
            "memory_alloc_bytes": int(rec.get("AllocMem", "0")) << 20,
            "partitions": [p for p in rec.get("Partitions", "").split(",") if p],
            "reason": rec.get("Reason", ""),
        })
    return nodes


def parse_queue(text):
    """``squeue --noheader --array --format=%i|%P|%T`` -> {(partition, state): count}, state lower case.

    A pending job submitted to several partitions (``batch,gpu``) counts in each of them.
    """
    counts = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 3 or not fields[2]:
            raise SlurmParseError("expected JOBID|PARTITION|STATE, got %r" % line)
        for part in fields[1].split(","):
            key = (part, fields[2].lower())
            counts[key] = counts.get(key, 0) + 1
    return counts


def parse_partitions(text):
    """``sinfo --noheader --format=%R`` -> partition names in order, without duplicates."""
    out = []
    for line in text.splitlines():
        name = line.strip()
        if name and name not in out:
            out.append(name)
    return out


def parse_running_jobs(text):
    """``scontrol --oneliner show job`` -> [{job_id, name, user, partition, nodes, cpus, memory_bytes, gpus}]
    of the RUNNING jobs (an array task counts as its own job, ``JobId`` of the task)."""
    jobs = []
    for rec in _oneliners(text, "JobId"):
        if rec.get("JobState") != "RUNNING":
            continue
        # Running jobs have their allocation in TRES; AllocTRES on newer Slurm.
        tres = parse_tres(rec.get("AllocTRES") or rec.get("TRES", ""))
        if not tres["cpus"]:
            tres["cpus"] = int(rec.get("NumCPUs", "0"))
        user = rec.get("UserId", "")
        jobs.append({
            "job_id": rec["JobId"],
            "name": rec.get("JobName", ""),
            "user": user.split("(", 1)[0],
            "partition": rec.get("Partition", ""),
            "nodes": rec.get("NodeList", ""),
            "cpus": tres["cpus"],
            "memory_bytes": tres["memory_bytes"],
            "gpus": tres["gpus"],
        })
    return jobs


def escape_label(value):
    """A Prometheus exposition-format label value: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels):
    return ",".join('%s="%s"' % (k, escape_label(v)) for k, v in labels)


class Exposition(object):
    """Prometheus text exposition lines, HELP/TYPE once per metric family, families in order."""

    def __init__(self):
        self._families = []
        self._samples = {}

    def add(self, name, help_text, labels, value, kind="gauge"):
        name = PREFIX + name
        if name not in self._samples:
            self._families.append((name, help_text, kind))
            self._samples[name] = []
        self._samples[name].append((labels, value))

    def text(self):
        lines = []
        for name, help_text, kind in self._families:
            lines.append("# HELP %s %s" % (name, help_text))
            lines.append("# TYPE %s %s" % (name, kind))
            for labels, value in self._samples[name]:
                lines.append("%s{%s} %s" % (name, _labels(labels), _number(value)) if labels
                             else "%s %s" % (name, _number(value)))
        return "\n".join(lines) + "\n"


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return "%d" % value
    return str(value)


def render(cluster, ping, nodes=None, queue=None, partitions=None, jobs=None, errors=(), now=None,
           duration=None):
    """The textfile of one collector run.

    ``ping`` is parse_ping's list; ``nodes``/``queue``/``partitions``/``jobs`` what the parsers return, or
    None when the command failed (then its metrics are left out, and ``errors`` names the commands that
    failed). Labels: ``slurm_node`` (not ``node``: Prometheus' target label ``node`` is the host the
    collector runs on), ``partition``, ``state``, ``flag``, ``job_id``.
    """
    out = Exposition()
    base = [("slurm_cluster", cluster)]
    up = any(state for _host, state in ping)
    out.add("controller_up", "1 when slurmctld answers scontrol ping (0: down or not reachable).", base, up)
    for host, state in ping:
        out.add("controller_host_up", "scontrol ping per slurmctld (primary, backup).",
                base + [("controller", host)], state)
    if nodes is not None:
        for node in nodes:
            labels = base + [("slurm_node", node["name"])]
            for state in NODE_BASE_STATES + tuple(s for s in [node["state"]] if s not in NODE_BASE_STATES):
                out.add("node_state", "Base state of a Slurm node (1 for its current state).",
                        labels + [("state", state)], state == node["state"])
            for flag in NODE_FLAGS + tuple(f for f in node["flags"] if f not in NODE_FLAGS):
                out.add("node_flag", "State flags of a Slurm node (drain, not_responding, ...; 1 when set).",
                        labels + [("flag", flag)], flag in node["flags"])
            out.add("node_cpus", "CPUs of a Slurm node (CPUTot).", labels, node["cpus_total"])
            out.add("node_cpus_allocated", "CPUs of a Slurm node allocated to jobs (CPUAlloc).", labels,
                    node["cpus_alloc"])
            out.add("node_memory_bytes", "Memory Slurm may allocate on a node (RealMemory).", labels,
                    node["memory_bytes"])
            out.add("node_memory_allocated_bytes", "Memory allocated to jobs on a node (AllocMem).", labels,
                    node["memory_alloc_bytes"])
        out.add("nodes", "Slurm nodes known to slurmctld.", base, len(nodes))
    if queue is not None:
        keys = set(queue)
        for part in partitions or []:
            for state in QUEUE_STATES:
                keys.add((part, state))
        for part, state in sorted(keys):
            out.add("queue_jobs", "Jobs in the queue by partition and state (squeue).",
                    base + [("partition", part), ("state", state)], queue.get((part, state), 0))
    if jobs is not None:
        for job in jobs:
            labels = base + [("job_id", job["job_id"]), ("job_name", job["name"]), ("user", job["user"]),
                             ("partition", job["partition"]), ("slurm_nodes", job["nodes"])]
            out.add("job_cpus", "CPUs allocated to a running job.", labels, job["cpus"])
            out.add("job_memory_bytes", "Memory allocated to a running job.", labels, job["memory_bytes"])
            out.add("job_gpus", "GPUs (gres/gpu) allocated to a running job.", labels, job["gpus"])
        out.add("jobs_running", "Running jobs.", base, len(jobs))
    for command in sorted(set(errors)):
        out.add("collector_command_failed", "1 for each Slurm command that failed in the last run.",
                base + [("command", command)], 1)
    out.add("collector_errors", "Slurm commands that failed in the last run.", base, len(set(errors)))
    if duration is not None:
        out.add("collector_duration_seconds", "Time the last run took.", base, round(duration, 3))
    if now is not None:
        out.add("collector_last_run_timestamp_seconds", "When the collector last wrote this file (Unix time).",
                base, int(now))
    return out.text()
