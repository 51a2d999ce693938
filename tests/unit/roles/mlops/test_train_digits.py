"""train_digits.py's pure parts: arguments, ranks and rendezvous, backend, split, idx files, gate."""
import gzip
import json
import os
import stat
import struct
import subprocess
import sys
from collections import Counter

import pytest

from helpers import REPO

ENV = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}


def test_defaults_follow_the_schema(train):
    args = train.parse_args([], ENV)
    # cluster.yaml's mlops.training defaults (schemas/cluster.schema.json)
    assert (args.epochs, args.batch_size, args.learning_rate, args.min_accuracy) == (20, 64, 0.002, 0.95)
    assert args.experiment == "digits" and args.data_dir == "/shared/mlops/data"
    assert args.backend == "auto" and args.max_steps == 0 and args.tracking_uri == ENV["MLFLOW_TRACKING_URI"]


@pytest.mark.parametrize("argv, fragment", [
    (["--epochs", "0"], "argument --epochs: 0 must be at least 1"),
    (["--batch-size", "x"], "argument --batch-size: 'x' is not an integer"),
    (["--learning-rate", "-1"], "argument --learning-rate: -1 must be a number above 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: nan must be a number above 0"),
    (["--min-accuracy", "1.5"], "argument --min-accuracy: 1.5 is not a fraction between 0 and 1"),
    (["--max-steps", "-3"], "argument --max-steps: -3 must be 0 or more"),
    (["--test-fraction", "1"], "argument --test-fraction: 1.0 must be strictly between 0 and 1"),
    (["--backend", "mpi"], "argument --backend: invalid choice: 'mpi'"),
    (["--master-port", "70000"], "argument --master-port: 70000 is not a port (1-65535)"),
    (["--experiment", " "], "argument --experiment: must not be empty"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_one_clear_line(train, argv, fragment):
    with pytest.raises(train.UsageError) as err:
        train.parse_args(argv, ENV)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_tracking_uri_is_required(train):
    with pytest.raises(train.UsageError, match="set MLFLOW_TRACKING_URI or pass --tracking-uri"):
        train.parse_args([], {})
    assert train.parse_args(["--tracking-uri", "http://h:1"], {}).tracking_uri == "http://h:1"


def test_help(train, capsys):
    with pytest.raises(SystemExit) as done:
        train.parse_args(["--help"], ENV)
    assert done.value.code == 0 and "SLURM_JOB_ID % 10000" in capsys.readouterr().out


def test_main_exits_2_with_one_line(train, capsys):
    assert train.main(["--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "train_digits: error: argument --epochs: 0 must be at least 1\n"


def no_scontrol(*_a, **_kw):
    raise FileNotFoundError("scontrol")


def test_ranks_from_torchrun_variables(train):
    got = train.dist_settings({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29611",
                               "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, run=no_scontrol)
    assert (got["rank"], got["world_size"], got["source"]) == (1, 2, "RANK/WORLD_SIZE")
    assert (got["master_addr"], got["master_port"], got["master_addr_from"]) == ("127.0.0.1", 29611, "MASTER_ADDR")
    assert got["local_rank"] == 1 and got["local_world_size"] == 1


def test_ranks_from_slurm_with_the_first_host_of_the_node_list(train):
    calls = []

    def scontrol(cmd, **_kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="hpc-compute-01\nhpc-compute-02\n", stderr="")

    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_TASKS_PER_NODE": "1(x2)",
           "SLURM_JOB_NODELIST": "hpc-compute-[01-02]", "SLURM_JOB_ID": "123457"}
    got = train.dist_settings(env, run=scontrol)
    assert calls == [["scontrol", "show", "hostnames", "hpc-compute-[01-02]"]]
    assert (got["rank"], got["world_size"], got["local_rank"], got["local_world_size"]) == (1, 2, 0, 1)
    assert (got["master_addr"], got["master_addr_from"]) == ("hpc-compute-01", "SLURM_JOB_NODELIST")
    assert got["master_port"] == 20000 + 123457 % 10000  # the same on every node of the job


def test_the_node_list_without_scontrol(train):
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "cn[07-09,11],gpu1"}
    assert train.dist_settings(env, run=no_scontrol)["master_addr"] == "cn07"

    def failing(cmd, **_kw):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="bad")

    assert train.dist_settings(env, run=failing)["master_addr"] == "cn07"


def test_arguments_beat_the_environment(train):
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}
    got = train.dist_settings(env, master_addr="127.0.0.1", master_port=4321, run=no_scontrol)
    assert (got["master_addr"], got["master_port"], got["master_addr_from"]) == ("127.0.0.1", 4321, "--master-addr")


def test_a_single_process_by_default(train):
    got = train.dist_settings({}, run=no_scontrol)
    assert (got["rank"], got["world_size"], got["master_addr"], got["master_port"]) == (0, 1, "127.0.0.1", 29500)


@pytest.mark.parametrize("env, fragment", [
    ({"RANK": "0"}, "RANK and WORLD_SIZE must be set together"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 is not within world size 2"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
    ({"SLURM_PROCID": "0"}, "SLURM_PROCID is set but SLURM_NTASKS is not"),
    ({"MASTER_PORT": "0"}, "MASTER_PORT=0 is not a port"),
])
def test_bad_rank_environments(train, env, fragment):
    with pytest.raises(train.UsageError, match=fragment.replace("(", r"\(")):
        train.dist_settings(env, run=no_scontrol)


@pytest.mark.parametrize("nodelist, first", [
    ("node1", "node1"), ("node1,node2", "node1"), ("cn[01-03,7],gpu1", "cn01"), ("gpu[3]", "gpu3"),
    ("a[1-2]-ib,b1", "a1-ib"), ("hpc-compute-[01-02]", "hpc-compute-01"), ("x[5,1-2]", "x5"),
])
def test_first_host(train, nodelist, first):
    assert train.first_host(nodelist) == first


def test_first_host_of_nothing(train):
    with pytest.raises(train.UsageError, match="SLURM_JOB_NODELIST is empty"):
        train.first_host(" ")


@pytest.mark.parametrize("nodelist, hosts", [
    ("hpc-compute-[01-02]", ["hpc-compute-01", "hpc-compute-02"]),
    ("cn[01-03,7],gpu1", ["cn01", "cn02", "cn03", "cn7", "gpu1"]), ("a[1-2]-ib,b1", ["a1-ib", "a2-ib", "b1"]),
    ("node1", ["node1"]), ("x[9-11]", ["x9", "x10", "x11"]),
])
def test_expand_hosts(train, nodelist, hosts):
    assert train.expand_hosts(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["cn[01", "cn[a-b]", "cn[1]x[2]", "cn[]"])
def test_expand_hosts_refuses_what_it_cannot_read(train, nodelist):
    with pytest.raises(train.UsageError, match="cannot read the hosts"):
        train.expand_hosts(nodelist)


def test_slurm_hosts_without_scontrol_parses_the_node_list(train):
    # Inside the container image there is no scontrol: rank 0 still needs its peers (the VM run of 2026-12-04
    # chose loopback without them, and rank 1 could not connect).
    assert train.slurm_hosts("hpc-compute-[01-02]", run=no_scontrol) == ["hpc-compute-01", "hpc-compute-02"]
    assert train.slurm_hosts("cn[01", run=no_scontrol) == []


@pytest.mark.parametrize("requested, cuda, visible, backend, reason", [
    ("auto", False, "0", "gloo", "torch.cuda.is_available() is false"),
    ("auto", True, "0,1", "nccl", "CUDA_VISIBLE_DEVICES=0,1"),
    ("auto", True, None, "gloo", "names no device"),
    ("auto", True, "", "gloo", "names no device"),
    ("auto", True, "-1", "gloo", "names no device"),
    ("auto", True, "NoDevFiles", "gloo", "names no device"),
    ("auto", True, "GPU-5e1a7b2c", "nccl", "CUDA_VISIBLE_DEVICES=GPU-5e1a7b2c"),
    ("gloo", True, "0", "gloo", "requested"),
    ("nccl", True, "0", "nccl", "requested"),
])
def test_backend_choice(train, requested, cuda, visible, backend, reason):
    chosen, why = train.choose_backend(requested, cuda, visible)
    assert chosen == backend and reason in why


@pytest.mark.parametrize("cuda, visible, fragment", [(False, "0", "torch.cuda.is_available() is false"),
                                                     (True, "", "names none")])
def test_nccl_without_a_gpu_is_refused(train, cuda, visible, fragment):
    with pytest.raises(train.UsageError, match=r"--backend: nccl needs .*%s.*valid here: gloo or auto" % fragment
                       .replace("(", r"\(").replace(")", r"\)")):
        train.choose_backend("nccl", cuda, visible)


def test_the_interface_towards_the_rendezvous_host(train):
    assert train.interface_for("127.0.0.1") == ("lo", "127.0.0.1")
    assert train.interface_for("no-such-host.invalid") == (None, None)


def test_torch_threads(train):
    assert train.torch_threads(0, 2, 2) == 1
    assert train.torch_threads(0, 8, 1) == 8
    assert train.torch_threads(0, 1, 4) == 1
    assert train.torch_threads(3, 2, 2) == 3
    assert train.torch_threads(0, 8, 1, "1") == 1  # the sbatch script's OMP_NUM_THREADS
    assert train.torch_threads(2, 8, 1, "1") == 2
    assert train.torch_threads(0, 8, 2, "") == 4 and train.torch_threads(0, 8, 2, "x") == 4


def test_stratified_split_is_seeded_disjoint_and_proportional(train):
    labels = [i % 10 for i in range(1797)]
    tr, te = train.stratified_split(labels, 0.2, 42)
    assert sorted(tr + te) == list(range(1797)) and not set(tr) & set(te)
    assert (tr, te) == train.stratified_split(labels, 0.2, 42)
    assert te != train.stratified_split(labels, 0.2, 7)[1]
    counts, totals = Counter(labels[i] for i in te), Counter(labels)
    for label, total in totals.items():
        assert counts[label] == round(total * 0.2)
    assert 355 <= len(te) <= 365


def test_every_class_is_in_both_parts(train):
    labels = [0, 0, 1, 1, 1, 2, 2]
    tr, te = train.stratified_split(labels, 0.01, 1)
    assert {labels[i] for i in te} == {labels[i] for i in tr} == {0, 1, 2}


def idx_bytes(code, dims, payload):
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(">%dI" % len(dims), *dims) + payload


def test_idx_files_plain_and_gzipped(train, tmp_path):
    images = bytes((i * 7) % 256 for i in range(2 * 28 * 28))
    plain = tmp_path / "t10k-images-idx3-ubyte"
    plain.write_bytes(idx_bytes(0x08, (2, 28, 28), images))
    zipped = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(zipped, "wb") as out:
        out.write(idx_bytes(0x08, (2,), b"\x07\x03"))
    blob = train.read_idx_bytes(str(plain))
    dtype, size, dims, offset = train.parse_idx_header(blob, "images")
    assert (dtype, size, dims, offset) == ("u1", 1, (2, 28, 28), 16) and blob[offset:] == images
    labels = train.read_idx_bytes(str(zipped))
    assert train.parse_idx_header(labels)[2] == (2,) and labels[8:] == b"\x07\x03"


def test_idx_big_endian_types(train):
    blob = idx_bytes(0x0D, (2, 1), struct.pack(">ff", 1.5, -2.0))
    assert train.parse_idx_header(blob)[:3] == (">f4", 4, (2, 1))


@pytest.mark.parametrize("blob, fragment", [
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"x", "not an idx file"),
    (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"x", "not an idx file"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01", "truncated"),
    (idx_bytes(0x08, (2, 2), b"abc"), "3 data bytes for dimensions 2x2, expected 4"),
])
def test_broken_idx_files(train, blob, fragment):
    with pytest.raises(ValueError, match=fragment):
        train.parse_idx_header(blob, "f")


def test_unreadable_gzip(train, tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        train.read_idx_bytes(str(path))


def test_mnist_files_are_found_plain_or_gzipped(train, tmp_path):
    assert train.find_mnist_files(str(tmp_path)) is None
    assert train.find_mnist_files(str(tmp_path / "missing")) is None
    assert train.find_mnist_files(None) is None
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(train.UsageError, match=r"has only some MNIST files; missing t10k-labels-idx1-ubyte\[.gz\]"):
        train.find_mnist_files(str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    found = train.find_mnist_files(str(tmp_path))
    assert found["train_images"].endswith("train-images-idx3-ubyte.gz")
    assert found["test_labels"].endswith("t10k-labels-idx1-ubyte")


def test_gate(train):
    assert train.gate(0.97, 0.95) == (True, "test_accuracy 0.9700 >= 0.9500 (--min-accuracy)")
    assert train.gate(0.95, 0.95)[0] is True
    passed, message = train.gate(0.41, 0.95)
    assert not passed and message.startswith("test_accuracy 0.4100 < 0.9500 (--min-accuracy)")
    assert train.gate(0.1, 0.0)[0] is True


def test_result_file_is_written_atomically(train, tmp_path):
    path = tmp_path / "sub" / "result.json"
    train.write_json_atomic(str(path), {"run_id": "r", "test_accuracy": 0.5})
    assert json.loads(path.read_text()) == {"run_id": "r", "test_accuracy": 0.5}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == ["result.json"]


def test_unreachable_tracking_server_fails_fast(train, closed_port):
    # start_mlflow_run checks with workflow_cli.check_tracking_server before MLflow retries for minutes
    uri = "http://127.0.0.1:%d" % closed_port
    with pytest.raises(train.TrainingError, match="MLflow tracking server %s unreachable" % uri):
        train.workflow_cli.check_tracking_server(uri, train.TrainingError, timeout=5)


def test_the_module_imports_no_heavy_package():
    """numpy, torch, sklearn, mlflow and kserve must not be needed to import any of the four programs."""
    code = r"""
import importlib.abc, importlib.util, os, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "torch", "sklearn", "mlflow", "kserve", "psutil", "pandas"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
for path in sys.argv[1:]:
    sys.path.insert(0, os.path.dirname(path))  # as when it runs by path: its sibling workflow_cli.py
    spec = importlib.util.spec_from_file_location("m", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
"""
    paths = [os.path.join(REPO, "roles", "mlops_pipeline", "files", name)
             for name in ("train_digits.py", "model_registry.py", "verify_inference.py")]
    paths.append(os.path.join(REPO, "roles", "model_server", "files", "hyperscaler_model_server.py"))
    done = subprocess.run([sys.executable, "-c", code] + paths, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_collective_interface_follows_the_route_to_the_rendezvous_host(train):
    routes = {"cn01": ("enp1s0", "192.0.2.11")}
    assert train.collective_interface("cn01", 20001, ["cn02"], route=lambda host, port: routes[host]) \
        == ("enp1s0", "192.0.2.11", "cn01")


def test_collective_interface_on_the_rendezvous_host_uses_the_route_to_a_peer(train):
    # Rank 0 runs on the rendezvous host: its route there is loopback, which the other ranks cannot reach.
    routes = {"cn01": ("lo", "127.0.0.1"), "cn02": ("enp1s0", "192.0.2.11")}
    assert train.collective_interface("cn01", 20001, ["cn02"], route=lambda host, port: routes[host]) \
        == ("enp1s0", "192.0.2.11", "cn02")


def test_collective_interface_stays_on_loopback_when_every_rank_is_local(train):
    routes = {"127.0.0.1": ("lo", "127.0.0.1")}
    assert train.collective_interface("127.0.0.1", 29500, [], route=lambda host, port: routes[host]) \
        == ("lo", "127.0.0.1", "127.0.0.1")
