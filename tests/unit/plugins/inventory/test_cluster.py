"""The aihow.hyperscaler.cluster inventory plugin: in-process, and through ansible-inventory (golden files)."""
import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from helpers import REPO, repo_path


GOLDEN = repo_path("tests", "unit", "data", "golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"  # UPDATE_GOLDEN=1 pytest ... rewrites the golden files


@pytest.fixture
def plugin():
    # Through the plugin loader, as Ansible does, so DOCUMENTATION (and its fragments) defines the options.
    from ansible.plugins.loader import inventory_loader
    module = inventory_loader.get("aihow.hyperscaler.cluster")
    assert module is not None, "plugin not found on the collections path"
    module.inventory = InventoryData()
    module.templar = Templar(loader=DataLoader())
    return module


def parse(plugin, tmp_path, config, extra=""):
    source = tmp_path / "inventory.cluster.yml"
    source.write_text("plugin: aihow.hyperscaler.cluster\nconfig: %s\n%s" % (config, extra))
    plugin.parse(plugin.inventory, DataLoader(), str(source), cache=False)
    return plugin.inventory


def members(inventory, group):
    return sorted(h.name for h in inventory.groups[group].get_hosts())


def test_verify_file_accepts_only_its_suffixes(plugin, tmp_path):
    good = tmp_path / "lab.cluster.yml"
    good.write_text("plugin: aihow.hyperscaler.cluster\n")
    bad = tmp_path / "hosts.yml"
    bad.write_text("all: {}\n")
    assert plugin.verify_file(str(good)) and not plugin.verify_file(str(bad))


def test_groups_and_hosts_of_the_workstation(plugin, tmp_path):
    inv = parse(plugin, tmp_path, repo_path("config", "workstation.yml"))
    assert members(inv, "hpc_controller") == ["hpc-controller"]
    assert members(inv, "hpc_compute") == ["hpc-compute-%02d" % i for i in range(1, 5)]
    assert members(inv, "hpc") == ["hpc-compute-%02d" % i for i in range(1, 5)] + ["hpc-controller"]
    assert members(inv, "cloud_control_plane") == ["cloud-control-plane"]
    assert members(inv, "cloud_workers") == ["cloud-cpu-worker-01"] + ["cloud-gpu-worker-%02d" % i for i in range(1, 4)]
    assert members(inv, "cloud") == sorted(members(inv, "cloud_workers") + ["cloud-control-plane"])
    assert members(inv, "slurm_partition_gpu") == members(inv, "slurm_partition_debug") == members(inv, "hpc_compute")
    assert members(inv, "hypervisors") == ["local"]
    # platform systemd: no Kubernetes, so none of the groups Kubespray reads
    assert not set(inv.groups) & {"k8s_control_plane", "k8s_worker_cpu", "k8s_worker_gpu", "kube_control_plane",
                                  "kube_node", "etcd", "k8s_cluster"}


def test_platform_kubernetes_adds_the_kubespray_groups(plugin, tmp_path):
    config = tmp_path / "k8s.yml"
    config.write_text(open(repo_path("config", "workstation.yml")).read().replace("platform: systemd",
                                                                                  "platform: kubernetes"))
    inv = parse(plugin, tmp_path, str(config))
    assert inv.groups["cloud"].get_vars()["hyperscaler_cloud"] == {"platform": "kubernetes"}
    assert members(inv, "cloud_control_plane") == members(inv, "k8s_control_plane") == \
        members(inv, "kube_control_plane") == members(inv, "etcd") == ["cloud-control-plane"]
    assert members(inv, "k8s_worker_cpu") == ["cloud-cpu-worker-01"]
    assert members(inv, "k8s_worker_gpu") == ["cloud-gpu-worker-%02d" % i for i in range(1, 4)]
    assert members(inv, "kube_node") == members(inv, "cloud_workers") == \
        ["cloud-cpu-worker-01"] + members(inv, "k8s_worker_gpu")
    assert set(members(inv, "k8s_cluster")) == set(members(inv, "kube_node")) | {"cloud-control-plane"}
    assert sorted(c.name for c in inv.groups["cloud"].child_groups) == [
        "cloud_control_plane", "cloud_workers", "k8s_control_plane", "k8s_worker_cpu", "k8s_worker_gpu"]


def test_the_cloud_groups_exist_without_a_cloud_cluster(plugin, tmp_path):
    # A play's `hosts: cloud_workers` finds an empty group, not a missing one.
    inv = parse(plugin, tmp_path, repo_path("config", "minimal.yml"))
    assert members(inv, "cloud_control_plane") == members(inv, "cloud_workers") == members(inv, "cloud") == []
    assert "kube_node" not in inv.groups and "hyperscaler_mlops" not in inv.groups["all"].get_vars()


def test_mlops_vars_are_resolved_for_every_host(plugin, tmp_path):
    inv = parse(plugin, tmp_path, repo_path("config", "mlops.yml"))
    mlops = inv.groups["all"].get_vars()["hyperscaler_mlops"]
    assert mlops["tracking"] == {"host": "192.168.200.10", "port": 5000, "url": "http://192.168.200.10:5000",
                                 "artifacts": {"store": "local", "path": "/var/lib/mlflow/artifacts",
                                               "destination": "/var/lib/mlflow/artifacts"}}
    assert mlops["credentials_dir"] == "/var/lib/aihow-hyperscaler/credentials/mlops"
    assert mlops["database"] == {"host": "192.168.200.10", "port": 5432, "name": "mlflow", "user": "mlflow"}
    assert mlops["serving"] == {"port": 8080, "models": [{"name": "digits-cnn", "alias": "champion"}]}
    assert mlops["allowed_networks"] == [{"name": "cloud_network", "subnet": "192.168.200.0/24"},
                                         {"name": "hpc_network", "subnet": "192.168.100.0/24"}]
    assert mlops["training"] == {"model_name": "digits-cnn", "nodes": 2, "epochs": 20, "batch_size": 64,
                                 "learning_rate": 0.002, "min_accuracy": 0.95}
    assert mlops["promotion"] == {"min_accuracy": 0.95, "alias": "champion"}
    assert mlops["experiment"] == "digits"
    # on `all`: the HPC training job reads it too (mlops.list.json shows it in every host's vars);
    # only cloud workers run a model server
    assert inv.get_host("cloud-cpu-worker-01").get_vars()["hyperscaler_model_server"] == {
        "port": 8080, "models": [{"name": "digits-cnn", "alias": "champion"}]}
    for host in ("cloud-control-plane", "hpc-controller", "local"):
        assert "hyperscaler_model_server" not in inv.get_host(host).get_vars()


def test_each_worker_serves_only_its_models(plugin, tmp_path):
    import yaml
    raw = yaml.safe_load(open(repo_path("config", "workstation.yml")))
    raw["mlops"]["serving"]["models"] = [
        {"name": "digits-cnn", "alias": "champion"},
        {"name": "digits-mlp", "alias": "challenger", "workers": ["cloud-gpu-worker-03", "cloud-gpu-worker-01"]},
    ]
    raw["mlops"].pop("training")
    raw["mlops"].pop("allowed_networks")
    del raw["clusters"]["hpc"]
    raw["global"]["gpu_allocation"]["mig_slices"] = {"cloud": 3}
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump(raw))
    inv = parse(plugin, tmp_path, str(config))
    mlops = inv.groups["all"].get_vars()["hyperscaler_mlops"]
    # without an HPC cluster no training, and only the cloud network is allowed
    assert mlops["serving"]["models"] == [{"name": "digits-cnn", "alias": "champion"},
                                          {"name": "digits-mlp", "alias": "challenger"}]
    assert "training" not in mlops
    assert mlops["allowed_networks"] == [{"name": "cloud_network", "subnet": "192.168.200.0/24"}]
    served = dict((h, [m["name"] for m in inv.get_host(h).get_vars()["hyperscaler_model_server"]["models"]])
                  for h in members(inv, "cloud_workers"))
    assert served == {"cloud-cpu-worker-01": ["digits-cnn"], "cloud-gpu-worker-01": ["digits-cnn", "digits-mlp"],
                      "cloud-gpu-worker-02": ["digits-cnn"], "cloud-gpu-worker-03": ["digits-cnn", "digits-mlp"]}


