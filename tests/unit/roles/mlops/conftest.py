"""The ML workflow's programs (roles/mlops_pipeline/files, roles/model_server/files) as modules.

They import only the standard library at module level (numpy, torch, sklearn, mlflow and kserve inside
the functions that use them), so the unit tier's .venv, which has none of those, tests their pure
parts: argument parsing, the rank environment, the backend choice, the split, the idx reader, the
gates, payload validation and the verification arithmetic. The real stack runs in
tests/integration/mlops-native.sh.

The three roles/mlops_pipeline/files programs `import workflow_cli`, the file beside them. Run as a
script, Python finds it because the script's directory comes first on sys.path; loaded here from a
file location it does not, so that directory is put on sys.path as well.
"""
import importlib
import os
import sys

import pytest

from helpers import REPO
from helpers import load_script as load_repo_script

SCRIPTS = {
    "train": ("roles", "mlops_pipeline", "files", "train_digits.py"),
    "registry": ("roles", "mlops_pipeline", "files", "model_registry.py"),
    "verify": ("roles", "mlops_pipeline", "files", "verify_inference.py"),
    "server": ("roles", "model_server", "files", "hyperscaler_model_server.py"),
}


PIPELINE_FILES = os.path.join(REPO, "roles", "mlops_pipeline", "files")
if PIPELINE_FILES not in sys.path:
    sys.path.insert(0, PIPELINE_FILES)


def load_script(key):
    return load_repo_script("mlops_" + key, *SCRIPTS[key])


@pytest.fixture(scope="session")
def train():
    return load_script("train")


@pytest.fixture(scope="session")
def registry():
    return load_script("registry")


@pytest.fixture(scope="session")
def verify():
    return load_script("verify")


@pytest.fixture(scope="session")
def server():
    return load_script("server")


@pytest.fixture(scope="session")
def cli():
    """roles/mlops_pipeline/files/workflow_cli.py, the module the programs import."""
    module = importlib.import_module("workflow_cli")
    assert os.path.dirname(os.path.abspath(module.__file__)) == PIPELINE_FILES
    return module


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
