#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""MIG solver benchmark; prints a markdown table.

1. Per MIG model: every profile multiset with counts 0..max_count (feasible and
   infeasible), each solved on 8 GPUs (one solve per GPU, as a host apply does).
2. A 64-GPU mixed-model cluster plan (config_model.build_cluster_config) with
   a mixed MIG request across hpc and cloud.

Run: .venv/bin/python benchmarks/solver_bench.py [--repeat N]
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import platform
import sys
import time
from itertools import product

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import _collection_import  # noqa: E402  the scripts' one way to import the checkout as the collection

_collection_import.enable()

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as config_model  # noqa: E402
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import placement as mig_placement
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import GPU_MODELS  # noqa: E402

GPUS_PER_HOST = 8


def multisets(model):
    ranges = [range(p.max_count + 1) for p in model.mig_profiles]
    for counts in product(*ranges):
        yield dict((p.name, n) for p, n in zip(model.mig_profiles, counts) if n)


def bench_model(model):
    requests = list(multisets(model))
    feasible = 0
    start = time.perf_counter()
    worst = 0.0
    for wanted in requests:
        t0 = time.perf_counter()
        for _gpu in range(GPUS_PER_HOST):
            try:
                mig_placement.solve(model, wanted)
                ok = True
            except mig_placement.PlacementError:
                ok = False
        worst = max(worst, time.perf_counter() - t0)
        feasible += ok
    total = time.perf_counter() - start
    return len(requests), feasible, total, worst


MIX = ["A100-80GB", "H100-80GB", "A100-40GB", "A30", "H200-141GB", "B200", "H100-94GB-NVL", "L40S"]
MODEL_NAMES = {"A100-80GB": "NVIDIA A100 80GB", "H100-80GB": "NVIDIA H100 80GB", "A100-40GB": "NVIDIA A100 40GB",
               "A30": "NVIDIA A30", "H200-141GB": "NVIDIA H200", "B200": "NVIDIA B200",
               "H100-94GB-NVL": "NVIDIA H100 NVL", "L40S": "NVIDIA L40S"}


def cluster_config(n_gpus=64):
    devices = []
    for i in range(n_gpus):
        key = MIX[i % len(MIX)]
        devices.append({"id": "GPU-%d" % i, "pci_address": "0000:%02x:%02x.0" % (0x10 + i // 8, i % 8),
                        "model": MODEL_NAMES[key]})
    return {
        "version": "1.0",
        "metadata": {"name": "bench"},
        "global": {
            "networks": {"hpc_network": {"subnet": "10.10.0.0/16", "bridge": "virbr100"},
                         "cloud_network": {"subnet": "10.20.0.0/16", "bridge": "virbr200"}},
            "gpu_allocation": {
                "devices": devices, "strategy": "hybrid",
                "whole_gpus": {"hpc": 4, "cloud": 4},
                "mig_slices": {"hpc": {"1g.10gb": 20, "2g.20gb": 8, "3g.40gb": 6, "7g.80gb": 2, "1g.18gb": 8,
                                       "3g.71gb": 4},
                               "cloud": {"1g.10gb": 16, "4g.40gb": 3, "1g.6gb": 12, "2g.12gb": 4, "1g.23gb": 10,
                                         "2g.45gb": 4, "3g.47gb": 4}},
            },
        },
        "clusters": {
            "hpc": {"controller": {"cpu_cores": 4, "memory_gb": 8, "disk_gb": 100, "ip_address": "10.10.0.10"},
                    "compute_nodes": {"count": 16, "cpu_cores": 8, "memory_gb": 16, "disk_gb": 200,
                                      "gpu_enabled": True, "ip_range": "10.10.0.11-26"},
                    "slurm_config": {"partitions": ["gpu"], "default_partition": "gpu", "max_job_time": "24:00:00"}},
            "cloud": {"control_plane": {"cpu_cores": 4, "memory_gb": 8, "disk_gb": 100, "ip_address": "10.20.0.10"},
                      "worker_nodes": {
                          "cpu_workers": {"count": 1, "cpu_cores": 4, "memory_gb": 8, "disk_gb": 100,
                                          "ip_range": "10.20.0.11"},
                          "gpu_workers": {"count": 16, "cpu_cores": 8, "memory_gb": 16, "disk_gb": 200,
                                          "gpu_enabled": True, "ip_range": "10.20.0.12-27"}},
                      "kubernetes_config": {"cni": "calico", "ingress": "nginx", "storage_class": "local-path"}},
        },
    }


def bench_plan(repeat):
    raw = cluster_config()
    times = []
    cfg = None
    for _run in range(repeat):
        t0 = time.perf_counter()
        cfg = config_model.build_cluster_config(raw, "bench")
        times.append(time.perf_counter() - t0)
    mig = [d for d in cfg.plan["devices"] if d["mode"] == "mig"]
    instances = sum(len(d["mig_layout"]) for d in mig)
    return times, len(cfg.plan["devices"]), len(mig), instances


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of the 64-GPU plan (median reported)")
    args = parser.parse_args(argv)
    print("Python %s on %s (%s)\n" % (platform.python_version(), platform.machine(), platform.processor() or "cpu"))
    print("| model | multisets | feasible | infeasible | solves (x%d GPUs) | total ms | mean us/solve | worst 8-GPU "
          "request ms |" % GPUS_PER_HOST)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in [m for m in GPU_MODELS if m.mig_capable]:
        n, ok, total, worst = bench_model(model)
        solves = n * GPUS_PER_HOST
        print("| %s | %d | %d | %d | %d | %.1f | %.1f | %.3f |" % (
            model.key, n, ok, n - ok, solves, total * 1e3, total / solves * 1e6, worst * 1e3))
    times, n_dev, n_mig, n_inst = bench_plan(args.repeat)
    times.sort()
    print("\n| 64-GPU mixed plan | GPUs | MIG GPUs | MIG instances | median ms | min ms | max ms | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("| build_cluster_config | %d | %d | %d | %.1f | %.1f | %.1f | %d |" % (
        n_dev, n_mig, n_inst, times[len(times) // 2] * 1e3, times[0] * 1e3, times[-1] * 1e3, len(times)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
