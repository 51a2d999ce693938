"""Data-parallel training of a small CNN on handwritten digits, logged to MLflow.

Launched by Slurm with one task per node:

    srun -N2 --ntasks-per-node=1 /opt/aihow/venv/bin/python train_digits.py --data-dir /shared/mlops/data ...

Rank and world size come from RANK/WORLD_SIZE (torchrun style, also what the native test sets for
two local processes) or else SLURM_PROCID/SLURM_NTASKS; the rendezvous is --master-addr/--master-port
(defaults: MASTER_ADDR/MASTER_PORT, else the first host of SLURM_JOB_NODELIST and a port derived from
SLURM_JOB_ID, else 127.0.0.1:29500). Unless GLOO_SOCKET_IFNAME (NCCL_SOCKET_IFNAME) is set, the ranks
use the network interface their route to the rendezvous host leaves by.

Data: sklearn's 8x8 digits (1797 images, pixels 0..16), split once, seeded and stratified, into
train/test and written by rank 0 as <data-dir>/digits.npz (temp file + rename); or, when --mnist-dir
holds the four MNIST idx files, MNIST (28x28, pixels 0..255) as <data-dir>/mnist.npz. The other ranks
wait for rank 0 on a collective before they read it.

The model logged to MLflow takes float32 (N, pixels) raw pixel values and returns logits (N, 10): it
reshapes and scales by itself, so clients send the pixels as they are.

Exit status: 0 trained and passed the gate; 3 test_accuracy below --min-accuracy (after the run was
logged and marked FAILED); 2 bad arguments or environment; 1 any other failure. Errors are one line.

Only the standard library is imported at module level, and workflow_cli (argument helpers shared with
model_registry.py and verify_inference.py, a standard-library file deployed beside this one): argument
parsing, the rank environment, the backend choice, the split, the idx reader and the gate are pure
functions (tests/unit/roles/mlops); numpy, torch, sklearn and mlflow are imported where they are used.
"""
import gzip
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

import workflow_cli  # the argument helpers shared with model_registry.py and verify_inference.py (beside this file)

PROG = "train_digits"
T0 = time.time()  # log lines carry the seconds since the process started
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BELOW_GATE = 3
DEFAULT_PORT = 29500
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# idx type codes (http://yann.lecun.com/exdb/mnist/): code -> (numpy dtype, size in bytes); big-endian
IDX_TYPES = {0x08: ("u1", 1), 0x09: ("i1", 1), 0x0B: (">i2", 2), 0x0C: (">i4", 4), 0x0D: (">f4", 4),
             0x0E: (">f8", 8)}


class UsageError(Exception):
    """Bad arguments or environment: exit 2."""


class TrainingError(Exception):
    """A failure while preparing, training or logging: exit 1."""


class _Parser(workflow_cli.RaisingParser):
    error_class = UsageError


_fraction = workflow_cli.fraction("a fraction")


def build_parser():
    parser = _Parser(prog=PROG, description="Train the digits CNN with torch DDP and log it to MLflow.")
    parser.add_argument("--data-dir", default="/shared/mlops/data",
                        help="shared directory of the prepared data set (written by rank 0 when missing)")
    parser.add_argument("--mnist-dir", help="directory with the four MNIST idx files (optionally .gz): use MNIST")
    parser.add_argument("--epochs", type=workflow_cli.positive_int, default=20)
    parser.add_argument("--batch-size", type=workflow_cli.positive_int, default=64, help="per process")
    parser.add_argument("--learning-rate", type=workflow_cli.positive_float, default=0.002, help="Adam's learning rate")
    parser.add_argument("--max-steps", type=workflow_cli.non_negative_int, default=0,
                        help="stop after this many optimizer steps (0: no limit); how a bad model is made")
    parser.add_argument("--min-accuracy", type=_fraction, default=0.95,
                        help="exit 3 (after logging, run marked FAILED) when test_accuracy is below this")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-fraction", type=_fraction, default=0.2, help="digits only: held-out share")
    parser.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto")
    parser.add_argument("--master-addr", help="rendezvous host (default: MASTER_ADDR, first host of "
                                              "SLURM_JOB_NODELIST, 127.0.0.1)")
    parser.add_argument("--master-port", type=workflow_cli.port,
                        help="rendezvous port (default: MASTER_PORT, 20000 + SLURM_JOB_ID %%%% 10000, %d)" % DEFAULT_PORT)
    parser.add_argument("--dist-timeout", type=workflow_cli.positive_int, default=300,
                        help="seconds a rank waits for the others (rendezvous, collectives)")
    parser.add_argument("--threads", type=workflow_cli.non_negative_int, default=0,
                        help="torch CPU threads per process (0: OMP_NUM_THREADS, else this process's CPUs / local ranks)")
    parser.add_argument("--experiment", default="digits", help="MLflow experiment")
    parser.add_argument("--run-name", help="MLflow run name (default: MLflow's)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--result-file", help="JSON summary of the run, written atomically by rank 0")
    return parser