def test_s3_artifacts_are_resolved(plugin, tmp_path):
    import yaml
    raw = yaml.safe_load(open(repo_path("config", "mlops.yml")))
    raw["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": "http://minio.example:9000",
                                             "s3_bucket": "mlflow"}
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump(raw))
    inv = parse(plugin, tmp_path, str(config))
    assert inv.groups["all"].get_vars()["hyperscaler_mlops"]["tracking"]["artifacts"] == {
        "store": "s3", "s3_endpoint": "http://minio.example:9000", "s3_bucket": "mlflow", "destination": "s3://mlflow"}


def test_host_vars_carry_address_resources_network_and_gpus(plugin, tmp_path):
    inv = parse(plugin, tmp_path, repo_path("config", "workstation.yml"))
    hv = inv.get_host("hpc-compute-03").get_vars()
    assert hv["ansible_host"] == "192.168.100.13"
    node = hv["hyperscaler_node"]
    assert (node["cpu_cores"], node["memory_mib"], node["disk_gb"], node["network"]) == (8, 16384, 200, "hpc_network")
    assert hv["hyperscaler_network"] == {"name": "hpc_network", "bridge": "virbr100", "gateway": "192.168.100.1",
                                         "prefix": 24, "domain": "lab.internal"}
    (gpu,) = hv["hyperscaler_gpus"]
    assert (gpu["kind"], gpu["gpu_id"], gpu["profile"], gpu["placement_start"], gpu["device_file"]) == \
        ("mig", "GPU-0", "1g.10gb", 2, "/dev/nvidia0")
    local = inv.get_host("local").get_vars()
    assert (local["ansible_connection"], local["hyperscaler_libvirt_uri"]) == ("local", "qemu:///system")
    # modules on the local hypervisor use the interpreter running Ansible, not interpreter discovery
    assert local["ansible_python_interpreter"] == sys.executable


