"""Shared test helpers: load the repo's example configs and collect validation issues."""
import copy
import importlib.util
import os
import time

import yaml

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ConfigError,
    build_cluster_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repo_path(*parts):
    return os.path.join(REPO, *parts)


def load_script(module_name, *parts):
    """Import a program the roles deploy (roles/<role>/files/<name>.py) from its file, as module_name."""
    spec = importlib.util.spec_from_file_location(module_name, repo_path(*parts))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_yaml(*parts):
    with open(repo_path(*parts)) as handle:
        return yaml.safe_load(handle)


def issues_of(raw):
    """Every (path, message) the model reports for ``raw``; [] when it is valid."""
    try:
        build_cluster_config(copy.deepcopy(raw), "test.yml")
    except ConfigError as exc:
        return [(i.path, i.message) for i in exc.issues]
    return []


def assert_issue(raw, path, *fragments):
    """Exactly the expected problem is reported at ``path`` and its message has every fragment."""
    found = issues_of(raw)
    matching = [m for p, m in found if p == path]
    assert matching, "no issue at %s; got %r" % (path, found)
    assert any(all(f in m for f in fragments) for m in matching), "message at %s lacks %r: %r" % (
        path, fragments, matching)
    return found


def assert_clean_failure(result, failed, *needles):
    """A module failed with a message for a person: no "internal error", no traceback, every needle in msg."""
    assert failed, result
    assert "internal error" not in result["msg"] and "exception" not in result, result
    for needle in needles:
        assert needle in result["msg"], (needle, result["msg"])


def wait_until(condition, seconds=10.0):
    """Poll condition() until it is true (True) or seconds pass (False): for threads under test."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
