"""Schema and semantic validation: one good and at least one bad case per rule, each with its path."""
import copy

import pytest
from helpers import assert_issue, issues_of, load_yaml

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as cm


@pytest.fixture
def ws():
    """The spec's example with the MIG names corrected (config/workstation.yml)."""
    return load_yaml("config", "workstation.yml")


@pytest.fixture
def minimal():
    return load_yaml("config", "minimal.yml")


# ----------------------------------------------------------------- templates and the spec's example

@pytest.mark.parametrize("name", ["minimal", "mlops", "workstation", "production"])
def test_templates_validate(name):
    assert issues_of(load_yaml("config", "%s.yml" % name)) == []


def test_spec_example_is_rejected_naming_the_a100_40gb_profiles():
    found = issues_of(load_yaml("tests", "unit", "data", "spec-example.yml"))
    assert len(found) == 1
    path, msg = found[0]
    assert path == "global.gpu_allocation.devices[0].allowed_mig_profiles"
    assert "1g.5gb, 2g.10gb, 3g.20gb are NVIDIA A100 40GB profiles" in msg
    assert "NVIDIA A100 80GB offers: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb" in msg


def test_minimal_template_fits_this_machine(minimal):
    config = cm.build_cluster_config(minimal)
    assert [n.name for n in config.nodes] == ["hpc-controller", "hpc-compute-01", "hpc-compute-02"]
    assert sum(n.memory_gb for n in config.nodes) <= 24 - 2
    assert config.plan["devices"] == [] and not any(n.gpu_enabled for n in config.nodes)


# ----------------------------------------------------------------- schema

