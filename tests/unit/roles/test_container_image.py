"""roles/container_runtime/files/hs-container-image in hash mode (no buildah needed), and the inventory's
hyperscaler_containers: the content hash the role compares with the registry's label changes exactly when
what goes into the image changes; runtime none or registry.enabled false turn the registry off."""
import copy
import os
import subprocess

import pytest

from helpers import load_yaml, repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.inventory import container_settings
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import ConfigError, build_cluster_config

SCRIPT = repo_path("roles", "container_runtime", "files", "hs-container-image")


def _hash(paths, env=None):
    done = subprocess.run(["bash", SCRIPT, "hash", "127.0.0.1:5000/x/y:z"] + [str(p) for p in paths],
                          capture_output=True, text=True, env=dict(os.environ, HS_IMAGE_CONF="/nonexistent", **(env or {})), check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs the system python3 the image is made of")
def test_the_hash_follows_the_content(tmp_path):
    tree = tmp_path / "venv"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "a.py").write_text("print(1)\n")
    first = _hash([tree])
    assert len(first) == 64 and first == _hash([tree])
    (tree / "lib" / "a.py").write_text("print(2)\n")  # other size
    second = _hash([tree])
    assert second != first
    (tree / "lib" / "b.py").write_text("")
    third = _hash([tree])
    assert third != second
    # Left out: the excluded file does not count, the exclusion itself does.
    excluded = _hash([tree], {"HS_IMAGE_EXCLUDE": str(tree / "lib" / "b.py")})
    (tree / "lib" / "b.py").write_text("changed, but excluded")
    assert _hash([tree], {"HS_IMAGE_EXCLUDE": str(tree / "lib" / "b.py")}) == excluded != third
    assert _hash([tree], {"HS_IMAGE_MOUNTS": "/shared /scratch"}) != _hash([tree], {"HS_IMAGE_MOUNTS": "/shared"})


def test_a_missing_path_is_refused(tmp_path):
    done = subprocess.run(["bash", SCRIPT, "hash", "r", str(tmp_path / "nope")], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = subprocess.run(["bash", SCRIPT, "push", "r"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "unknown mode" in done.stderr


def _config(containers):
    raw = load_yaml("config", "minimal.yml")
    raw["clusters"]["hpc"]["containers"] = copy.deepcopy(containers)
    return build_cluster_config(raw, "minimal-test.yml")


def test_the_inventory_names_the_registry_on_the_controllers_address():
    settings = container_settings(_config({"runtime": "charliecloud", "registry": {"port": 5443},
                                           "image": {"name": "lab/train", "tag": "v2"}}))
    assert settings["runtime"] == "charliecloud"
    assert settings["registry"] == {"enabled": True, "host": "192.168.100.10", "port": 5443,
                                    "address": "192.168.100.10:5443", "server": "hpc-controller"}
    assert settings["image"]["ref"] == "192.168.100.10:5443/lab/train:v2"


def test_containers_are_off_by_default():
    settings = container_settings(_config({}))
    assert settings["runtime"] == "none" and settings["registry"]["enabled"] is False


@pytest.mark.parametrize("containers", [{"runtime": "none"}, {"runtime": "charliecloud", "registry": {"enabled": False}}])
def test_no_registry_without_a_runtime_or_when_disabled(containers):
    assert container_settings(_config(containers))["registry"]["enabled"] is False


@pytest.mark.parametrize("port, what", [(6817, "slurmctld"), (9100, "node exporter"), (22, "SSH")])
def test_the_registry_port_must_be_free_on_the_controller(port, what):
    with pytest.raises(ConfigError) as exc:
        _config({"runtime": "charliecloud", "registry": {"port": port}})
    messages = [i.message for i in exc.value.issues if i.path == "clusters.hpc.containers.registry.port"]
    assert messages and what in messages[0], exc.value


def test_a_taken_port_is_fine_without_a_registry():
    assert container_settings(_config({"runtime": "none", "registry": {"port": 9090}}))["registry"]["enabled"] is False
