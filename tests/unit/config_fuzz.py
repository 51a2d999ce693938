"""A seeded mutation fuzzer for cluster.yaml: our own templates (config/*.yml), mutated as a careless user would.

Each case is ``(case_id, description, data)`` where ``data`` is the bytes of a file. Cases come from
``cases(seed, count)`` and are reproducible: ``case(seed, i)`` rebuilds case i alone. Mutations are of
two kinds: on the parsed data (a value replaced by a hostile one, a key dropped, renamed or added, an
item duplicated) and on the text (a line duplicated, dropped or re-indented, bytes that are not UTF-8,
a truncation, deep nesting, alias bombs). ``check(data)`` runs one case through the config model and
everything that reads a valid model, and returns what went wrong (None when the model behaved).

Used by tests/unit/plugins/module_utils/config/test_fuzz.py (a fixed budget) and by
benchmarks/fuzz_config.py (a longer run, in docs/benchmarks.md).
"""
import math
import os
import random
import re
import signal
import traceback

import yaml

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ClusterConfig,
    ConfigError,
    parse_cluster_config,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.report import render_text, summary
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.inventory import inventory_from_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = ("minimal.yml", "mlops.yml", "workstation.yml", "production.yml")

# Values a careless edit puts where something else was expected.
HOSTILE_VALUES = [
    None, "", "x", " ", -1, 0, 1, 3, 2.0, 0.3, 1e308, -0.0, float("nan"), float("inf"), float("-inf"),
    10 ** 11, 2 ** 64, True, False, [], {}, [None], ["x", "x"], {"a": 1}, {"x": {"y": {"z": []}}},
    "10.0.0.1-10.255.255.254", "192.168.100.11-10", "192.168.100.0/33", "192.168.100.7/24", "300.1.1.1",
    "lo", "virbr0", "25:99:00", "00:75", "1-24", "UNLIMITED", "a" * 5000, "\u00e9\u4e2d\U0001f600",
    "0000:zz:00.0", "NVIDIA GH200 480GB", "0x20b2", "20b2", "1g.10gb", "7g.80gb+me", "~/missing.qcow2",
    "/nonexistent/base.qcow2", "qemu+ssh://root@gpu2/system", "hpc-compute-01", "compute", "mig", "all",
    "gpu", "${HOME}", "{{ lookup('pipe', 'id') }}",
]
HOSTILE_KEYS = [5, True, None, 2.5, "Upper", "x" * 300, "compute_node", "1g.5gb", "hpc-compute-99", ""]
TEXT_INSERTS = [b"\xff\xfe", b"\x00", b"\t", b": :", b"- ", b"&a ", b"*a", b"!!python/object:os.system ",
                b"\"", b"'", b"{", b"]", b"<<: ", b"? ", b"\xc3", b"\r\n", b"---\n", b"%YAML 1.1\n"]


class CaseTimeout(Exception):
    pass


def _template_texts():
    out = {}
    for name in TEMPLATES:
        with open(os.path.join(REPO, "config", name), "rb") as handle:
            out[name] = handle.read()
    return out


_TEXTS = _template_texts()
_DATA = dict((name, yaml.safe_load(text)) for name, text in _TEXTS.items())


def _paths(value, path=()):
    """Every path (tuple of keys and indexes) inside a parsed template, parents before children."""
    yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, path + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _paths(sub, path + (i,))


def _get(value, path):
    for part in path:
        value = value[part]
    return value


def _hostile(rng):
    value = rng.choice(HOSTILE_VALUES)
    return value if not isinstance(value, (list, dict)) else yaml.safe_load(yaml.safe_dump(value))


def _mutate_data(rng, data):
    """One structural change to a deep copy of a template; returns (description, data)."""
    paths = [p for p in _paths(data) if p]
    path = rng.choice(paths)
    parent = _get(data, path[:-1])
    last = path[-1]
    kind = rng.choice(["replace", "replace", "replace", "delete", "rename", "add", "duplicate", "swap"])
    if kind == "replace":
        value = _hostile(rng)
        parent[last] = value
        return "replace %s with %r" % ("/".join(map(str, path)), value if not isinstance(value, str)
                                       else value[:40]), data
    if kind == "delete":
        del parent[last]
        return "delete %s" % "/".join(map(str, path)), data
    if kind == "rename" and isinstance(parent, dict):
        key = rng.choice(HOSTILE_KEYS)
        parent[key] = parent.pop(last)
        return "rename %s to %r" % ("/".join(map(str, path)), key), data
    if kind == "add" and isinstance(parent, dict):
        key = rng.choice(HOSTILE_KEYS + ["count", "nodes", "max_time", "bridge", "base_image", "gateway"])
        parent[key] = _hostile(rng)
        return "add %r under %s" % (key, "/".join(map(str, path[:-1]))), data
    if kind == "duplicate" and isinstance(parent, list):
        parent.append(yaml.safe_load(yaml.safe_dump(parent[last])))
        return "duplicate item %s" % "/".join(map(str, path)), data
    other = rng.choice([p for p in paths if p[:len(path)] != path and path[:len(p)] != p] or [path])
    try:
        a, b = _get(data, path), _get(data, other)
        parent[last] = b
        _get(data, other[:-1])[other[-1]] = a
    except (KeyError, IndexError, TypeError):
        pass
    return "swap %s and %s" % ("/".join(map(str, path)), "/".join(map(str, other))), data


