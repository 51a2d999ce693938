"""roles/slurm/files/mpi_allreduce_check.py without MPI: the expected sum, the report, the launcher, the
exit status, with a fake communicator in place of mpi4py's. The real allreduce runs in Molecule (one
node, two ranks) and in hpc_verify.yml on the VMs (two nodes, one rank each)."""
import io
import json

import pytest

from helpers import load_script


@pytest.fixture(scope="module")
def check():
    return load_script("mpi_allreduce_check", "roles", "slurm", "files", "mpi_allreduce_check.py")


class FakeMPI(object):
    LONG_LONG = "MPI_LONG_LONG"
    SUM = "MPI_SUM"

    @staticmethod
    def Get_library_version():
        return "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\n"


class FakeComm(object):
    """One rank of a world of ``size``; Allreduce sums what every rank would send (rank + 1), or ``result``."""

    def __init__(self, rank, size, result=None):
        self.rank, self.size, self.result, self.calls = rank, size, result, []

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Allreduce(self, send, recv, op):
        self.calls.append((list(send[0]), send[1], recv[1], op))
        recv[0][0] = self.result if self.result is not None else sum(r + 1 for r in range(self.size))


@pytest.mark.parametrize("size, total", [(1, 1), (2, 3), (3, 6), (4, 10), (512, 131328)])
def test_expected_sum(check, size, total):
    assert check.expected_sum(size) == total == sum(range(1, size + 1))


def test_no_world_has_zero_ranks(check):
    with pytest.raises(ValueError):
        check.expected_sum(0)


@pytest.mark.parametrize("environ, name", [
    ({"PMIX_RANK": "0", "SLURM_PROCID": "0"}, "pmix"),
    ({"PMI_FD": "5", "SLURM_PROCID": "1"}, "pmi2"),
    ({"SLURM_PROCID": "0"}, "none"),
    ({}, "none"),
])
def test_launcher(check, environ, name):
    assert check.launcher(environ) == name


def test_library_name(check):
    assert check.library_name(FakeMPI.Get_library_version()) == "Open MPI v4.1.4"
    assert check.library_name("MPICH Version:\t4.0.2\nMPICH Release date: ...") == "MPICH Version:\t4.0.2"
    assert check.library_name("") == "" and check.library_name(None) == ""


def test_each_rank_of_two_nodes_reports_the_sum(check):
    for rank, host in [(0, "hpc-compute-01"), (1, "hpc-compute-02")]:
        out = io.StringIO()
        comm = FakeComm(rank, 2)
        assert check.run(FakeMPI, comm, host, {"PMIX_RANK": str(rank)}, expect_size=2, out=out) == 0
        # One MPI_Allreduce of one 64-bit integer, the rank's rank + 1, with MPI_SUM.
        assert comm.calls == [([rank + 1], "MPI_LONG_LONG", "MPI_LONG_LONG", "MPI_SUM")]
        line = out.getvalue()
        assert line.startswith('{"check": "mpi_allreduce", ') and line.endswith("}\n") and line.count("\n") == 1
        assert json.loads(line) == {"check": "mpi_allreduce", "rank": rank, "size": 2, "host": host, "sum": 3,
                                    "expected": 3, "ok": True, "problems": [], "mpi": "Open MPI v4.1.4",
                                    "launcher": "pmix"}


def test_a_wrong_sum_fails_the_rank(check):
    out = io.StringIO()
    assert check.run(FakeMPI, FakeComm(1, 2, result=2), "n2", {"PMIX_RANK": "1"}, out=out) == 1
    result = json.loads(out.getvalue())
    assert result["ok"] is False and (result["sum"], result["expected"]) == (2, 3)
    assert result["problems"] == ["allreduce(sum of rank + 1) gave 2, expected 3 for 2 rank(s)"]


def test_singletons_fail_the_expected_size(check):
    # Open MPI under srun --mpi=none: each task is a world of 1, whose own sum is "right".
    result = check.report(0, 1, "n1", 1, expect_size=2, launched_by="none")
    assert result["ok"] is False and result["sum"] == result["expected"] == 1
    assert result["problems"] == ["the world has 1 rank(s), expected 2: did the ranks start through a PMI "
                                  "(srun --mpi=pmix)?"]
    assert check.report(0, 1, "n1", 1)["ok"] is True  # without --expect-size a world of 1 is fine


def test_arguments(check):
    assert check.parse_args([]).expect_size is None
    assert check.parse_args(["--expect-size", "2"]).expect_size == 2


@pytest.mark.parametrize("argv, fragment", [
    (["--expect-size", "0"], "'0' is not a positive number of ranks"),
    (["--expect-size", "two"], "'two' is not a positive number of ranks"),
    (["--ranks", "2"], "unrecognized arguments: --ranks 2"),
])
def test_bad_arguments_exit_2(check, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        check.parse_args(argv)
    assert exc.value.code == 2 and fragment in capsys.readouterr().err


def test_without_mpi4py_it_says_what_to_install(check, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    assert check.main([], {}) == 2
    assert "no mpi4py (Debian: python3-mpi4py, for /usr/bin/python3)" in capsys.readouterr().err