def test_group_vars(plugin, tmp_path):
    inv = parse(plugin, tmp_path, repo_path("config", "workstation.yml"))
    slurm = inv.groups["hpc"].get_vars()["hyperscaler_slurm"]
    assert (slurm["partitions"], slurm["default_partition"], slurm["max_job_time"]) == \
        (["gpu", "debug"], "gpu", "24:00:00")
    assert slurm["mpi_default"] == "pmix"  # the schema's default: workstation.yml does not set it
    assert inv.groups["cloud"].get_vars()["hyperscaler_kubernetes"]["cni"] == "calico"
    assert inv.groups["cloud"].get_vars()["hyperscaler_cloud"] == {"platform": "systemd"}
    assert inv.groups["hypervisors"].get_vars()["hyperscaler_gpu_plan"]["strategy"] == "hybrid"
    assert "hyperscaler_gpu_plan" not in inv.groups["all"].get_vars()  # kept off the 1,000s of VM hosts


def test_relative_config_path_is_taken_from_the_source_file(plugin, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yml").write_text(open(repo_path("config", "minimal.yml")).read())
    inv = parse(plugin, tmp_path, "sub/c.yml")
    assert members(inv, "hpc_compute") == ["hpc-compute-01", "hpc-compute-02"]


def test_constructable_compose_groups_keyed_groups(plugin, tmp_path):
    extra = (
        "compose:\n  short_name: hyperscaler_node.name | regex_replace('^(hpc|cloud)-', '')\n"
        "groups:\n  big_memory: hyperscaler_node.memory_gb >= 16\n"
        "keyed_groups:\n  - key: hyperscaler_node.role\n    prefix: role\n"
        "strict: true\n")
    inv = parse(plugin, tmp_path, repo_path("config", "workstation.yml"), extra)
    assert inv.get_host("hpc-compute-01").get_vars()["short_name"] == "compute-01"
    gpu_workers = ["cloud-gpu-worker-%02d" % i for i in range(1, 4)]
    assert members(inv, "big_memory") == sorted(members(inv, "hpc_compute") + gpu_workers)
    assert members(inv, "role_gpu_worker") == gpu_workers


def test_invalid_config_raises_parser_error_with_every_message(plugin, tmp_path):
    with pytest.raises(AnsibleParserError) as exc:
        parse(plugin, tmp_path, repo_path("tests", "unit", "data", "spec-example.yml"))
    assert "1g.5gb, 2g.10gb, 3g.20gb are NVIDIA A100 40GB profiles" in str(exc.value)


def test_cache_key_follows_config_content(plugin, tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(open(repo_path("config", "minimal.yml")).read())
    source = tmp_path / "lab.cluster.yml"
    source.write_text("plugin: aihow.hyperscaler.cluster\nconfig: c.yml\n")
    plugin.loader = DataLoader()
    plugin._read_config_data(str(source))
    first = plugin._cache_key_for(str(source), str(config))
    config.write_text(config.read_text().replace("count: 2", "count: 2 "))
    assert plugin._cache_key_for(str(source), str(config)) != first


def test_cached_run_gives_the_same_inventory(tmp_path):
    cache_dir = tmp_path / "cache"
    source = tmp_path / "lab.cluster.yml"
    config = repo_path("config", "workstation.yml")
    source.write_text("plugin: aihow.hyperscaler.cluster\nconfig: %s\ncache: true\ncache_plugin: "
                      "ansible.builtin.jsonfile\ncache_connection: %s\n" % (config, cache_dir))
    first = _ansible_inventory(["-i", str(source), "--list"])
    assert first.returncode == 0, first.stderr
    assert os.listdir(str(cache_dir)), "nothing was cached"
    second = _ansible_inventory(["-i", str(source), "--list"])
    assert json.loads(first.stdout) == json.loads(second.stdout)


# ------------------------------------------------------------------ ansible-inventory, end to end

def _ansible_inventory(args):
    env = dict(os.environ, ANSIBLE_CONFIG=repo_path("ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=repo_path(".build", "collections"), ANSIBLE_NOCOLOR="1")
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    return subprocess.run([exe] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def _golden(name, text):
    path = os.path.join(GOLDEN, name)
    if UPDATE:
        with open(path, "w") as handle:
            handle.write(text)
    with open(path) as handle:
        assert text == handle.read(), "%s changed; rerun with UPDATE_GOLDEN=1 if intended" % name


@pytest.mark.parametrize("name", ["minimal", "mlops", "workstation", "production"])
def test_ansible_inventory_graph_golden(name):
    done = _ansible_inventory(["-i", "config/inventory.%s.cluster.yml" % name, "--graph"])
    assert done.returncode == 0, done.stderr
    _golden("%s.graph" % name, done.stdout)


@pytest.mark.parametrize("name", ["minimal", "mlops", "workstation"])
def test_ansible_inventory_list_golden(name):
    done = _ansible_inventory(["-i", "config/inventory.%s.cluster.yml" % name, "--list"])
    assert done.returncode == 0, done.stderr
    # The local hypervisor runs modules with the Python running Ansible: wherever the venv is, that
    # path is the machine's, not the inventory's, so it is compared as <python>.
    with open(os.path.join(os.path.dirname(sys.executable), "ansible-inventory")) as handle:
        python = handle.readline()[2:].strip()
    data = json.loads(done.stdout)
    for host_vars in data["_meta"]["hostvars"].values():
        interpreter = host_vars.get("ansible_python_interpreter")
        if isinstance(interpreter, dict) and interpreter.get("__ansible_unsafe") == python:
            interpreter["__ansible_unsafe"] = "<python>"
    text = json.dumps(data, indent=1, sort_keys=True).replace(REPO, "<repo>") + "\n"
    assert "/.venv/" not in text, "a machine path in the golden file"
    _golden("%s.list.json" % name, text)


def test_ansible_inventory_fails_on_bad_config(tmp_path):
    source = tmp_path / "bad.cluster.yml"
    source.write_text("plugin: aihow.hyperscaler.cluster\nconfig: %s\n"
                      % repo_path("tests", "unit", "data", "spec-example.yml"))
    done = _ansible_inventory(["-i", str(source), "--list"])
    assert done.returncode != 0
    assert "global.gpu_allocation.devices[0].allowed_mig_profiles" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# --------------------------------------------------------------------------- lab mode: SSH through the netns

def _lab_config(tmp_path, mode):
    import yaml
    raw = yaml.safe_load(open(repo_path("config", "minimal.yml")))
    raw["hypervisor"]["lab_mode"] = mode
    path = tmp_path / ("lab-%s.yml" % mode)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("mode, state_file, expected", [
    ("auto", False, None),
    ("auto", True, "hs-lab"),
    ("enabled", False, "hs-lab"),
    ("disabled", True, None),
])
def test_lab_mode_sets_proxy_command_on_vms_only(plugin, tmp_path, monkeypatch, mode, state_file, expected):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import inventory as inventory_model
    root = tmp_path / "run"
    if state_file:
        (root / "lab").mkdir(parents=True)
        (root / "lab" / "netns").write_text("hs-lab\n")
    monkeypatch.setattr(inventory_model, "LAB_STATE_ROOT", str(root))
    inv = parse(plugin, tmp_path, _lab_config(tmp_path, mode))
    for name in ("hpc-controller", "hpc-compute-01", "hpc-compute-02"):
        host_vars = inv.get_host(name).vars
        args = host_vars.get("ansible_ssh_common_args")
        if expected is None:
            assert args is None
            assert "hyperscaler_guest_offline" not in host_vars  # guests may reach a mirror through NAT
        else:
            assert '-o ProxyCommand="ip netns exec %s nc %%h %%p"' % expected in args
            assert host_vars["hyperscaler_guest_offline"] is True  # no uplink inside the namespace
        # Every guest logs in with cluster.yaml's key and runs the golden image's Python.
        assert host_vars["ansible_ssh_private_key_file"] == "~/.ssh/id_ed25519"
        assert host_vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert "ansible_ssh_common_args" not in inv.get_host("local").vars  # the hypervisor is local
    assert "hyperscaler_guest_offline" not in inv.get_host("local").vars


def test_lab_netns_name_comes_from_the_state_file(tmp_path):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import inventory as inventory_model
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import load_cluster_config
    config = load_cluster_config(repo_path("config", "minimal.yml"))
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "netns").write_text("custom-ns\n")
    assert inventory_model.lab_netns(config, str(tmp_path)) == "custom-ns"
    assert inventory_model.lab_netns(config, str(tmp_path / "none")) is None  # auto, no lab running
    model = inventory_model.inventory_from_config(config, lab_state_root=str(tmp_path))
    assert "ip netns exec custom-ns nc" in model["hosts"]["hpc-compute-02"]["vars"]["ansible_ssh_common_args"]


@pytest.mark.parametrize("data, expected", [
    (b"version: \"1.0\"\nmetadata: {name: l\xe4b}\n", "line 2, column 19: the file is not UTF-8 text"),
    (b"version: \"1.0\"\nversion: \"1.1\"\n", "version (line 2): duplicate key 'version': first at line 1"),
    (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested more than 64 levels deep"),
])
def test_ansible_inventory_shows_the_issue_not_an_exception(tmp_path, data, expected):
    config = tmp_path / "bad.yml"
    config.write_bytes(data)
    source = tmp_path / "lab.cluster.yml"
    source.write_text("plugin: aihow.hyperscaler.cluster\nconfig: %s\n" % config)
    done = _ansible_inventory(["-i", str(source), "--list"])
    output = " ".join((done.stdout + done.stderr).split())
    assert expected in output, output
    assert "%s is not a valid cluster configuration" % config in output
    assert "Traceback" not in output and "RecursionError" not in output and "UnicodeDecodeError" not in output


@pytest.mark.parametrize("name", ["lab", "e2e", "a-1"])
def test_lab_netns_name_is_the_lab_scripts(tmp_path, name):
    # scripts/hyperscaler-lab defines the name for shell and playbooks; the inventory's fallback must agree.
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import inventory as inventory_model
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import parse_cluster_config
    text = open(repo_path("config", "minimal.yml")).read().replace("name: lab", "name: %s" % name)
    text = text.replace("  accelerator: auto", "  accelerator: auto\n  lab_mode: enabled")
    config = parse_cluster_config(text)
    script = subprocess.run(["bash", repo_path("scripts", "hyperscaler-lab"), "netns", name],
                            capture_output=True, text=True, timeout=30, check=True)
    assert inventory_model.lab_netns(config, str(tmp_path)) == script.stdout.strip() == "hs-%s" % name


def test_lab_state_root_follows_the_scripts_variable(tmp_path, monkeypatch):
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import inventory as inventory_model
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import load_cluster_config
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "netns").write_text("from-env\n")
    monkeypatch.setenv("HYPERSCALER_LAB_STATE_ROOT", str(tmp_path))
    assert inventory_model.lab_netns(load_cluster_config(repo_path("config", "minimal.yml"))) == "from-env"
