"""The slurm role's inventory-only facts (tasks/facts.yml) run by ansible-playbook on localhost.

Molecule and the VM end to end both have GPUs; these cover the shapes they do not: nodes without GPUs
(an empty Gres= that templating turns into None), MIG slices typed by profile, the auto memory reserve,
and partition node lists in inventory order. slurm.conf is rendered with the role's template from the
inventory model's hyperscaler_slurm (each partition's MaxTime, accounting, MpiDefault), and the role's QoS and
accounts are checked against cluster.yaml's qos; tasks/validate.yml refuses QoS without accounting.
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
        tasks_from: "{{ tasks_from | default('facts.yml') }}"
        public: true
    - ansible.builtin.template:
        src: "{{ role_dir }}/templates/generic.conf.j2"
        dest: "{{ out }}.slurm.conf"
        mode: "0644"
      vars:
        __conf:
          name: slurm.conf
          config: "{{ __slurm_config_defaults | combine(slurm_config) }}"
          lines: "{{ __slurm_nodes + __slurm_partition_lines }}"
    - ansible.builtin.copy:
        content: "{{ {'nodes': __slurm_nodes, 'gres': __slurm_gres_lines | default([]),
                      'partitions': __slurm_partition_lines, 'accounting': slurm_accounting | bool,
                      'qos': slurm_qos, 'accounts': slurm_accounts} | to_json }}"
        dest: "{{ out }}"
        mode: "0644"
"""


def node(name, ip, memory_mib, gpus=()):
    return {"hyperscaler_node": {"name": name, "ip_address": ip, "cpu_cores": 2, "memory_mib": memory_mib},
            "hyperscaler_gpus": list(gpus)}


def run_facts(tmp_path, hosts, partitions, extra=None, slurm=None, expect_failure=False, all_vars=None):
    if slurm is None:
        slurm = {"cluster_name": "t", "partitions": list(partitions), "default_partition": list(partitions)[0],
                 "max_job_time": "01:00:00"}
    children = {"hpc_controller": {"hosts": {"ctl": node("ctl", "192.0.2.1", 4096)}},
                "hpc_compute": {"hosts": hosts}}
    inventory = {"all": {"vars": dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                       "hyperscaler_slurm": slurm}, **(all_vars or {})),
                         "children": children}}
    for name, members in partitions.items():
        inventory["all"]["children"]["slurm_partition_" + name] = {"hosts": dict((m, {}) for m in members)}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
           str(tmp_path / "play.yml"), "-e", "out=%s" % out, "-e", "role_dir=%s" % os.path.join(REPO, "roles", "slurm")]
    for key, value in (extra or {}).items():
        cmd += ["-e", json.dumps({key: value})]
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if expect_failure:
        assert proc.returncode != 0, proc.stdout[-3000:]
        return proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:]
    facts = json.loads(out.read_text())
    facts["slurm.conf"] = (tmp_path / "out.json.slurm.conf").read_text()
    return facts


def model_slurm(config_text):
    """hyperscaler_slurm and the partition groups of a cluster.yaml, from the inventory model."""
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.inventory import inventory_from_config
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import parse_cluster_config
    inv = inventory_from_config(parse_cluster_config(config_text, "test.yml"), lab_state_root=os.devnull)
    partitions = dict((g[len("slurm_partition_"):], sorted(h for h, e in inv["hosts"].items() if g in e["groups"]))
                      for g in inv["groups"] if g.startswith("slurm_partition_"))
    return inv["groups"]["hpc"]["hyperscaler_slurm"], partitions


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
    # sacct counts all GPUs and each type once (c2 has none, c1's two slices are one type).
    assert conf_lines(facts["slurm.conf"], "AccountingStorageTRES=") == ["AccountingStorageTRES=gres/gpu,gres/gpu:1g.10gb"]


