#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The long run of the cluster.yaml fuzzer (tests/unit/config_fuzz.py); prints a markdown summary.

The unit tier runs 400 cases of seed "unit"; this runs many more of another seed and fails (exit 1)
when any case crashed, hung or was refused without a path, printing each such case's id, which
``config_fuzz.case(seed, index)`` rebuilds.

Run: .venv/bin/python benchmarks/fuzz_config.py [--cases 20000] [--seed nightly]
"""
from __future__ import absolute_import, division, print_function

import argparse
import collections
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import _collection_import  # noqa: E402  the scripts' one way to import the checkout as the collection

_collection_import.enable()
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))

import config_fuzz  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", default="nightly")
    args = parser.parse_args()
    failures, outcomes, times = [], collections.Counter(), []
    slowest = (0.0, None, None)
    start = time.monotonic()
    for case_id, description, data in config_fuzz.cases(args.seed, args.cases):
        outcome = {}
        began = time.monotonic()
        problem = config_fuzz.check(data, outcome=outcome)
        took = time.monotonic() - began
        times.append(took)
        if took > slowest[0]:
            slowest = (took, case_id, description)
        outcomes[outcome.get("ended", "failed")] += 1
        if problem:
            failures.append((case_id, description, problem))
    wall = time.monotonic() - start
    times.sort()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("## cluster.yaml fuzzing: %d cases, seed %r" % (args.cases, args.seed))
    print("")
    print("Machine: %s, %d CPUs, load %.2f at the end; Python %s" % (
        platform.machine(), os.cpu_count() or 0, load, platform.python_version()))
    print("")
    print("| outcome | cases |")
    print("|---|---|")
    for name in ("valid", "yaml", "model", "failed"):
        print("| %s | %d |" % (name, outcomes.get(name, 0)))
    print("")
    print("Per case: median %.1f ms, p99 %.1f ms, max %.0f ms (%s: %s); all %d cases in %.0f s; failures: %d" % (
        1000 * times[len(times) // 2], 1000 * times[int(len(times) * 0.99)], 1000 * slowest[0], slowest[1],
        slowest[2], args.cases, wall, len(failures)))
    for case_id, description, problem in failures[:20]:
        print("\nFAILED %s (%s):\n%s" % (case_id, description, problem))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
