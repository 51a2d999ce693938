"""cluster.yaml -> libvirt_cluster specs (pure), and the module-facing helpers (seeds, netns SSH probe)."""
import copy
import json
import subprocess

import pytest
from helpers import load_yaml, repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import seed as cis
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import specs as ls
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import definitions as libvirt_xml
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    build_cluster_config,
    load_cluster_config,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_mac, stable_uuid
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxJ2yVQ8G1cEcdWk8o2p3VbO0lmK6uJ0b5l3Y0q8x1P test@host"


@pytest.fixture
def minimal():
    return load_cluster_config(repo_path("config", "minimal.yml"))


def test_minimal_networks_pool_and_domains(minimal):
    specs = ls.cluster_specs(minimal, seed_dir="/srv/seed", accelerator="tcg")
    assert specs["pool"] == {"name": "hs-lab-pool", "path": "/var/lib/libvirt/images/hyperscaler"}
    [net] = specs["networks"]
    assert net["name"] == "hs-lab-hpc_network"
    assert (net["subnet"], net["bridge"], net["gateway"], net["domain"]) == \
        ("192.168.100.0/24", "hsbr-hpc", "192.168.100.1", "lab.internal")
    assert net["hosts"] == [
        {"mac": stable_mac("lab", "hpc-controller"), "name": "hpc-controller", "ip": "192.168.100.10"},
        {"mac": stable_mac("lab", "hpc-compute-01"), "name": "hpc-compute-01", "ip": "192.168.100.11"},
        {"mac": stable_mac("lab", "hpc-compute-02"), "name": "hpc-compute-02", "ip": "192.168.100.12"},
    ]
    assert net["dns_hosts"][1] == {"ip": "192.168.100.11",
                                   "hostnames": ["hpc-compute-01", "hpc-compute-01.lab.internal"]}
    names = [d["name"] for d in specs["domains"]]
    assert names == ["lab-hpc-controller", "lab-hpc-compute-01", "lab-hpc-compute-02"]
    dom = specs["domains"][1]
    assert dom["disk"] == {"path": "/var/lib/libvirt/images/hyperscaler/lab-hpc-compute-01.qcow2",
                           "backing_path": "/var/cache/aihow-hyperscaler/images/hpc-base.qcow2",
                           "capacity_gib": 8, "format": "qcow2"}
    assert dom["seed_iso"] == "/srv/seed/lab-hpc-compute-01-seed.iso"
    assert dom["nics"] == [{"network": "hs-lab-hpc_network", "mac": stable_mac("lab", "hpc-compute-01")}]
    assert (dom["vcpus"], dom["memory_mib"], dom["accelerator"], dom["tcg_tb_cache_mib"]) == (1, 1024, "tcg", 128)
    assert (dom["cluster"], dom["node"], dom["role"], dom["ssh_host"]) == \
        ("lab", "hpc-compute-01", "hpc-compute", "192.168.100.11")
    assert dom["gpus"] == []


def test_specs_render_to_valid_xml_with_the_node_mac(minimal):
    specs = ls.cluster_specs(minimal, accelerator="tcg")
    xml = libvirt_xml.domain_xml(specs["domains"][0])
    assert "52:54:00" in xml and stable_mac("lab", "hpc-controller") in xml
    assert "<tb-cache unit=\"MiB\">128</tb-cache>" in xml
    assert "hs-lab-hpc_network" in libvirt_xml.network_xml(specs["networks"][0])
    # seed ISO defaults to the pool directory
    assert specs["domains"][0]["seed_iso"] == "/var/lib/libvirt/images/hyperscaler/lab-hpc-controller-seed.iso"


def test_images_override_and_cache_dir_default(minimal):
    paths = ls.image_paths(minimal, {"hpc-base": "/golden/x.qcow2"})
    assert paths == {"hpc": "/golden/x.qcow2"}
    specs = ls.cluster_specs(minimal, images={"hpc-base": "/golden/x.qcow2"})
    assert {d["disk"]["backing_path"] for d in specs["domains"]} == {"/golden/x.qcow2"}