def test_every_gpu_type_of_the_cluster_is_an_accounted_tres(tmp_path):
    h100 = {"slurm_gres_type": "h100", "device_file": "/dev/nvidia0"}
    hosts = {"c1": node("c1", "192.0.2.11", 4096, [MIG, h100]), "c2": node("c2", "192.0.2.12", 4096, [h100])}
    facts = run_facts(tmp_path, hosts, {"batch": ["c1", "c2"]}, all_vars={"slurm_accounting": True})
    text = facts["slurm.conf"]
    assert conf_lines(text, "AccountingStorageTRES=") == ["AccountingStorageTRES=gres/gpu,gres/gpu:1g.10gb,gres/gpu:h100"]
    assert conf_lines(text, "JobCompType=") == ["JobCompType=jobcomp/filetxt"]
    assert conf_lines(text, "JobCompLoc=") == ["JobCompLoc=/var/log/slurm/jobcomp.log"]
    assert conf_lines(text, "EnforcePartLimits=") == ["EnforcePartLimits=ALL"]


def test_jobcomp_off_and_partition_limits_not_enforced(tmp_path):
    facts = run_facts(tmp_path, model_hosts(), {"batch": ["hpc-compute-01"]},
                      extra={"slurm_jobcomp_loc": "", "slurm_enforce_part_limits": "NO"})
    text = facts["slurm.conf"]
    assert conf_lines(text, "JobCompType=") == ["JobCompType=jobcomp/none"] and not conf_lines(text, "JobCompLoc=")
    assert conf_lines(text, "EnforcePartLimits=") == ["EnforcePartLimits=NO"]


def test_partition_nodes_keep_inventory_order(tmp_path):
    names = ["c%02d" % i for i in range(1, 9)]
    hosts = dict((n, node(n, "192.0.2.%d" % (10 + i), 2048)) for i, n in enumerate(names))
    facts = run_facts(tmp_path, hosts, {"batch": list(reversed(names)), "debug": names[:3]})
    nodes = dict((p["PartitionName"], p["Nodes"]) for p in facts["partitions"])
    assert nodes == {"batch": names, "debug": names[:3]}


CLUSTER = """
version: "1.0"
metadata: {name: facts}
global:
  networks:
    hpc_network: {subnet: "192.0.2.0/24", bridge: "hsfacts0"}
clusters:
  hpc:
    controller: {cpu_cores: 1, memory_gb: 4, disk_gb: 8, ip_address: "192.0.2.10"}
    compute_nodes: {count: 2, cpu_cores: 2, memory_gb: 2, disk_gb: 8, ip_range: "192.0.2.11-12"}
    slurm_config:
      partitions: [batch, {name: debug, nodes: [hpc-compute-02], max_time: "30"}, {name: long, max_time: UNLIMITED}]
      max_job_time: "2-00:00:00"
%s
"""


def model_hosts():
    return {"hpc-compute-01": node("hpc-compute-01", "192.0.2.11", 2048),
            "hpc-compute-02": node("hpc-compute-02", "192.0.2.12", 2048)}


def conf_lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_each_partition_gets_its_own_max_time_and_qos_reach_the_role(tmp_path):
    qos = """      qos:
        - {name: normal, priority: 10}
        - {name: high, priority: 100, max_wall: "90"}
        - {name: open, max_wall: UNLIMITED}"""
    slurm, partitions = model_slurm(CLUSTER % qos)
    facts = run_facts(tmp_path, model_hosts(), partitions, slurm=slurm)
    times = dict((p["PartitionName"], p["MaxTime"]) for p in facts["partitions"])
    # batch has no max_time: max_job_time; "30" and UNLIMITED are written as cluster.yaml says.
    assert times == {"batch": "2-00:00:00", "debug": "30", "long": "UNLIMITED"}
    text = facts["slurm.conf"]
    assert "ClusterName=hyperscaler" in text  # the schema's default, through the inventory
    assert conf_lines(text, "PartitionName=debug") == ["PartitionName=debug Nodes=hpc-compute-02 Default=no MaxTime=30 State=UP"]
    assert conf_lines(text, "PartitionName=batch") == [
        "PartitionName=batch Nodes=hpc-compute-01,hpc-compute-02 Default=yes MaxTime=2-00:00:00 State=UP"]
    assert "AccountingStorageType=accounting_storage/slurmdbd" in text and facts["accounting"] is True
    # As sacctmgr prints them: MaxWall 90 minutes is 01:30:00, UNLIMITED is -1 (printed as nothing).
    # DenyOnLimit: a job over a QoS limit is refused at submission, not left pending.
    assert facts["qos"] == [
        {"name": "normal", "settings": {"Priority": 10, "Flags": "DenyOnLimit"}, "max_wall_minutes": None},
        {"name": "high", "settings": {"Priority": 100, "Flags": "DenyOnLimit", "MaxWall": "01:30:00"}, "max_wall_minutes": 90},
        {"name": "open", "settings": {"Priority": 0, "Flags": "DenyOnLimit", "MaxWall": "-1"}, "max_wall_minutes": None}]
    minutes = dict((p["name"], p["max_time_minutes"]) for p in slurm["partition_details"])
    assert minutes == {"batch": 2880, "debug": 30, "long": None}
    account = facts["accounts"][0]
    assert (account["name"], account["qos"], account["default_qos"]) == ("hpc", ["normal", "high", "open"], "normal")