def _mutate_text(rng, text):
    """One textual change to a template's bytes; returns (description, bytes)."""
    lines = text.split(b"\n")
    kind = rng.choice(["dup-line", "dup-line", "drop-line", "indent", "insert", "truncate", "digit",
                       "deep", "aliases", "recursive", "long-number"])
    i = rng.randrange(len(lines))
    if kind == "dup-line":
        lines.insert(i, lines[i])
        return "duplicate line %d" % (i + 1), b"\n".join(lines)
    if kind == "drop-line":
        del lines[i]
        return "drop line %d" % (i + 1), b"\n".join(lines)
    if kind == "indent":
        lines[i] = b" " * rng.choice([1, 2, 3, 4, 8]) + lines[i]
        return "indent line %d" % (i + 1), b"\n".join(lines)
    if kind == "insert":
        at = rng.randrange(len(text) + 1)
        junk = rng.choice(TEXT_INSERTS)
        return "insert %r at byte %d" % (junk, at), text[:at] + junk + text[at:]
    if kind == "truncate":
        at = rng.randrange(len(text) + 1)
        return "truncate at byte %d" % at, text[:at]
    if kind == "digit":
        digits = [m.start() for m in re.finditer(rb"[0-9]", text)]
        at = rng.choice(digits)
        new = rng.choice([b"0", b"9", b"99999999999", b"-1", b".5", b"e9"])
        return "replace digit at byte %d with %r" % (at, new), text[:at] + new + text[at + 1:]
    if kind == "deep":
        depth = rng.choice([10, 60, 70, 500, 5000])
        return "nest %d levels" % depth, text + b"\nextra: " + b"[" * depth + b"]" * depth + b"\n"
    if kind == "aliases":
        bomb = [b"bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
        for n in range(1, 9):
            bomb.append(b"bomb%d: &b%d [%s]" % (n, n, b", ".join([b"*b%d" % (n - 1)] * 10)))
        return "alias bomb", text + b"\n" + b"\n".join(bomb) + b"\n"
    if kind == "recursive":
        return "recursive alias", text + b"\nloop: &loop [*loop]\n"
    return "a 5000-digit number", text + b"\nbig: " + b"9" * 5000 + b"\n"


def case(seed, index):
    """Case ``index`` of the run with ``seed``: (case_id, description, bytes)."""
    rng = random.Random("%s/%d" % (seed, index))
    name = rng.choice(TEMPLATES)
    if rng.random() < 0.5:
        data = yaml.safe_load(yaml.safe_dump(_DATA[name]))
        changes = []
        for _change in range(rng.choice([1, 1, 1, 2, 3])):
            what, data = _mutate_data(rng, data)
            changes.append(what)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")
    else:
        what, text = _mutate_text(rng, _TEXTS[name])
        changes = [what]
    return "%s/%d" % (seed, index), "%s: %s" % (name, "; ".join(changes)), text


def cases(seed, count):
    for index in range(count):
        yield case(seed, index)


# A whole-document problem has no field to name; every other rejection must name its path.
WHOLE_DOCUMENT = re.compile(r"the file is empty|the file holds a|more than \d+ values|thousands of digits|"
                            r"not valid YAML|not UTF-8|nested more than|refers to itself|is \d+ bytes|more problems not listed")
POSITION = re.compile(r"^line \d+, column \d+$")


def _on_alarm(_signum, _frame):
    raise CaseTimeout()


def check(data, seconds=5, outcome=None):
    """Run one file through the model (and, when valid, what reads the model); None or what went wrong.

    ``outcome``, a dict, gets ``ended``: valid, yaml (refused while reading) or model (refused by a check).
    """
    outcome = {} if outcome is None else outcome
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            config = parse_cluster_config(data, "fuzz.yml")
        except ConfigError as exc:
            outcome["ended"] = "yaml" if exc.issues and POSITION.match(exc.issues[0].path) else "model"
            if not exc.issues:
                return "ConfigError without issues"
            for issue in exc.issues:
                if not issue.message or not issue.path:
                    return "an issue without path or message: %r" % issue
                if issue.path == "(top level)" and not WHOLE_DOCUMENT.search(issue.message):
                    return "rejected without naming a path: %s" % issue
                if "Traceback" in issue.message:
                    return "a traceback in the message: %s" % issue
            return None
        outcome["ended"] = "valid"
        if not isinstance(config, ClusterConfig):
            return "neither a ClusterConfig nor a ConfigError: %r" % (config,)
        # A valid model must be usable by everything that reads it.
        inventory_from_config(config, local_python="/usr/bin/python3")
        render_text(config)
        summary(config)
        for node in config.nodes:
            if not isinstance(node.cpu_cores, int) or isinstance(node.cpu_cores, bool):
                return "%s.cpu_cores kept as %r" % (node.name, node.cpu_cores)
            if not math.isfinite(node.memory_gb):
                return "%s.memory_gb is %r" % (node.name, node.memory_gb)
        return None
    except CaseTimeout:
        return "no answer within %d s (a hang)" % seconds
    except Exception:  # the point of the fuzzer: anything else is a defect
        return "crashed:\n%s" % traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