def test_unknown_key_gets_did_you_mean(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["cpu_core"] = 8
    assert_issue(ws, "clusters.hpc.compute_nodes.cpu_core", "unknown key 'cpu_core'", "did you mean 'cpu_cores'?")


def test_unknown_top_level_key(ws):
    ws["clusterz"] = {}
    assert_issue(ws, "clusterz", "did you mean 'clusters'?")


def test_missing_required_key(ws):
    del ws["clusters"]["hpc"]["controller"]["ip_address"]
    assert_issue(ws, "clusters.hpc.controller.ip_address", "required")


@pytest.mark.parametrize("field,value,fragment", [
    ("cpu_cores", 0, "between 1 and 256"), ("cpu_cores", 1000, "between 1 and 256"),
    ("memory_gb", 0.1, "between 0.5 and 4096"), ("disk_gb", 1, "between 4 and 65536"),
    ("cpu_cores", "eight", "must be of type integer"),
])
def test_resource_bounds(ws, field, value, fragment):
    ws["clusters"]["hpc"]["controller"][field] = value
    assert_issue(ws, "clusters.hpc.controller.%s" % field, fragment)


def test_enum_lists_valid_values(ws):
    ws["global"]["gpu_allocation"]["strategy"] = "mixed"
    assert_issue(ws, "global.gpu_allocation.strategy", "'mixed' is not allowed", "mig, whole, hybrid")


def test_all_errors_are_reported_at_once(ws):
    ws["clusters"]["hpc"]["controller"]["cpu_cores"] = 0
    ws["global"]["networks"]["cloud_network"]["subnet"] = "192.168.100.0/25"
    ws["clusters"]["cloud"]["control_plane"]["ip_address"] = "192.168.201.10"
    ws["global"]["gpu_allocation"]["devices"][1]["pci_address"] = "0000:65:00.0"
    paths = {p for p, _unused in issues_of(ws)}
    assert {"clusters.hpc.controller.cpu_cores", "global.networks.hpc_network.subnet",
            "clusters.cloud.control_plane.ip_address",
            "global.gpu_allocation.devices[1].pci_address"} <= paths


def test_either_cluster_may_be_absent_but_not_both(minimal, ws):
    del ws["clusters"]["hpc"]
    del ws["mlops"]["training"]  # it runs on the HPC cluster
    ws["global"]["gpu_allocation"]["mig_slices"] = {"cloud": 3}
    assert issues_of(ws) == []
    minimal["clusters"] = {}
    assert_issue(minimal, "clusters", "must not be empty")


# ----------------------------------------------------------------- versioning

def test_newer_schema_version_asks_for_an_upgrade(ws):
    ws["version"] = "2.0"
    assert_issue(ws, "version", "newer than the schema", "upgrade aihow.hyperscaler")


def test_unknown_older_version(ws):
    ws["version"] = "0.9"
    assert_issue(ws, "version", "not a known schema version", "1.0")


def test_version_form(ws):
    ws["version"] = "one"
    assert_issue(ws, "version", "'one' is not valid")


# ----------------------------------------------------------------- networks and addresses

def test_cidr_with_host_bits_suggests_the_network(ws):
    ws["global"]["networks"]["hpc_network"]["subnet"] = "192.168.100.1/24"
    assert_issue(ws, "global.networks.hpc_network.subnet", "did you mean 192.168.100.0/24?")


def test_cidr_garbage(ws):
    ws["global"]["networks"]["hpc_network"]["subnet"] = "192.168.300.0/24"
    assert_issue(ws, "global.networks.hpc_network.subnet", "not a valid IPv4 CIDR")


def test_overlapping_subnets(ws):
    ws["global"]["networks"]["hpc_network"]["subnet"] = "192.168.0.0/16"
    assert_issue(ws, "global.networks.hpc_network.subnet", "overlaps 192.168.200.0/24 of network 'cloud_network'")


def test_subnet_too_small(ws):
    ws["global"]["networks"]["hpc_network"]["subnet"] = "192.168.100.0/30"
    assert_issue(ws, "global.networks.hpc_network.subnet", "too small")


def test_duplicate_bridge(ws):
    ws["global"]["networks"]["cloud_network"]["bridge"] = "virbr100"
    assert_issue(ws, "global.networks.hpc_network.bridge", "already used by network 'cloud_network'")


def test_gateway_must_be_a_host_of_the_subnet(ws):
    ws["global"]["networks"]["hpc_network"]["gateway"] = "192.168.100.255"
    assert_issue(ws, "global.networks.hpc_network.gateway", "not a host address")


def test_node_ip_outside_subnet(ws):
    ws["clusters"]["hpc"]["controller"]["ip_address"] = "192.168.200.10"
    found = assert_issue(ws, "clusters.hpc.controller.ip_address", "outside the hpc subnet 192.168.100.0/24")
    # and it also collides with the cloud control plane
    assert ("clusters.cloud.control_plane.ip_address", "192.168.200.10 is also used by "
            "clusters.hpc.controller.ip_address") in found


@pytest.mark.parametrize("ip,fragment", [
    ("192.168.100.0", "network address"), ("192.168.100.255", "broadcast address"), ("192.168.100.1", "gateway"),
])
def test_reserved_addresses(ws, ip, fragment):
    ws["clusters"]["hpc"]["controller"]["ip_address"] = ip
    assert_issue(ws, "clusters.hpc.controller.ip_address", fragment)


def test_custom_gateway_is_reserved(ws):
    ws["global"]["networks"]["hpc_network"]["gateway"] = "192.168.100.254"
    ws["clusters"]["hpc"]["controller"]["ip_address"] = "192.168.100.254"
    assert_issue(ws, "clusters.hpc.controller.ip_address", "gateway")
    ws["clusters"]["hpc"]["controller"]["ip_address"] = "192.168.100.1"  # free again
    assert issues_of(ws) == []


def test_duplicate_ips_between_groups(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["ip_range"] = "192.168.100.10-13"
    assert_issue(ws, "clusters.hpc.compute_nodes.ip_range", "192.168.100.10 is also used by "
                                                            "clusters.hpc.controller.ip_address")


@pytest.mark.parametrize("text,count", [
    ("192.168.100.11-14", 4), ("192.168.100.11-192.168.100.14", 4), ("192.168.100.11", 1),
    ("10.0.0.250-10.0.1.5", 12),
])
def test_ip_range_forms(text, count):
    assert len(cm.parse_ip_range(text)) == count


def test_ip_range_size_must_match_count(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["ip_range"] = "192.168.100.11-13"
    assert_issue(ws, "clusters.hpc.compute_nodes.ip_range", "holds 3 addresses but count is 4")


def test_ip_range_backwards(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["ip_range"] = "192.168.100.14-11"
    assert_issue(ws, "clusters.hpc.compute_nodes.ip_range", "ends (192.168.100.11) before it starts")


def test_ip_range_required_when_count_positive(ws):
    del ws["clusters"]["hpc"]["compute_nodes"]["ip_range"]
    assert_issue(ws, "clusters.hpc.compute_nodes.ip_range", "required when count is 4")


def test_ip_range_bad_form(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["ip_range"] = "192.168.100.11..14"
    assert_issue(ws, "clusters.hpc.compute_nodes.ip_range", "is not valid")


def test_cluster_network_must_exist(ws):
    ws["clusters"]["hpc"]["network"] = "storage_network"
    assert_issue(ws, "clusters.hpc.network", "'storage_network' is not defined", "cloud_network, hpc_network")


# ----------------------------------------------------------------- host capacity and overrides

def test_sum_of_vms_against_host_memory(ws):
    ws["hypervisor"] = {"hosts": [{"name": "ws", "capacity": {"cpu_cores": 64, "memory_gb": 128, "disk_gb": 4000}}]}
    assert_issue(ws, "hypervisor.hosts[0].capacity.memory_gb", "need 136 GiB", "128 GiB minus reserved_memory_gb 2")


def test_sum_of_vms_against_host_cpu_and_disk(ws):
    ws["hypervisor"] = {"hosts": [{"name": "ws", "capacity": {"cpu_cores": 10, "memory_gb": 512, "disk_gb": 1000}}],
                        "cpu_overcommit": 2}
    found = issues_of(ws)
    assert ("hypervisor.hosts[0].capacity.cpu_cores",
            "the VMs on ws ask for 68 vCPUs; 10 cores x cpu_overcommit 2 allow 20") in found
    assert ("hypervisor.hosts[0].capacity.disk_gb",
            "the VMs on ws need up to 1700 GiB of disk; the host offers 1000") in found


def test_capacity_fits(ws):
    ws["hypervisor"] = {"hosts": [{"name": "ws", "capacity": {"cpu_cores": 32, "memory_gb": 256, "disk_gb": 2000}}]}
    assert issues_of(ws) == []


def test_override_of_unknown_node(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["overrides"] = {"hpc-compute-09": {"memory_gb": 32}}
    assert_issue(ws, "clusters.hpc.compute_nodes.overrides.hpc-compute-09", "no such node",
                 "hpc-compute-01, hpc-compute-02, hpc-compute-03, hpc-compute-04")


def test_override_applies(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["overrides"] = {"hpc-compute-02": {"memory_gb": 32, "cpu_cores": 2}}
    node = cm.build_cluster_config(ws).node("hpc-compute-02")
    assert (node.memory_gb, node.cpu_cores, node.memory_mib) == (32, 2, 32768)


def test_unknown_hypervisor_host(ws):
    ws["clusters"]["hpc"]["compute_nodes"]["overrides"] = {"hpc-compute-02": {"hypervisor_host": "gpu9"}}
    assert_issue(ws, "clusters.hpc.compute_nodes.overrides.hpc-compute-02.hypervisor_host",
                 "'gpu9' is not a hypervisor host", "local")


def test_duplicate_hypervisor_host(ws):
    ws["hypervisor"] = {"hosts": [{"name": "a"}, {"name": "a", "uri": "qemu+ssh://root@b/system"}]}
    assert_issue(ws, "hypervisor.hosts[1].name", "duplicate")


# ----------------------------------------------------------------- slurm

def test_default_partition_must_exist(ws):
    ws["clusters"]["hpc"]["slurm_config"]["default_partition"] = "batch"
    assert_issue(ws, "clusters.hpc.slurm_config.default_partition", "'batch' is not one of the partitions",
                 "gpu, debug")


def test_duplicate_partition_and_bad_time(ws):
    ws["clusters"]["hpc"]["slurm_config"]["partitions"] = ["gpu", {"name": "gpu"}]
    ws["clusters"]["hpc"]["slurm_config"]["max_job_time"] = "24h"
    found = issues_of(ws)
    assert ("clusters.hpc.slurm_config.partitions[1]", "duplicate partition 'gpu'") in found
    assert any(p == "clusters.hpc.slurm_config.max_job_time" and "Slurm time" in m for p, m in found)


def test_partition_node_list(ws):
    ws["clusters"]["hpc"]["slurm_config"]["partitions"] = ["gpu", {"name": "debug", "nodes": ["hpc-compute-7"]}]
    assert_issue(ws, "clusters.hpc.slurm_config.partitions[1].nodes", "'hpc-compute-7' is not an HPC compute node")


def test_qos_need_accounting(ws):
    slurm = ws["clusters"]["hpc"]["slurm_config"]
    slurm["accounting"] = False
    slurm["qos"] = [{"name": "high", "priority": 100}]
    assert_issue(ws, "clusters.hpc.slurm_config.qos", "QoS need accounting", "set accounting: true")


@pytest.mark.parametrize("qos", [None, [], [{"name": "normal"}], [{"name": "normal", "priority": 0}]])
def test_without_accounting_the_default_qos_or_none_is_fine(ws, qos):
    slurm = ws["clusters"]["hpc"]["slurm_config"]
    slurm["accounting"] = False
    slurm.pop("qos", None)
    if qos is not None:
        slurm["qos"] = qos
    assert issues_of(ws) == []


def test_a_cpu_worker_override_cannot_enable_a_gpu():
    raw = load_yaml("config", "production.yml")
    raw["clusters"]["cloud"]["worker_nodes"]["cpu_workers"]["overrides"] = {"cloud-cpu-worker-02": {"gpu_enabled": True}}
    assert_issue(raw, "clusters.cloud.worker_nodes.cpu_workers.overrides.cloud-cpu-worker-02.gpu_enabled",
                 "a CPU worker never gets a GPU")


@pytest.mark.parametrize("text, shown", [
    ("30", "00:30:00"), ("0:30", "00:01:00"), ("00:30:00", "00:30:00"), ("90", "01:30:00"), ("12:00:00", "12:00:00"),
    ("01:30:01", "01:31:00"), ("2-00:00:00", "2-00:00:00"), ("1-12", "1-12:00:00"), ("36:00:00", "1-12:00:00"),
    ("UNLIMITED", ""), ("infinite", ""),
])
def test_slurm_time_as_sacctmgr_prints_it(text, shown):
    assert cm.slurm_time_display(text) == shown


# ----------------------------------------------------------------- GPUs

def test_duplicate_gpu_id_and_address(ws):
    ws["global"]["gpu_allocation"]["devices"][1]["id"] = "GPU-0"
    ws["global"]["gpu_allocation"]["devices"][1]["pci_address"] = "0000:65:00.0"
    found = issues_of(ws)
    assert ("global.gpu_allocation.devices[1].id", "duplicate GPU id 'GPU-0' (also devices[0])") in found
    assert ("global.gpu_allocation.devices[1].pci_address", "PCI address 0000:65:00.0 is also devices[0]") in found


def test_pci_address_form(ws):
    ws["global"]["gpu_allocation"]["devices"][0]["pci_address"] = "65:00.0"
    assert_issue(ws, "global.gpu_allocation.devices[0].pci_address", "DDDD:BB:SS.F")


def test_unknown_model(ws):
    ws["global"]["gpu_allocation"]["devices"][1]["model"] = "Voodoo 5 6000"
    assert_issue(ws, "global.gpu_allocation.devices[1].model", "unknown GPU model", "NVIDIA A100 80GB")


def test_mig_capable_on_a_non_mig_gpu(ws):
    ws["global"]["gpu_allocation"]["devices"][1]["mig_capable"] = True
    assert_issue(ws, "global.gpu_allocation.devices[1].mig_capable", "Quadro RTX 6000 does not support MIG")


def test_mig_profiles_on_a_non_mig_gpu(ws):
    ws["global"]["gpu_allocation"]["devices"][1]["allowed_mig_profiles"] = ["1g.10gb"]
    assert_issue(ws, "global.gpu_allocation.devices[1].allowed_mig_profiles", "does not support MIG")


def test_single_wrong_profile_name(ws):
    ws["global"]["gpu_allocation"]["devices"][0]["allowed_mig_profiles"] = ["1g.10gb", "1g.12gb"]
    assert_issue(ws, "global.gpu_allocation.devices[0].allowed_mig_profiles",
                 "1g.12gb is not NVIDIA A100 80GB profile", "1g.12gb is a NVIDIA H100 NVL profile")


def test_strategy_mig_forbids_whole(ws):
    ws["global"]["gpu_allocation"]["strategy"] = "mig"
    assert_issue(ws, "global.gpu_allocation.whole_gpus.cloud", "strategy 'mig'")


def test_strategy_whole_forbids_slices(ws):
    ws["global"]["gpu_allocation"]["strategy"] = "whole"
    found = issues_of(ws)
    assert {p for p, _unused in found} == {"global.gpu_allocation.mig_slices.hpc", "global.gpu_allocation.mig_slices.cloud"}


def test_strategy_whole_ok():
    raw = load_yaml("config", "workstation.yml")
    alloc = raw["global"]["gpu_allocation"]
    alloc.update(strategy="whole", mig_slices={}, whole_gpus={"hpc": 1, "cloud": 1})
    raw["clusters"]["hpc"]["compute_nodes"]["overrides"] = dict(
        ("hpc-compute-%02d" % i, {"gpu_enabled": False}) for i in (2, 3, 4))
    raw["clusters"]["cloud"]["worker_nodes"]["gpu_workers"]["count"] = 1
    raw["clusters"]["cloud"]["worker_nodes"]["gpu_workers"]["ip_range"] = "192.168.200.12"
    config = cm.build_cluster_config(raw)
    # Whole GPUs come from non-MIG devices first (hpc takes its share first), keeping MIG GPUs for slicing.
    assert [(d["id"], d["mode"], d["node"]) for d in config.plan["devices"]] == [
        ("GPU-0", "whole", "cloud-gpu-worker-01"), ("GPU-1", "whole", "hpc-compute-01")]


def test_gpus_for_an_absent_cluster(ws):
    del ws["clusters"]["cloud"]
    assert_issue(ws, "global.gpu_allocation.whole_gpus.cloud", "cloud cluster, which is not defined")


def test_gpu_enabled_without_gpu_allocation(minimal):
    minimal["clusters"]["hpc"]["compute_nodes"]["gpu_enabled"] = True
    assert_issue(minimal, "clusters.hpc.compute_nodes.gpu_enabled", "global.gpu_allocation defines no GPUs")


def test_cpu_workers_cannot_be_gpu_enabled(ws):
    ws["clusters"]["cloud"]["worker_nodes"]["cpu_workers"]["gpu_enabled"] = True
    assert_issue(ws, "clusters.cloud.worker_nodes.cpu_workers.gpu_enabled", "must be False")


def test_defaults_are_filled_and_documented_in_the_schema(minimal):
    data = cm.build_cluster_config(minimal).data
    assert data["hypervisor"]["tcg_tb_cache_mb"] == 128
    assert data["hypervisor"]["storage_pool"] == {"name": "lab-pool", "path": "/var/lib/libvirt/images/hyperscaler"}
    assert data["ssh"]["user"] == "hyperscaler"
    assert data["storage"]["shared"]["backend"] == "nfs"
    assert data["clusters"]["hpc"]["network"] == "hpc_network"
    assert data["images"]["hpc"]["name"] == "hpc-base"
    assert data["clusters"]["hpc"]["slurm_config"]["qos"] == [{"name": "normal", "priority": 0}]


def test_input_is_not_modified(ws):
    before = copy.deepcopy(ws)
    cm.build_cluster_config(ws)
    assert ws == before


def test_not_a_mapping():
    with pytest.raises(cm.ConfigError) as exc:
        cm.build_cluster_config(["a", "list"], "x.yml")
    assert "must hold a mapping" in str(exc.value)


def test_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: '1.0'\nmetadata: {name: lab\n")
    with pytest.raises(cm.ConfigError) as exc:
        cm.load_cluster_config(str(bad))
    assert exc.value.issues[0].path.startswith("line ") and "not valid YAML" in exc.value.issues[0].message


def test_missing_file():
    with pytest.raises(cm.ConfigError) as exc:
        cm.load_cluster_config("/nonexistent/cluster.yaml")
    assert "cannot read the file" in str(exc.value) and "/nonexistent/cluster.yaml" in str(exc.value)


def test_node_identity_is_stable(ws):
    a = cm.build_cluster_config(ws)
    b = cm.build_cluster_config(copy.deepcopy(ws))
    assert [(n.name, n.mac, n.vm_name) for n in a.nodes] == [(n.name, n.mac, n.vm_name) for n in b.nodes]
    assert len({n.mac for n in a.nodes}) == len(a.nodes)
    assert a.node("hpc-compute-03").vm_name == "hyperscaler-emulation-hpc-compute-03"


def test_schema_module_matches_schema_file():
    import json
    from helpers import repo_path
    with open(repo_path("schemas", "cluster.schema.json")) as handle:
        assert json.load(handle) == cm.load_schema(), "run scripts/gen-schema-module"


def test_schema_is_valid_2020_12():
    import jsonschema
    schema = cm.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-schema-version"] == cm.SCHEMA_VERSION


def test_reference_docs_match_the_schema():
    import subprocess
    import sys
    from helpers import repo_path
    path = repo_path("docs", "cluster-yaml-reference.md")
    before = open(path).read()
    subprocess.run([sys.executable, repo_path("scripts", "gen-config-docs")], check=True)
    after = open(path).read()
    assert before == after, "docs/cluster-yaml-reference.md was stale: commit the regenerated file"