def test_workstation_two_networks_and_nvml_gpus():
    config = load_cluster_config(repo_path("config", "workstation.yml"))
    specs = ls.cluster_specs(config)
    nets = {n["name"]: n for n in specs["networks"]}
    assert sorted(nets) == sorted(ls.network_name(config, n) for n in config.data["global"]["networks"])
    for net in nets.values():  # every node is on exactly its network's DHCP list
        members = [n for n in config.nodes if ls.network_name(config, n.network) == net["name"]]
        assert [h["name"] for h in net["hosts"]] == [n.name for n in members]
    by_node = {d["node"]: d for d in specs["domains"]}
    assert config.plan["backend"] == "nvml"
    for node in config.nodes:
        gpus = by_node[node.name]["gpus"]
        plan = config.plan["nodes"].get(node.name, [])
        assert len(gpus) == len(plan)
        migs = 0
        for want, got in zip(plan, gpus):
            if want["kind"] == "whole":
                assert got == {"kind": "pci", "address": want["pci_address"], "model": want["model"]}
            else:  # the mdev vgpu_mdev creates for this VM: same stable UUID derivation
                assert got["kind"] == "mdev" and got["profile"] == want["profile"]
                assert got["uuid"] == stable_uuid(config.name, node.vm_name, migs)
                migs += 1
    assert any(d["gpus"] for d in specs["domains"])
    for d in specs["domains"]:
        libvirt_xml.domain_xml(dict(d, accelerator="kvm"))  # every GPU spec is renderable


def test_simulated_backend_gives_metadata_only_gpus():
    raw = load_yaml("config", "workstation.yml")
    raw["global"]["gpu_allocation"]["backend"] = "simulator"
    config = build_cluster_config(copy.deepcopy(raw), "sim.yml")
    specs = ls.cluster_specs(config, accelerator="tcg")
    gpus = [g for d in specs["domains"] for g in d["gpus"]]
    assert gpus and {g["kind"] for g in gpus} == {"simulated"}
    xml = libvirt_xml.domain_xml([d for d in specs["domains"] if d["gpus"]][0])
    assert "<hostdev" not in xml and "hyperscaler:gpu" in xml


def test_hypervisor_host_filter(minimal):
    assert len(ls.cluster_specs(minimal, hypervisor_host="local")["domains"]) == 3
    with pytest.raises(HyperscalerError, match=r"'gpu9' is not in .*\(known: local\)"):
        ls.cluster_specs(minimal, hypervisor_host="gpu9")


def test_pool_name_not_double_prefixed():
    raw = load_yaml("config", "minimal.yml")
    raw["hypervisor"]["storage_pool"] = {"name": "hs-mine", "path": "/p"}
    config = build_cluster_config(raw, "p.yml")
    assert ls.pool_spec(config) == {"name": "hs-mine", "path": "/p"}


def test_module_specs_explicit_passthrough():
    params = {"config": None, "pool": None, "networks": [{"name": "hs-x"}], "domains": [], "accelerator": None}
    got = ls.module_specs(params)
    assert got["networks"] == [{"name": "hs-x"}] and got["accelerator"] == "auto" and got["seeds"] == []


def test_module_specs_from_config_with_key(minimal, tmp_path):
    params = {"config": repo_path("config", "minimal.yml"), "images": {}, "seed_dir": str(tmp_path),
              "hypervisor_host": None, "owner_prefix": "hs-", "state": "running", "ssh_public_key": KEY,
              "accelerator": None}
    got = ls.module_specs(params)
    assert got["accelerator"] == "auto"  # hypervisor.accelerator of minimal.yml
    assert [s["path"] for s in got["seeds"]] == [d["seed_iso"] for d in got["domains"]]
    files = got["seeds"][0]["files"]
    assert '"hostname": "hpc-controller"' in files["user-data"] and KEY in files["user-data"]
    assert '"name": "hyperscaler"' in files["user-data"]
    assert '"fqdn": "hpc-controller.lab.internal"' in files["user-data"]
    # no key: nothing to write; absent: paths to remove, even without a key
    assert ls.module_specs(dict(params, ssh_public_key=None))["seeds"] == []
    absent = ls.module_specs(dict(params, ssh_public_key=None, state="absent"))["seeds"]
    assert len(absent) == 3 and all(s["files"] is None for s in absent)


