"""The Molecule scenarios' hyperscaler_* variables are the inventory model's, not hand-made copies.

scripts/gen-molecule-vars writes them from molecule/cluster.yml; these tests fail when a committed file
differs from what it writes now (the model or molecule/cluster.yml changed: rerun the script), when a
hand-written file of a scenario sets a variable the model owns, or when a platform's groups are not
those of the model host it stands for.
"""
import glob
import importlib.machinery
import importlib.util
import os

import pytest
import yaml

from helpers import REPO, repo_path


def _generator():
    path = repo_path("scripts", "gen-molecule-vars")
    loader = importlib.machinery.SourceFileLoader("gen_molecule_vars", path)
    spec = importlib.util.spec_from_loader("gen_molecule_vars", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


GEN = _generator()
SCENARIOS = sorted(GEN.SCENARIOS)


def test_every_scenario_is_generated():
    on_disk = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(repo_path("molecule", "*", "molecule.yml")))
    assert on_disk == SCENARIOS, "add the scenario to SCENARIOS in scripts/gen-molecule-vars"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_generated_files_are_up_to_date(scenario):
    for rel, text in sorted(GEN.render(scenario).items()):
        path = os.path.join(REPO, rel)
        assert os.path.isfile(path), "%s is missing: run scripts/gen-molecule-vars" % rel
        with open(path) as handle:
            assert handle.read() == text, "%s differs from the inventory model: run scripts/gen-molecule-vars" % rel


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hand_written_vars_leave_the_models_to_the_model(scenario):
    generated = set(GEN.render(scenario))
    inventory = repo_path("molecule", scenario, "inventory")
    for path in sorted(glob.glob(os.path.join(inventory, "**", "*.yml"), recursive=True)):
        rel = os.path.relpath(path, REPO)
        if rel in generated:
            continue
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        owned = sorted(k for k in data if k.startswith("hyperscaler_"))
        assert not owned, "%s sets %s: the inventory model's; change molecule/cluster.yml instead" % (rel, owned)
        # The QoS come from cluster.yaml (hyperscaler_slurm.qos_settings): a scenario overriding slurm_qos
        # would no longer test that they reach the role.
        assert "slurm_qos" not in data, rel


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_platform_groups_are_the_model_hosts(scenario):
    inventory = GEN.model_inventory()
    with open(repo_path("molecule", scenario, "molecule.yml")) as handle:
        platforms = dict((p["name"], p) for p in yaml.safe_load(handle)["platforms"])
    assert sorted(platforms) == sorted(GEN.SCENARIOS[scenario])
    for container, (host, _overrides, extra) in GEN.SCENARIOS[scenario].items():
        wanted = GEN.host_groups(inventory, host) | set(extra)
        assert set(platforms[container]["groups"]) == wanted, container
        assert platforms[container].get("hostname", container) == container


def test_only_name_and_declared_keys_differ_from_the_model_host():
    inventory = GEN.model_inventory()
    for scenario in SCENARIOS:
        for container, (host, overrides, _extra) in GEN.SCENARIOS[scenario].items():
            model = inventory["hosts"][host]["vars"]
            mine = GEN.host_vars(inventory, host, overrides, container)
            assert mine["hyperscaler_gpus"] == model["hyperscaler_gpus"]
            assert mine["hyperscaler_network"] == model["hyperscaler_network"]
            # A worker's models (the mlops scenario's cloud-aio serves its model host's).
            assert mine.get("hyperscaler_model_server") == model.get("hyperscaler_model_server")
            differ = sorted(k for k in model["hyperscaler_node"] if mine["hyperscaler_node"][k] != model["hyperscaler_node"][k])
            assert set(differ) <= {"name", "ip_address"}, (container, differ)


def test_cluster_group_vars_are_those_of_the_scenarios_clusters():
    """group_vars/hpc for the HPC scenarios, group_vars/cloud for mlops: the groups the containers are in."""
    inventory = GEN.model_inventory()
    for scenario in SCENARIOS:
        with open(repo_path("molecule", scenario, "molecule.yml")) as handle:
            platform_groups = set(g for p in yaml.safe_load(handle)["platforms"] for g in p["groups"])
        generated = sorted(os.path.basename(os.path.dirname(rel)) for rel in GEN.render(scenario, inventory)
                           if os.sep + "group_vars" + os.sep in rel)
        assert generated == sorted({"all"} | (platform_groups & set(GEN.GROUP_CHILDREN))), scenario


def test_mlops_scenario_serves_the_models_of_cluster_yml():
    """The converge has a model to register and serve only when molecule/cluster.yml has the mlops section."""
    host_vars = GEN.render("mlops")[os.path.join("molecule", "mlops", "inventory", "host_vars", "cloud-aio.yml")]
    assert yaml.safe_load(host_vars)["hyperscaler_model_server"]["models"] == [{"name": "digits-cnn", "alias": "champion"}]