def parse_args(argv, env=None):
    """The validated arguments; UsageError with a one-line message otherwise."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    if not args.experiment.strip():
        raise UsageError("argument --experiment: must not be empty")
    if args.test_fraction <= 0 or args.test_fraction >= 1:
        raise UsageError("argument --test-fraction: %s must be strictly between 0 and 1" % args.test_fraction)
    args.tracking_uri = workflow_cli.tracking_uri(args.tracking_uri, env, UsageError)
    return args


def _int_env(env, name):
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError("environment variable %s=%r is not an integer" % (name, value)) from None


def expand_hosts(nodelist):
    """Every host of a Slurm node list, without scontrol: 'cn[01-03,7],gpu1' -> cn01 cn02 cn03 cn7 gpu1.

    One bracket group per name (Slurm's usual form); ranges keep their zero padding.
    """
    nodelist = nodelist.strip()
    if not nodelist:
        raise UsageError("SLURM_JOB_NODELIST is empty")
    items, item, depth = [], "", 0
    for char in nodelist:
        if char == "," and depth == 0:
            items.append(item)
            item = ""
            continue
        depth += char == "["
        depth -= char == "]"
        item += char
    items.append(item)
    hosts = []
    for name in items:
        if "[" not in name:
            if name:
                hosts.append(name)
            continue
        prefix, rest = name.split("[", 1)
        ranges, _sep, suffix = rest.partition("]")
        if not _sep or "[" in suffix or not ranges:
            raise UsageError("cannot read the hosts of SLURM_JOB_NODELIST=%r" % nodelist)
        for part in ranges.split(","):
            low, _dash, high = part.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise UsageError("cannot read the hosts of SLURM_JOB_NODELIST=%r" % nodelist)
            for number in range(int(low), int(high or low) + 1):
                hosts.append("%s%0*d%s" % (prefix, len(low), number, suffix))
    return hosts


def first_host(nodelist):
    """The first host of a Slurm node list, without scontrol: 'cn[01-03,7],gpu1' -> 'cn01'."""
    hosts = expand_hosts(nodelist)
    if not hosts:
        raise UsageError("cannot read the first host of SLURM_JOB_NODELIST=%r" % nodelist)
    return hosts[0]


def slurm_first_host(nodelist, run=subprocess.run):
    """First host of the node list as `scontrol show hostnames` expands it (pure parsing without scontrol)."""
    try:
        done = run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30,
                   check=False)
    except (OSError, subprocess.SubprocessError):
        return first_host(nodelist)
    hosts = done.stdout.split()
    if done.returncode != 0 or not hosts:
        return first_host(nodelist)
    return hosts[0]


def slurm_hosts(nodelist, run=subprocess.run):
    """Every host of the node list as `scontrol show hostnames` expands it; parsed here without scontrol
    (inside a container image: rank 0 on the rendezvous host needs its peers to find its interface), [] if
    unreadable."""
    try:
        done = run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30,
                   check=False)
        if done.returncode == 0 and done.stdout.split():
            return done.stdout.split()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return expand_hosts(nodelist)
    except UsageError:
        return []


def collective_interface(master_addr, port, peers, route=None):
    """(interface, local IPv4, probed host) the ranks' collectives should use.

    The route to the rendezvous host, unless that is this host itself (rank 0 on the first node: the
    route is loopback, and a rank advertising 127.0.0.1 cannot be reached by the others): then the route
    to the first peer that is not reached over loopback. peers: the job's other hosts.
    """
    route = route or interface_for
    ifname, local = route(master_addr, port)
    if ifname != "lo":
        return ifname, local, master_addr
    for peer in peers:
        peer_ifname, peer_local = route(peer, port)
        if peer_ifname and peer_ifname != "lo":
            return peer_ifname, peer_local, peer
    return ifname, local, master_addr


def dist_settings(env, master_addr=None, master_port=None, run=subprocess.run):
    """rank, world_size, local_rank, local_world_size, master_addr, master_port and where they came from."""
    rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
    if (rank is None) != (world is None):
        raise UsageError("RANK and WORLD_SIZE must be set together (got RANK=%r WORLD_SIZE=%r)"
                         % (env.get("RANK"), env.get("WORLD_SIZE")))
    if rank is not None:
        source = "RANK/WORLD_SIZE"
        local_rank = _int_env(env, "LOCAL_RANK")
        local_world = _int_env(env, "LOCAL_WORLD_SIZE")
    elif _int_env(env, "SLURM_PROCID") is not None:
        source = "SLURM_PROCID/SLURM_NTASKS"
        rank, world = _int_env(env, "SLURM_PROCID"), _int_env(env, "SLURM_NTASKS")
        if world is None:
            raise UsageError("SLURM_PROCID is set but SLURM_NTASKS is not")
        local_rank = _int_env(env, "SLURM_LOCALID")
        local_world = None
        per_node = env.get("SLURM_TASKS_PER_NODE", "").split("(")[0].split(",")[0]
        if per_node.isdigit():
            local_world = int(per_node)
    else:
        source = "single process"
        rank, world, local_rank, local_world = 0, 1, 0, 1
    if world < 1 or not 0 <= rank < world:
        raise UsageError("rank %s is not within world size %s (%s)" % (rank, world, source))
    local_rank = rank if local_rank is None else local_rank
    local_world = local_world or 1
    if master_addr:
        addr, addr_from = master_addr, "--master-addr"
    elif env.get("MASTER_ADDR"):
        addr, addr_from = env["MASTER_ADDR"], "MASTER_ADDR"
    elif env.get("SLURM_JOB_NODELIST"):
        addr, addr_from = slurm_first_host(env["SLURM_JOB_NODELIST"], run=run), "SLURM_JOB_NODELIST"
    else:
        addr, addr_from = "127.0.0.1", "default"
    if master_port:
        port = master_port
    elif env.get("MASTER_PORT"):
        port = _int_env(env, "MASTER_PORT")
        if not 1 <= port <= 65535:
            raise UsageError("MASTER_PORT=%s is not a port (1-65535)" % port)
    elif _int_env(env, "SLURM_JOB_ID") is not None:
        port = 20000 + _int_env(env, "SLURM_JOB_ID") % 10000
    else:
        port = DEFAULT_PORT
    return {"rank": rank, "world_size": world, "local_rank": local_rank, "local_world_size": local_world,
            "master_addr": addr, "master_port": port, "source": source, "master_addr_from": addr_from}


def cuda_devices_named(visible):
    """Whether CUDA_VISIBLE_DEVICES names at least one device (unset, '', -1 and NoDevFiles do not)."""
    if visible is None:
        return False
    first = visible.split(",")[0].strip()
    return bool(first) and first not in ("-1", "NoDevFiles") and not first.startswith("-")


def choose_backend(requested, cuda_available, visible):
    """(backend, reason): auto picks nccl only with CUDA available and a device named in CUDA_VISIBLE_DEVICES."""
    named = cuda_devices_named(visible)
    if requested == "gloo":
        return "gloo", "requested with --backend gloo"
    if requested == "nccl":
        if not cuda_available:
            raise UsageError("argument --backend: nccl needs CUDA, but torch.cuda.is_available() is false here "
                             "(valid here: gloo or auto)")
        if not named:
            raise UsageError("argument --backend: nccl needs a GPU, but CUDA_VISIBLE_DEVICES=%r names none "
                             "(valid here: gloo or auto)" % visible)
        return "nccl", "requested with --backend nccl"
    if cuda_available and named:
        return "nccl", "auto: CUDA is available and CUDA_VISIBLE_DEVICES=%s" % visible
    if not cuda_available:
        return "gloo", "auto: torch.cuda.is_available() is false"
    return "gloo", "auto: CUDA_VISIBLE_DEVICES=%r names no device" % visible


def interface_for(address, port=DEFAULT_PORT):
    """(interface, local IPv4) the kernel routes to address by, without sending anything; Nones if unknown.

    gloo and NCCL otherwise pick their interface from the host name, which Debian's /etc/hosts maps to
    127.0.1.1: the other nodes could not reach rank 0 there.
    """
    import fcntl
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, port))  # UDP: chooses the route and source address, sends no packet
            local = probe.getsockname()[0]
            for _index, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(probe.fileno(), 0x8915,  # SIOCGIFADDR
                                         struct.pack("256s", name[:15].encode()))
                except OSError:
                    continue
                if socket.inet_ntoa(packed[20:24]) == local:
                    return name, local
    except OSError:
        return None, None
    return None, local


def torch_threads(requested, cpus, local_world_size, omp_num_threads=None):
    """CPU threads per process: --threads, else OMP_NUM_THREADS, else this process's CPUs per local rank."""
    if requested:
        return requested
    if omp_num_threads and omp_num_threads.strip().isdigit() and int(omp_num_threads) > 0:
        return int(omp_num_threads)
    return max(1, cpus // max(1, local_world_size))


def stratified_split(labels, test_fraction, seed):
    """(train indices, test indices), seeded, each class split in the same proportion; both sorted."""
    by_class = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        count = int(round(len(members) * test_fraction))
        if len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        test.extend(members[:count])
        train.extend(members[count:])
    return sorted(train), sorted(test)


def parse_idx_header(blob, name="idx data"):
    """(numpy dtype, item size, dims, data offset) of an idx file's bytes; ValueError when it is not one."""
    if len(blob) < 4:
        raise ValueError("%s: too short for an idx header (%d bytes)" % (name, len(blob)))
    zero, code, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or code not in IDX_TYPES or ndim < 1:
        raise ValueError("%s: not an idx file (magic %s)" % (name, blob[:4].hex()))
    offset = 4 + 4 * ndim
    if len(blob) < offset:
        raise ValueError("%s: header of %d dimensions is truncated" % (name, ndim))
    dims = struct.unpack(">%dI" % ndim, blob[4:offset])
    dtype, size = IDX_TYPES[code]
    expected = size
    for dim in dims:
        expected *= dim
    if len(blob) - offset != expected:
        raise ValueError("%s: %d data bytes for dimensions %s, expected %d" % (
            name, len(blob) - offset, "x".join(map(str, dims)), expected))
    return dtype, size, dims, offset


def read_idx_bytes(path):
    """The bytes of an idx file, gunzipped when it ends in .gz."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError("%s: cannot read: %s" % (path, exc)) from None


def find_mnist_files(directory):
    """{role: path} of the four MNIST files in directory (plain or .gz); None when it holds none of them."""
    if not directory or not os.path.isdir(directory):
        return None
    found, missing = {}, []
    for role, base in MNIST_FILES.items():
        for candidate in (base, base + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                found[role] = path
                break
        else:
            missing.append(base + "[.gz]")
    if not found:
        return None
    if missing:
        raise UsageError("argument --mnist-dir: %s has only some MNIST files; missing %s" % (
            directory, ", ".join(missing)))
    return found


def gate(test_accuracy, min_accuracy):
    """(passed, one-line message) of the job's accuracy gate."""
    if test_accuracy >= min_accuracy:
        return True, "test_accuracy %.4f >= %.4f (--min-accuracy)" % (test_accuracy, min_accuracy)
    return False, "test_accuracy %.4f < %.4f (--min-accuracy): the model is not good enough" % (
        test_accuracy, min_accuracy)


def write_atomic(path, data):
    """Write bytes to path through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def write_json_atomic(path, obj):
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def log(rank, message):
    print("[rank %d %+7.1fs] %s" % (rank, time.time() - T0, message), flush=True)


# --- data ---------------------------------------------------------------------------------------

def idx_to_numpy(path):
    import numpy as np
    blob = read_idx_bytes(path)
    dtype, _size, dims, offset = parse_idx_header(blob, path)
    return np.frombuffer(blob, dtype=np.dtype(dtype), offset=offset).reshape(dims)


def build_dataset(args):
    """(file name, arrays) of the data set the arguments name."""
    import numpy as np
    mnist = find_mnist_files(args.mnist_dir)
    if mnist:
        arrays = {}
        for part in ("train", "test"):
            images = idx_to_numpy(mnist[part + "_images"])
            labels = idx_to_numpy(mnist[part + "_labels"])
            if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                raise TrainingError("MNIST %s files do not match: images %s, labels %s" % (
                    part, images.shape, labels.shape))
            arrays["X_" + part] = images.reshape(images.shape[0], -1).astype(np.float32)
            arrays["y_" + part] = labels.astype(np.int64)
        arrays["source"] = np.array("mnist")
        arrays["pixel_max"] = np.array(255.0, dtype=np.float32)
        return "mnist.npz", arrays
    from sklearn.datasets import load_digits
    digits = load_digits()
    train, test = stratified_split(digits.target.tolist(), args.test_fraction, args.seed)
    X = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    return "digits.npz", {"X_train": X[train], "y_train": y[train], "X_test": X[test], "y_test": y[test],
                          "source": np.array("digits"), "pixel_max": np.array(16.0, dtype=np.float32),
                          "seed": np.array(args.seed), "test_fraction": np.array(args.test_fraction)}


def data_file_name(args):
    return "mnist.npz" if find_mnist_files(args.mnist_dir) else "digits.npz"


def prepare_data(args, rank):
    """Rank 0: write the data set once (atomically); returns its path."""
    import io
    import numpy as np
    path = os.path.join(args.data_dir, data_file_name(args))
    if os.path.exists(path):
        log(rank, "data: %s exists, reused" % path)
        return path
    name, arrays = build_dataset(args)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(os.path.join(args.data_dir, name), buffer.getvalue())
    log(rank, "data: wrote %s (%d train, %d test, %d pixels)" % (
        path, len(arrays["y_train"]), len(arrays["y_test"]), arrays["X_train"].shape[1]))
    return path


def load_data(path):
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("X_train", "y_train", "X_test", "y_test", "source", "pixel_max")}
    except (OSError, KeyError, ValueError) as exc:
        raise TrainingError("data file %s is not a data set this job wrote (%s); delete it to have it "
                            "written again" % (path, exc)) from None
    side = int(round(math.sqrt(arrays["X_train"].shape[1])))
    if side * side != arrays["X_train"].shape[1] or arrays["X_test"].shape[1] != arrays["X_train"].shape[1]:
        raise TrainingError("data file %s: %d pixels per image is not a square image" % (
            path, arrays["X_train"].shape[1]))
    return arrays


# --- model --------------------------------------------------------------------------------------

def make_model(pixels, pixel_max):
    """conv16-conv32-maxpool-fc64-fc10 over (N, pixels) raw pixel values; scales and reshapes inside."""
    import torch
    from torch import nn

    side = int(round(math.sqrt(pixels)))
    scale = 1.0 / float(pixel_max)

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(32 * (side // 2) * (side // 2), 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = x.reshape(-1, 1, side, side) * scale
            x = torch.relu(self.conv1(x))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

    return DigitsCNN()


def predict_labels(model, X, batch_size=512):
    import numpy as np
    import torch
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            out.append(model(torch.from_numpy(X[start:start + batch_size])).argmax(dim=1).numpy())
    return np.concatenate(out)


def accuracy(predicted, labels):
    correct = int((predicted == labels).sum())
    return correct, correct / len(labels)


# --- the job ------------------------------------------------------------------------------------

def all_ok(dist, ok, device):
    """Collective: True when every rank is ok (also the barrier the ranks wait on)."""
    import torch
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def start_mlflow_run(args):
    import mlflow
    workflow_cli.check_tracking_server(args.tracking_uri, TrainingError)
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment)
    run = mlflow.start_run(run_name=args.run_name)
    mlflow.set_tags({"aihow.job": "train_digits", "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")})
    return run


def run_job(args):
    import datetime
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    started = time.time()
    settings = dist_settings(os.environ, args.master_addr, args.master_port)
    rank = settings["rank"]
    backend, reason = choose_backend(args.backend, torch.cuda.is_available(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    log(rank, "rank %d of %d (%s), rendezvous %s:%d (%s), backend %s (%s)" % (
        rank, settings["world_size"], settings["source"], settings["master_addr"], settings["master_port"],
        settings["master_addr_from"], backend, reason))
    if backend == "nccl":
        device = torch.device("cuda", settings["local_rank"] % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        threads = torch_threads(args.threads, len(os.sched_getaffinity(0)), settings["local_world_size"],
                                os.environ.get("OMP_NUM_THREADS"))
        torch.set_num_threads(threads)
        log(rank, "torch CPU threads: %d" % threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    ifname_var = "NCCL_SOCKET_IFNAME" if backend == "nccl" else "GLOO_SOCKET_IFNAME"
    if settings["world_size"] > 1 and not os.environ.get(ifname_var):
        own = {socket.gethostname(), socket.gethostname().split(".")[0]}
        peers = [h for h in slurm_hosts(os.environ.get("SLURM_JOB_NODELIST", "")) if h not in own] \
            if os.environ.get("SLURM_JOB_NODELIST") else []
        ifname, local, probed = collective_interface(settings["master_addr"], settings["master_port"], peers)
        if ifname:
            os.environ[ifname_var] = ifname
            log(rank, "%s=%s (%s, the route to %s)" % (ifname_var, ifname, local, probed))
    os.environ["MASTER_ADDR"] = settings["master_addr"]
    os.environ["MASTER_PORT"] = str(settings["master_port"])
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=settings["world_size"],
                            timeout=datetime.timedelta(seconds=args.dist_timeout))
    mlflow_run = None
    try:
        # Rank 0 writes the data once and opens the MLflow run; the others wait here for it.
        error = None
        if rank == 0:
            try:
                prepare_data(args, rank)
                mlflow_run = start_mlflow_run(args)
            except (TrainingError, UsageError, OSError, ValueError) as exc:
                error = exc
            except Exception as exc:  # pylint: disable=broad-except  # MLflow's many exception types
                error = TrainingError("MLflow: %s" % " ".join(str(exc).split()))
        if not all_ok(dist, error is None, device):
            if error is not None:
                raise error
            raise TrainingError("rank 0 failed to prepare the data or the MLflow run (see its log)")
        data_path = os.path.join(args.data_dir, data_file_name(args))
        data = load_data(data_path)
        X_train, y_train = data["X_train"], data["y_train"]
        X_test, y_test = data["X_test"], data["y_test"]
        pixels = X_train.shape[1]
        source = str(data["source"])
        model = make_model(pixels, float(data["pixel_max"])).to(device)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if backend == "nccl" else None)
        dataset = TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train))
        sampler = DistributedSampler(dataset, num_replicas=settings["world_size"], rank=rank, shuffle=True,
                                     seed=args.seed)
        loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
        optimizer = torch.optim.Adam(ddp.parameters(), lr=args.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss()
        if rank == 0:
            import mlflow
            mlflow.log_params({
                "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "max_steps": args.max_steps, "world_size": settings["world_size"], "backend": backend,
                "data_source": source, "train_size": len(y_train), "test_size": len(y_test), "pixels": pixels,
                "seed": args.seed, "global_batch_size": args.batch_size * settings["world_size"],
            })
        steps = 0
        epochs_done = 0
        test_acc = 0.0
        for epoch in range(args.epochs):
            epoch_start = time.time()
            sampler.set_epoch(epoch)
            ddp.train()
            totals = torch.zeros(2, dtype=torch.float64, device=device)
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                optimizer.zero_grad()
                loss = loss_fn(ddp(images), labels)
                loss.backward()
                optimizer.step()
                steps += 1
                totals[0] += loss.item() * len(labels)
                totals[1] += len(labels)
                if args.max_steps and steps >= args.max_steps:
                    break
            dist.all_reduce(totals)
            train_loss = float(totals[0] / totals[1])
            epochs_done = epoch + 1
            if rank == 0:
                test_acc = accuracy(predict_labels(model, X_test), y_test)[1]
                mlflow.log_metrics({"train_loss": train_loss, "test_accuracy": test_acc,
                                    "epoch_seconds": time.time() - epoch_start}, step=epoch + 1)
                log(rank, "epoch %d/%d: train_loss %.4f test_accuracy %.4f steps %d (%.2f s)" % (
                    epoch + 1, args.epochs, train_loss, test_acc, steps, time.time() - epoch_start))
            if args.max_steps and steps >= args.max_steps:
                log(rank, "stopping after %d optimizer steps (--max-steps)" % steps)
                break
        train_seconds = time.time() - started
        all_ok(dist, True, device)  # every rank is done training
    except BaseException:
        if mlflow_run is not None:
            import mlflow
            mlflow.end_run(status="FAILED")
        raise
    finally:
        dist.destroy_process_group()
    if rank != 0:
        log(rank, "done: %d epochs, %d steps in %.1f s" % (epochs_done, steps, train_seconds))
        return 0
    return finish_rank0(args, model, X_test, y_test, settings, backend, source, epochs_done, steps, started,
                        train_seconds)


def finish_rank0(args, model, X_test, y_test, settings, backend, source, epochs, steps, started, train_seconds):
    """Log the model, measure the logged model's test accuracy, apply the gate, write the result file."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    run = mlflow.active_run()
    try:
        model = model.to("cpu").eval()
        example = X_test[:5]
        with torch.no_grad():
            logits = model(torch.from_numpy(example)).numpy()
        signature = infer_signature(example, logits)
        log_start = time.time()
        info = mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=example,
                                        pip_requirements=["torch==%s" % torch.__version__.split("+")[0]])
        # The accuracy that counts is the logged model's, loaded back as the servers load it.
        served = mlflow.pyfunc.load_model(info.model_uri)
        predicted = served.predict(X_test).argmax(axis=1)
        correct, test_acc = accuracy(predicted, y_test)
        eager_correct = accuracy(predict_labels(model, X_test), y_test)[0]
        if eager_correct != correct:
            log(0, "warning: the logged model gets %d right, the trained module %d" % (correct, eager_correct))
        passed, message = gate(test_acc, args.min_accuracy)
        # at the last epoch's step (logged later): MLflow's latest value, the one the registry reads
        mlflow.log_metrics({"test_accuracy": test_acc, "test_correct": correct,
                            "train_seconds": train_seconds, "steps": steps}, step=epochs)
        mlflow.set_tags({"gate": "passed" if passed else "failed", "gate_min_accuracy": str(args.min_accuracy)})
        seconds = time.time() - T0  # the whole process, imports included
        result = {"run_id": run.info.run_id, "model_uri": info.model_uri,
                  "run_model_uri": "runs:/%s/model" % run.info.run_id, "experiment": args.experiment,
                  "test_accuracy": test_acc, "test_correct": correct, "test_size": int(len(y_test)),
                  "world_size": settings["world_size"], "backend": backend, "epochs": epochs, "steps": steps,
                  "data_source": source, "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
                  "gate_passed": passed, "min_accuracy": args.min_accuracy}
        if args.result_file:
            write_json_atomic(args.result_file, result)
        mlflow.end_run(status="FINISHED" if passed else "FAILED")
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    log(0, "model logged in %.1f s: %s (run %s)" % (time.time() - log_start, info.model_uri, run.info.run_id))
    log(0, "result: %s" % json.dumps(result, sort_keys=True))
    if not passed:
        print("%s: FAILED: %s (run %s marked FAILED in MLflow)" % (PROG, message, run.info.run_id),
              file=sys.stderr, flush=True)
        return EXIT_BELOW_GATE
    log(0, "gate: %s" % message)
    return 0


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return run_job(args)
    except UsageError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_USAGE
    except TrainingError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("%s: interrupted" % PROG, file=sys.stderr)
        return 130
    except Exception as exc:  # pylint: disable=broad-except  # one line for the job log, not a traceback
        if os.environ.get("AIHOW_DEBUG"):
            raise
        print("%s: error: %s: %s" % (PROG, type(exc).__name__, " ".join(str(exc).split())), file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