def test_module_specs_bad_config_lists_issues(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: '1.0'\nmetadata: {name: Bad}\n")
    with pytest.raises(HyperscalerError) as exc:
        ls.module_specs({"config": str(bad), "state": "present"})
    assert exc.value.details["issues"]


def test_converge_seeds_write_unchanged_remove(tmp_path):
    path = str(tmp_path / "vm-seed.iso")
    files = cis.seed_files("vm", "vm", "admin", KEY)
    seeds = [{"path": path, "files": files}]
    done, changes = ls.converge_seeds(seeds, "present", check_mode=True)
    assert done == {path: "written"} and changes[0]["action"] == "write"
    assert not (tmp_path / "vm-seed.iso").exists()  # check mode writes nothing
    assert ls.converge_seeds(seeds, "present")[0] == {path: "written"}
    assert ls.converge_seeds(seeds, "present") == ({path: "unchanged"}, [])
    assert ls.converge_seeds([{"path": path, "files": None}], "absent")[0] == {path: "removed"}
    assert not (tmp_path / "vm-seed.iso").exists()
    assert ls.converge_seeds([{"path": path, "files": None}], "absent") == ({path: "absent"}, [])


def test_netns_probe_runs_inside_the_namespace():
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0 if argv[-3] == "10.0.0.5" else 1)

    probe = ls.netns_port_probe("hs-lab", python="/usr/bin/python3", run=run)
    assert probe("10.0.0.5", 22, 3) is True
    assert probe("10.0.0.6", 22, 3) is False
    assert calls[0][:5] == ["ip", "netns", "exec", "hs-lab", "/usr/bin/python3"]
    assert calls[0][-3:] == ["10.0.0.5", "22", "3"]

    def missing(argv, **kw):
        raise OSError("no ip")
    assert ls.netns_port_probe("hs-lab", run=missing)("10.0.0.5", 22, 1) is False


def test_netns_ssh_wait_polls_the_probe():
    answers = iter([False, True])
    wait = ls.netns_ssh_wait("hs-lab", probe=lambda h, p, t: next(answers))
    assert wait("10.0.0.5", 22, 30) is True


@pytest.mark.parametrize("template", ["minimal.yml", "workstation.yml", "production.yml"])
def test_controller_built_specs_give_what_the_config_gives(template, tmp_path):
    # vms.yml passes the inventory's specs; the module's view must be the one cluster.yaml gives directly.
    from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import load_cluster_config
    path = repo_path("config", template)
    config = load_cluster_config(path)
    options = {"images": {"hpc-base": "/other/hpc.qcow2"}, "seed_dir": str(tmp_path), "state": "running",
               "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey test"}
    for host in config.hypervisor_hosts():
        from_inventory = ls.inventory_specs(config, host["name"])
        json.dumps(from_inventory)  # a host variable: plain data only
        via_specs = ls.module_specs(dict(options, specs=from_inventory))
        via_config = ls.module_specs(dict(options, config=path, hypervisor_host=host["name"]))
        assert via_specs == via_config
        assert all(d["seed_iso"].startswith(str(tmp_path)) for d in via_specs["domains"])
        assert [d["disk"]["backing_path"] for d in via_specs["domains"] if d["image"] == "hpc-base"] == \
            ["/other/hpc.qcow2"] * len([n for n in config.nodes if n.cluster == "hpc" and n.hypervisor_host == host["name"]])


def test_specs_that_are_not_the_inventorys_fail_clearly():
    with pytest.raises(HyperscalerError, match="specs.domains must be a list"):
        ls.module_specs({"specs": {"domains": "x", "seeds": []}, "state": "present"})
