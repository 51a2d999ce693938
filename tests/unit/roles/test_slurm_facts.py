"""The slurm role's inventory-only facts (tasks/facts.yml) run by ansible-playbook on localhost.

Molecule and the VM end to end both have GPUs; these cover the shapes they do not: nodes without GPUs
(an empty Gres= that templating turns into None), MIG slices typed by profile, the auto memory reserve,
and partition node lists in inventory order.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

from helpers import REPO

PLAYBOOK = """
- hosts: hpc_controller
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: aihow.hyperscaler.slurm
        tasks_from: facts.yml
    - ansible.builtin.copy:
        content: "{{ {'nodes': __slurm_nodes, 'gres': __slurm_gres_lines | default([]),
                      'partitions': __slurm_partition_lines} | to_json }}"
        dest: "{{ out }}"
"""


def node(name, ip, memory_mb, gpus=()):
    return {"hyperscaler_node": {"name": name, "ip_address": ip, "cpu_cores": 2, "memory_mb": memory_mb},
            "hyperscaler_gpus": list(gpus)}


def run_facts(tmp_path, hosts, partitions, extra=None):
    slurm = {"cluster_name": "t", "partitions": list(partitions), "default_partition": list(partitions)[0],
             "max_job_time": "01:00:00"}
    children = {"hpc_controller": {"hosts": {"ctl": node("ctl", "192.0.2.1", 4096)}},
                "hpc_compute": {"hosts": hosts}}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "hyperscaler_slurm": slurm},
                         "children": children}}
    for name, members in partitions.items():
        inventory["all"]["children"]["slurm_partition_" + name] = {"hosts": dict((m, {}) for m in members)}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
           str(tmp_path / "play.yml"), "-e", "out=%s" % out]
    for key, value in (extra or {}).items():
        cmd += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads(out.read_text())


MIG = {"slurm_gres_type": "1g.10gb", "device_file": "/dev/nvidia-caps/nvidia-cap21"}


@pytest.mark.parametrize("reserve, expected", [(None, [768, 3072]), (512, [512, 3584])])
def test_nodes_without_gpus_have_no_gres_and_the_reserve_applies(tmp_path, reserve, expected):
    hosts = {"c2": node("c2", "192.0.2.12", 1024), "c1": node("c1", "192.0.2.11", 4096, [MIG, MIG])}
    extra = {"slurm_memory_reserve_mb": reserve} if reserve else None
    facts = run_facts(tmp_path, hosts, {"batch": ["c1", "c2"]}, extra)
    by_name = dict((n["NodeName"], n) for n in facts["nodes"])
    assert by_name["c2"]["Gres"] is None  # rendered as no Gres= key at all
    assert by_name["c1"]["Gres"] == "gpu:1g.10gb:2"
    assert [by_name["c2"]["RealMemory"], by_name["c1"]["RealMemory"]] == expected
    assert [line["Type"] for line in facts["gres"]] == ["1g.10gb", "1g.10gb"]


def test_partition_nodes_keep_inventory_order(tmp_path):
    names = ["c%02d" % i for i in range(1, 9)]
    hosts = dict((n, node(n, "192.0.2.%d" % (10 + i), 2048)) for i, n in enumerate(names))
    facts = run_facts(tmp_path, hosts, {"batch": list(reversed(names)), "debug": names[:3]})
    nodes = dict((p["PartitionName"], p["Nodes"]) for p in facts["partitions"])
    assert nodes == {"batch": names, "debug": names[:3]}
