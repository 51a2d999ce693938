"""Every plugin's DOCUMENTATION/EXAMPLES/RETURN parses and renders (what ansible-doc and Galaxy show)."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import repo_path

MODULES = sorted(f[:-3] for f in os.listdir(repo_path("plugins", "modules")) if f.endswith(".py")
                 and not f.startswith("_"))
INVENTORY = sorted(f[:-3] for f in os.listdir(repo_path("plugins", "inventory")) if f.endswith(".py")
                   and not f.startswith("_"))
CALLBACKS = sorted(f[:-3] for f in os.listdir(repo_path("plugins", "callback")) if f.endswith(".py")
                   and not f.startswith("_"))


def ansible_doc(kind, name):
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=repo_path(".build", "collections"))
    done = subprocess.run([exe, "--json", "-t", kind, "aihow.hyperscaler.%s" % name], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["aihow.hyperscaler.%s" % name]


@pytest.mark.parametrize("name", MODULES)
def test_module_docs_render_and_examples_parse(name):
    doc = ansible_doc("module", name)
    assert doc["doc"]["short_description"] and doc["doc"]["options"] is not None
    examples = list(yaml.safe_load_all(doc["examples"]))
    assert examples and all(isinstance(e, list) for e in examples if e is not None)
    assert doc["return"] is not None


@pytest.mark.parametrize("name", INVENTORY)
def test_inventory_docs_render(name):
    doc = ansible_doc("inventory", name)
    assert "config" in doc["doc"]["options"] and "compose" in doc["doc"]["options"]
    assert all(isinstance(e, dict) for e in yaml.safe_load_all(doc["examples"]) if e is not None)


@pytest.mark.parametrize("name", CALLBACKS)
def test_callback_docs_render(name):
    doc = ansible_doc("callback", name)
    assert doc["doc"]["short_description"] and doc["doc"]["options"]
    # Not a stdout callback: the default output stays (ansible.cfg lists it in callbacks_enabled).
    assert doc["doc"]["type"] in ("aggregate", "notification")
