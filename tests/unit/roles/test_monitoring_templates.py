"""The monitoring role's defaults and templates rendered by ansible-playbook on localhost (no daemon).

What the DCGM gating decides (monitoring_dcgm_exporter: only hosts with real GPUs), prometheus.yml (rule_files,
the node job, a dcgm job only for hosts with real GPUs; accepted by `promtool check config` when promtool is
there), the collector's timer interval from cluster.yaml's monitoring.slurm_metrics_interval, and the node
exporter's textfile directory.
"""
import os
import subprocess
import sys

import yaml

from helpers import REPO

PROMTOOL = os.path.join(REPO, ".build", "promtool", "usr", "bin", "promtool")

PLAYBOOK = """
- hosts: hpc
  gather_facts: false
  vars_files:
    - "{{ role_dir }}/defaults/main.yml"
  tasks:
    - ansible.builtin.copy:
        content: "{{ {'dcgm': monitoring_dcgm_exporter | bool, 'collector': monitoring_slurm_collector | bool} | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0644"
    - ansible.builtin.template:
        src: "{{ role_dir }}/templates/{{ item }}.j2"
        dest: "{{ out }}/{{ inventory_hostname }}.{{ item }}"
        mode: "0644"
      loop: [prometheus.yml, hyperscaler-slurm-textfile.timer, hyperscaler-slurm-textfile.service, node-exporter.default]
"""

REAL = {"kind": "whole", "gpu_id": "GPU-1", "pci_address": "0000:66:00.0", "model": "NVIDIA H100 80GB HBM3",
        "simulated": False, "device_file": "/dev/nvidia0", "profile": None, "placement_start": None}
SIM = {"kind": "mig", "gpu_id": "GPU-0", "pci_address": "0000:65:00.0", "model": "NVIDIA A100 80GB",
       "simulated": True, "device_file": "/dev/hyperscaler-gpu0", "profile": "1g.10gb", "placement_start": 0}


def render(tmp_path, compute_gpus, monitoring=None):
    def host(name, ip, gpus):
        return {"hyperscaler_node": {"name": name, "ip_address": ip, "cluster": "hpc", "vm_name": "t-" + name,
                                     "role": "compute" if gpus is not None else "controller"},
                "hyperscaler_gpus": list(gpus or [])}
    compute = dict(("n%d" % i, host("n%d" % i, "192.0.2.%d" % (11 + i), g)) for i, g in enumerate(compute_gpus))
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "hyperscaler_slurm": {"cluster_name": "t"}},
                         "children": {"hpc": {"children": {
                             "hpc_controller": {"hosts": {"ctl": host("ctl", "192.0.2.10", None)}},
                             "hpc_compute": {"hosts": compute}}}}}}
    if monitoring is not None:
        inventory["all"]["vars"]["hyperscaler_monitoring"] = monitoring
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
           str(tmp_path / "play.yml"), "-e", "out=%s" % out, "-e", "role_dir=%s" % os.path.join(REPO, "roles", "monitoring")]
    proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return out


def read(out, name):
    return (out / name).read_text()


def test_dcgm_only_where_real_gpus_are_planned(tmp_path):
    out = render(tmp_path, [[REAL], [SIM], []])
    assert yaml.safe_load(read(out, "n0.json")) == {"dcgm": True, "collector": False}
    assert yaml.safe_load(read(out, "n1.json")) == {"dcgm": False, "collector": False}
    assert yaml.safe_load(read(out, "n2.json")) == {"dcgm": False, "collector": False}
    assert yaml.safe_load(read(out, "ctl.json")) == {"dcgm": False, "collector": True}
    prom = yaml.safe_load(read(out, "ctl.prometheus.yml"))
    jobs = dict((j["job_name"], j) for j in prom["scrape_configs"])
    assert [c["targets"] for c in jobs["dcgm"]["static_configs"]] == [["192.0.2.11:9400"]]
    assert jobs["dcgm"]["static_configs"][0]["labels"]["node"] == "n0"
    assert len(jobs["node"]["static_configs"]) == 4
    assert prom["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_no_dcgm_job_with_simulated_gpus_only(tmp_path):
    out = render(tmp_path, [[SIM, SIM], []])
    jobs = [j["job_name"] for j in yaml.safe_load(read(out, "ctl.prometheus.yml"))["scrape_configs"]]
    assert jobs == ["prometheus", "node"]


def test_promtool_accepts_the_config(tmp_path):
    assert os.path.exists(PROMTOOL), "no %s: run scripts/fetch-promtool (scripts/install-deps does)" % PROMTOOL
    out = render(tmp_path, [[REAL], [SIM]])
    done = subprocess.run([PROMTOOL, "check", "config", str(out / "ctl.prometheus.yml")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert done.returncode == 0, done.stdout


def test_collector_interval_from_cluster_yaml_and_textfile_directory(tmp_path):
    out = render(tmp_path, [[]], monitoring={"slurm_metrics_interval": 45})
    assert "OnUnitActiveSec=45s" in read(out, "ctl.hyperscaler-slurm-textfile.timer").splitlines()
    service = read(out, "ctl.hyperscaler-slurm-textfile.service")
    assert ("--output /var/lib/prometheus/node-exporter/hyperscaler_slurm.prom --cluster t --timeout 20" in service)
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in read(out, "n0.node-exporter.default")


def test_collector_interval_default_is_the_schema_default(tmp_path):
    out = render(tmp_path, [[]])
    assert "OnUnitActiveSec=30s" in read(out, "ctl.hyperscaler-slurm-textfile.timer").splitlines()