def test_an_override_still_wins_over_the_partitions_max_time(tmp_path):
    slurm, partitions = model_slurm(CLUSTER % "")
    facts = run_facts(tmp_path, model_hosts(), partitions, slurm=slurm,
                      extra={"slurm_partition_overrides": {"debug": {"MaxTime": "15"}}})
    times = dict((p["PartitionName"], p["MaxTime"]) for p in facts["partitions"])
    assert times == {"batch": "2-00:00:00", "debug": "15", "long": "UNLIMITED"}


def test_without_accounting_there_is_no_slurmdbd_and_no_qos(tmp_path):
    slurm, partitions = model_slurm(CLUSTER % "      accounting: false")
    assert slurm["qos"] == [{"name": "normal", "priority": 0}] and slurm["qos_settings"] == []
    facts = run_facts(tmp_path, model_hosts(), partitions, slurm=slurm)
    assert facts["accounting"] is False and facts["qos"] == []
    assert facts["accounts"][0]["qos"] == [] and facts["accounts"][0]["default_qos"] == ""
    assert "AccountingStorageType=accounting_storage/none" in facts["slurm.conf"]
    assert "AccountingStorageEnforce" not in facts["slurm.conf"]


def test_without_the_inventory_the_role_falls_back_to_the_schema_defaults(tmp_path):
    facts = run_facts(tmp_path, model_hosts(), {"compute": ["hpc-compute-01", "hpc-compute-02"]}, slurm={})
    assert [(p["PartitionName"], p["MaxTime"], p["Default"]) for p in facts["partitions"]] == [("compute", "24:00:00", True)]
    assert "ClusterName=hyperscaler" in facts["slurm.conf"]
    assert facts["accounting"] is True and facts["qos"] == []
    assert conf_lines(facts["slurm.conf"], "MpiDefault=") == ["MpiDefault=pmix"]


def test_qos_without_accounting_fail_clearly(tmp_path):
    slurm, partitions = model_slurm(CLUSTER % "")
    output = run_facts(tmp_path, model_hosts(), partitions, slurm=slurm, expect_failure=True,
                       extra={"tasks_from": "validate.yml", "slurm_accounting": False,
                              "slurm_qos": [{"name": "high", "settings": {"Priority": 1}}]})
    assert "slurm_qos (['high']) needs slurm_accounting true" in output


@pytest.mark.parametrize("setting, expected", [("", "pmix"), ("      mpi_default: pmi2", "pmi2"),
                                               ("      mpi_default: none", "none")])
def test_mpi_default_of_cluster_yaml_is_slurm_confs_mpidefault(tmp_path, setting, expected):
    slurm, partitions = model_slurm(CLUSTER % setting)
    assert slurm["mpi_default"] == expected
    if setting:  # the default's slurm.conf line is checked without the inventory above
        facts = run_facts(tmp_path, model_hosts(), partitions, slurm=slurm)
        assert conf_lines(facts["slurm.conf"], "MpiDefault=") == ["MpiDefault=%s" % expected]
