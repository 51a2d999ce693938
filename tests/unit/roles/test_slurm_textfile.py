"""The Slurm textfile collector (roles/monitoring/files/hyperscaler_slurm_textfile.py) with fake Slurm commands."""
import os
import stat

import pytest

from helpers import load_script, repo_path


@pytest.fixture(scope="module")
def collector():
    return load_script("hyperscaler_slurm_textfile", "roles", "monitoring", "files", "hyperscaler_slurm_textfile.py")


def data(name):
    with open(repo_path("tests", "unit", "data", "monitoring", name)) as handle:
        return handle.read()


def fake_slurm(up=True, fail=()):
    outputs = {
        "ping": (0, data("scontrol-ping-up.txt")) if up else (1, data("scontrol-ping-down.txt")),
        "nodes": (0, data("scontrol-show-node.txt")),
        "partitions": (0, data("sinfo-partitions.txt")),
        "queue": (0, data("squeue.txt")),
        "jobs": (0, data("scontrol-show-job.txt")),
    }
    calls = []

    def run(argv, timeout):
        from_argv = {tuple(v): k for k, v in COMMANDS.items()}[tuple(argv)]
        calls.append(from_argv)
        if from_argv in fail:
            return 1, "slurm_load_partitions: Unable to contact slurm controller (connect failure)\n"
        return outputs[from_argv]
    return run, calls


COMMANDS = {}


@pytest.fixture(autouse=True)
def _commands(collector):
    COMMANDS.clear()
    COMMANDS.update(collector.COMMANDS)


def test_a_run_writes_every_family(collector, tmp_path):
    run, calls = fake_slurm()
    out = tmp_path / "hyperscaler_slurm.prom"
    assert collector.main(["--output", str(out), "--cluster", "lab"], run=run) == 0
    text = out.read_text()
    assert calls == ["ping", "nodes", "partitions", "queue", "jobs"]
    lines = text.splitlines()
    assert 'hyperscaler_slurm_controller_up{slurm_cluster="lab"} 1' in lines
    assert 'hyperscaler_slurm_node_state{slurm_cluster="lab",slurm_node="hpc-compute-03",state="down"} 1' in lines
    assert 'hyperscaler_slurm_queue_jobs{slurm_cluster="lab",partition="gpu",state="pending"} 1' in lines
    assert any(line.startswith('hyperscaler_slurm_job_gpus{slurm_cluster="lab",job_id="7",') and line.endswith(" 1")
               for line in lines)
    assert 'hyperscaler_slurm_collector_errors{slurm_cluster="lab"} 0' in lines
    assert stat.S_IMODE(os.stat(str(out)).st_mode) == 0o644
    # Nothing but the file itself is left in the directory (the temporary file was renamed).
    assert os.listdir(str(tmp_path)) == ["hyperscaler_slurm.prom"]


def test_controller_down_still_writes_the_file(collector, tmp_path):
    run, calls = fake_slurm(up=False)
    out = tmp_path / "s.prom"
    assert collector.main(["--output", str(out), "--cluster", "lab"], run=run) == 0
    assert calls == ["ping"]
    lines = out.read_text().splitlines()
    assert 'hyperscaler_slurm_controller_up{slurm_cluster="lab"} 0' in lines
    assert 'hyperscaler_slurm_controller_host_up{slurm_cluster="lab",controller="hpc-controller"} 0' in lines


def test_a_failing_command_is_named_and_the_others_still_come(collector, tmp_path):
    run, _calls = fake_slurm(fail=("queue",))
    out = tmp_path / "s.prom"
    collector.main(["--output", str(out), "--cluster", "lab"], run=run)
    text = out.read_text()
    assert 'hyperscaler_slurm_collector_command_failed{slurm_cluster="lab",command="queue"} 1' in text.splitlines()
    assert "hyperscaler_slurm_queue_jobs" not in text and "hyperscaler_slurm_node_state" in text


def test_slurm_not_installed(collector, tmp_path):
    def run(argv, timeout):
        return collector.run_command(["/nonexistent/" + argv[0]] + argv[1:], timeout)
    out = tmp_path / "s.prom"
    collector.main(["--output", str(out), "--cluster", "lab"], run=run)
    assert 'hyperscaler_slurm_collector_command_failed{slurm_cluster="lab",command="ping"} 1' in out.read_text()


def test_the_file_is_replaced_not_appended(collector, tmp_path):
    out = tmp_path / "s.prom"
    out.write_text("old content\n")
    run, _calls = fake_slurm()
    collector.main(["--output", str(out), "--cluster", "lab"], run=run)
    assert "old content" not in out.read_text()


def test_unwritable_directory_exits_1(collector, tmp_path):
    run, _calls = fake_slurm()
    assert collector.main(["--output", str(tmp_path / "missing" / "s.prom"), "--cluster", "lab"], run=run) == 1


def test_output_must_be_a_prom_file(collector, tmp_path):
    run, _calls = fake_slurm()
    with pytest.raises(SystemExit) as exc:
        collector.main(["--output", str(tmp_path / "s.txt"), "--cluster", "lab"], run=run)
    assert exc.value.code == 2
