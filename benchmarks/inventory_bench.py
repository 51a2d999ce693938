#!/usr/bin/env python3
"""Benchmark: `ansible-inventory --list` on a generated cluster.yaml (1,000 compute nodes, 64 GPUs).

Run: .venv/bin/python benchmarks/inventory_bench.py [--nodes 1000] [--gpus 64] [--repeat 3]
Prints a markdown row per run: wall time and the child's peak RSS (getrusage RUSAGE_CHILDREN).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["NVIDIA H100 80GB HBM3", "A100-SXM4-80GB", "NVIDIA H200", "NVIDIA A100 40GB"]


def big_config(nodes, gpus):
    devices = [{"id": "GPU-%02d" % i, "pci_address": "0000:%02x:00.0" % (0x10 + i), "model": MODELS[i % len(MODELS)]}
               for i in range(gpus)]
    slices = gpus * 7  # every GPU fully sliced into one-slice instances
    gpu_nodes = min(slices, nodes)
    overrides = dict(("hpc-compute-%02d" % (i + 1), {"gpu_enabled": True}) for i in range(gpu_nodes))
    return {
        "version": "1.0",
        "metadata": {"name": "bench"},
        "global": {
            "networks": {"hpc_network": {"subnet": "10.64.0.0/20", "bridge": "hsbr-bench"}},
            "gpu_allocation": {"devices": devices, "strategy": "mig", "mig_slices": {"hpc": slices}},
        },
        "clusters": {"hpc": {
            "controller": {"cpu_cores": 8, "memory_gb": 32, "disk_gb": 100, "ip_address": "10.64.0.10"},
            "compute_nodes": {"count": nodes, "cpu_cores": 8, "memory_gb": 16, "disk_gb": 100,
                              "ip_range": "10.64.1.0-10.64.%d.%d" % (1 + (nodes - 1) // 256, (nodes - 1) % 256),
                              "gpu_enabled": False, "overrides": overrides},
            "slurm_config": {"partitions": [{"name": "gpu", "nodes": "gpu"}, "all"], "default_partition": "gpu"},
        }},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="inv-bench-")
    with open(os.path.join(work, "cluster.yml"), "w") as handle:
        yaml.safe_dump(big_config(args.nodes, args.gpus), handle)
    source = os.path.join(work, "bench.cluster.yml")
    with open(source, "w") as handle:
        handle.write("plugin: aihow.hyperscaler.cluster\nconfig: cluster.yml\n")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"))
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    print("| run | nodes | GPUs | hosts listed | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for run in range(1, args.repeat + 1):
        # Each run in a fresh process so ru_maxrss is this child's peak alone.
        probe = ("import resource,subprocess,sys,time,json;t=time.time();"
                 "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
                 "w=time.time()-t;r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
                 "print(json.dumps([p.returncode,w,r,len(json.loads(p.stdout)['_meta']['hostvars']) "
                 "if p.returncode==0 else p.stderr[-2000:]]))")
        done = subprocess.run([sys.executable, "-c", probe, exe, "-i", source, "--list"], env=env, cwd=work,
                              capture_output=True, text=True, check=True)
        rc, wall, rss_kib, hosts = json.loads(done.stdout)
        if rc != 0:
            raise SystemExit("ansible-inventory failed: %s" % hosts)
        print("| %d | %d | %d | %d | %.2f | %.0f |" % (run, args.nodes, args.gpus, hosts, wall, rss_kib / 1024.0))


if __name__ == "__main__":
    main()
