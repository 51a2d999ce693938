"""mlops.finetune (Oumi fine-tuning on Slurm): defaults, the inventory's settings, and each rule with its path."""
import copy

import pytest
from helpers import assert_issue, issues_of, load_yaml

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import inventory as ci
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as cm


@pytest.fixture
def lab():
    return load_yaml("config", "mlops.yml")


def test_defaults_off_with_smollm(lab):
    finetune = cm.build_cluster_config(copy.deepcopy(lab)).data["mlops"]["finetune"]
    assert finetune == {"enabled": False, "model": "HuggingFaceTB/SmolLM-135M", "chat_template": "chat_ml",
                        "max_steps": 100, "learning_rate": 0.0002, "batch_size": 4, "max_length": 512,
                        "gpus_per_node": 0, "experiment": "finetune"}


def test_inventory_fills_partition_and_paths(lab):
    lab["mlops"]["finetune"] = {"enabled": True}
    settings = ci.mlops_settings(cm.build_cluster_config(lab))["finetune"]
    assert settings["partition"] == "compute"
    assert settings["dataset"] == "/shared/finetune/data/train.jsonl"
    assert settings["output_dir"] == "/shared/finetune/runs"


def test_written_values_are_kept(lab):
    lab["mlops"]["finetune"] = {"enabled": True, "dataset": "/data/x.json", "output_dir": "/scratch/ft",
                                "model": "/models/tiny", "partition": "compute"}
    settings = ci.mlops_settings(cm.build_cluster_config(lab))["finetune"]
    assert (settings["dataset"], settings["output_dir"], settings["model"]) == ("/data/x.json", "/scratch/ft",
                                                                                "/models/tiny")
    assert issues_of(lab) == []


def test_unknown_partition(lab):
    lab["mlops"]["finetune"] = {"enabled": True, "partition": "gpu"}
    assert_issue(lab, "mlops.finetune.partition", "'gpu' is not a partition", "compute")


def test_gpus_without_gpu_nodes(lab):
    lab["mlops"]["finetune"] = {"enabled": True, "gpus_per_node": 1}
    assert_issue(lab, "mlops.finetune.gpus_per_node", "no node with gpu_enabled")


def test_disabled_is_not_checked(lab):
    lab["mlops"]["finetune"] = {"enabled": False, "partition": "nope", "gpus_per_node": 2}
    assert issues_of(lab) == []


@pytest.mark.parametrize("key,value,fragment", [
    ("model", "SmolLM-135M", "does not match"),
    ("dataset", "data/train.jsonl", "does not match"),
    ("dataset", "/data/train.csv", "does not match"),
    ("max_steps", 0, "less than the minimum"),
    ("learning_rate", 0, "less than or equal to the minimum"),
    ("batch_size", "4", "is not of type"),
    ("chat_template", "llama2", "is not allowed"),
    ("output_dir", "runs", "does not match"),
])
def test_schema_rules_name_the_field(lab, key, value, fragment):
    lab["mlops"]["finetune"] = {"enabled": True, key: value}
    found = issues_of(lab)
    assert [path for path, unused in found] == ["mlops.finetune.%s" % key], found


def test_unknown_key(lab):
    lab["mlops"]["finetune"] = {"enabled": True, "epochs": 3}
    found = issues_of(lab)
    assert any(p.startswith("mlops.finetune") and "epochs" in m for p, m in found), found
