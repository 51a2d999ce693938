"""One MPI collective across the ranks of a Slurm job step, each rank checking the result.

    srun --mpi=pmix --nodes=2 --ntasks=2 --ntasks-per-node=1 python3 mpi_allreduce_check.py --expect-size 2

Every rank contributes rank + 1 to one MPI_Allreduce(MPI_SUM) (mpi4py's buffer interface, so the MPI
library itself reduces, over the network between nodes) and checks the result against
size * (size + 1) / 2. Each rank prints one JSON line on stdout, keys sorted, e.g.

    {"check": "mpi_allreduce", "expected": 3, "host": "hpc-compute-01", "launcher": "pmix",
     "mpi": "Open MPI v4.1.4", "ok": true, "problems": [], "rank": 0, "size": 2, "sum": 3}

launcher says how the rank was wired up: pmix (PMIX_RANK set: srun --mpi=pmix), pmi2 (PMI_FD: srun
--mpi=pmi2) or none. With --expect-size the world size must be that too: ranks that did not wire up
through a PMI (Open MPI under srun --mpi=none) start as singletons of size 1, each right about its own
sum of 1.

Exit status: 0 when this rank's sum (and size) is right, 1 when not, 2 for bad arguments or no mpi4py.
Needs mpi4py (Debian python3-mpi4py, for the system python3); everything but the MPI calls is pure and
unit tested (tests/unit/roles/test_mpi_allreduce_check.py).
"""
import argparse
import json
import os
import socket
import sys
from array import array

CHECK = "mpi_allreduce"


def expected_sum(size):
    """1 + 2 + ... + size: what the allreduce of every rank's rank + 1 must give."""
    if size < 1:
        raise ValueError("an MPI world has at least 1 rank, not %d" % size)
    return size * (size + 1) // 2


def launcher(environ):
    """Which process management interface started this rank, from the variables Slurm's plugin sets."""
    if "PMIX_RANK" in environ:
        return "pmix"
    if "PMI_FD" in environ:
        return "pmi2"
    return "none"


def library_name(version_text):
    """'Open MPI v4.1.4' from MPI_Get_library_version's 'Open MPI v4.1.4, package: ..., ident: ...'."""
    first = (version_text or "").strip().splitlines()[0:1]
    return first[0].split(",")[0].strip() if first else ""


def report(rank, size, host, total, expect_size=None, mpi="", launched_by="none"):
    """This rank's result as a dict; ok when the sum (and, with expect_size, the world size) is right."""
    expected = expected_sum(size)
    problems = []
    if total != expected:
        problems.append("allreduce(sum of rank + 1) gave %d, expected %d for %d rank(s)" % (total, expected, size))
    if expect_size is not None and size != expect_size:
        problems.append("the world has %d rank(s), expected %d: did the ranks start through a PMI "
                        "(srun --mpi=pmix)?" % (size, expect_size))
    return {"check": CHECK, "rank": rank, "size": size, "host": host, "sum": total, "expected": expected,
            "ok": not problems, "problems": problems, "mpi": mpi, "launcher": launched_by}


def allreduce_sum(mpi, comm, value):
    """MPI_Allreduce(MPI_SUM) of one 64-bit integer per rank."""
    send = array("q", [value])
    recv = array("q", [0])
    comm.Allreduce([send, mpi.LONG_LONG], [recv, mpi.LONG_LONG], op=mpi.SUM)
    return recv[0]


def run(mpi, comm, host, environ, expect_size=None, out=None):
    """The check on this rank: allreduce, compare, print the JSON line; returns the exit status."""
    rank, size = comm.Get_rank(), comm.Get_size()
    total = allreduce_sum(mpi, comm, rank + 1)
    result = report(rank, size, host, total, expect_size, library_name(mpi.Get_library_version()),
                    launcher(environ))
    out = out or sys.stdout
    out.write(json.dumps(result, sort_keys=True) + "\n")
    out.flush()
    return 0 if result["ok"] else 1


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a positive number of ranks" % text)
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write("mpi_allreduce_check: %s\n" % message)
        sys.exit(2)


def parse_args(argv):
    parser = _Parser(prog="mpi_allreduce_check.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--expect-size", type=_positive, help="the number of ranks the job step must have")
    return parser.parse_args(argv)


def main(argv=None, environ=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from mpi4py import MPI
    except ImportError as err:
        sys.stderr.write("mpi_allreduce_check: no mpi4py (Debian: python3-mpi4py, for /usr/bin/python3): %s\n" % err)
        return 2
    return run(MPI, MPI.COMM_WORLD, socket.gethostname(), os.environ if environ is None else environ,
               args.expect_size)


if __name__ == "__main__":
    sys.exit(main())
