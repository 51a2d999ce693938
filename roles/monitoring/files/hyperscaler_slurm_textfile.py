"""Slurm metrics for the node exporter's textfile collector (what hyperscaler-slurm-textfile.service runs).

    python3 hyperscaler_slurm_textfile.py --output /var/lib/prometheus/node-exporter/hyperscaler_slurm.prom \
        --cluster NAME [--timeout 20]

Runs scontrol ping, scontrol show node, sinfo, squeue and scontrol show job on the Slurm controller, and
replaces the output file atomically (a temporary file in the same directory, whose name does not end in
.prom, renamed over it) with: slurmctld up, each node's state and flags, CPUs and memory, the queue by
partition and state, each running job's CPUs, memory and GPUs, and the collector's own errors, duration
and time. When slurmctld is down the file still comes, with hyperscaler_slurm_controller_up 0 and the
commands that failed; exit status 0. Exit status 1 only when the file cannot be written, 2 on bad usage.

The parsing is the collection's plugins/module_utils/monitoring/slurm.py: the monitoring role copies it
next to this script as slurm_metrics.py (standard library only, no ansible-core on the guest); from a
checkout it is imported from the collection.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import slurm_metrics  # the copy the role installs next to this script
except ImportError:  # a checkout or an installed collection
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.monitoring import slurm as slurm_metrics

COMMANDS = {
    "ping": ["scontrol", "ping"],
    "nodes": ["scontrol", "--oneliner", "show", "node"],
    "partitions": ["sinfo", "--noheader", "--format=%R"],
    "queue": ["squeue", "--noheader", "--array", "--format=%i|%P|%T"],
    "jobs": ["scontrol", "--oneliner", "show", "job"],
}


def run_command(argv, timeout):
    """(rc, stdout); rc 127 when the command does not exist, 124 when it ran out of time."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout, check=False, env=dict(os.environ, LC_ALL="C"))
    except FileNotFoundError:
        return 127, ""
    except subprocess.TimeoutExpired:
        return 124, ""
    return done.returncode, done.stdout


def collect(cluster, timeout, run=run_command, clock=time.time):
    """The textfile's content from one run of the Slurm commands (``run`` is replaceable for tests)."""
    start = clock()
    errors = []
    rc, out = run(COMMANDS["ping"], timeout)
    ping = slurm_metrics.parse_ping(out, rc)
    if not ping:
        errors.append("ping")
    results = {}
    parsers = {"nodes": slurm_metrics.parse_nodes, "partitions": slurm_metrics.parse_partitions,
               "queue": slurm_metrics.parse_queue, "jobs": slurm_metrics.parse_running_jobs}
    if any(up for _host, up in ping):
        for name in ("nodes", "partitions", "queue", "jobs"):
            rc, out = run(COMMANDS[name], timeout)
            if rc != 0:
                errors.append(name)
                continue
            try:
                results[name] = parsers[name](out)
            except slurm_metrics.SlurmParseError:
                errors.append(name)
    end = clock()
    return slurm_metrics.render(cluster, ping, nodes=results.get("nodes"), queue=results.get("queue"),
                                partitions=results.get("partitions"), jobs=results.get("jobs"), errors=errors,
                                now=end, duration=end - start)


def write_atomically(path, content):
    """Replace ``path`` with ``content``: the node exporter never reads a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None, run=run_command):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--output", required=True, help="the .prom file in the node exporter's textfile directory")
    parser.add_argument("--cluster", required=True, help="the Slurm cluster's name (label cluster)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds each Slurm command may take")
    args = parser.parse_args(argv)
    if not args.output.endswith(".prom"):
        parser.error("--output must end in .prom (the node exporter reads only those)")
    content = collect(args.cluster, args.timeout, run=run)
    try:
        write_atomically(args.output, content)
    except OSError as exc:
        print("hyperscaler_slurm_textfile: cannot write %s: %s" % (args.output, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
