"""plugins/module_utils/mlops/oumi_config.py: the Oumi TrainingConfig of mlops.finetune and the loss check."""
import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.mlops import oumi_config as oc

SETTINGS = {"model": "HuggingFaceTB/SmolLM-135M", "dataset": "/shared/finetune/data/train.jsonl",
            "chat_template": "chat_ml", "max_steps": 40, "learning_rate": 0.003, "batch_size": 8,
            "max_length": 128, "enabled": True, "experiment": "finetune", "partition": "compute"}


def test_cpu_config():
    config = oc.oumi_training_config(SETTINGS, "/shared/finetune/runs/abc", "ft-abc")
    assert config["model"] == {"model_name": "HuggingFaceTB/SmolLM-135M", "model_max_length": 128,
                               "chat_template": "chat_ml", "torch_dtype_str": "float32", "device_map": None,
                               "trust_remote_code": False, "load_pretrained_weights": True}
    assert config["data"] == {"train": {"datasets": [{"dataset_name": "text_sft_jsonl",
                                                      "dataset_path": "/shared/finetune/data/train.jsonl"}]}}
    training = config["training"]
    assert training["trainer_type"] == "TRL_SFT" and training["output_dir"] == "/shared/finetune/runs/abc"
    assert (training["max_steps"], training["per_device_train_batch_size"], training["learning_rate"]) == (40, 8, 0.003)
    assert training["enable_mlflow"] is True
    assert training["enable_wandb"] is False and training["enable_tensorboard"] is False
    assert training["logging_steps"] == 1 and training["logging_first_step"] is True


def test_gpu_config_uses_bfloat16():
    config = oc.oumi_training_config(SETTINGS, "/o", "r", gpus=2)
    assert config["model"]["torch_dtype_str"] == "bfloat16" and config["model"]["device_map"] == "auto"


def test_local_model_directory():
    config = oc.oumi_training_config(dict(SETTINGS, model="/shared/models/tiny-llama"), "/o", "r")
    assert config["model"]["model_name"] == "/shared/models/tiny-llama"


def test_integer_learning_rate_becomes_float():
    assert oc.oumi_training_config(dict(SETTINGS, learning_rate=1), "/o", "r")["training"]["learning_rate"] == 1.0


@pytest.mark.parametrize("key,value", [
    ("model", "smollm"), ("model", ""), ("dataset", "rel.jsonl"), ("dataset", "/x.csv"), ("max_steps", 0),
    ("max_steps", True), ("learning_rate", 0), ("learning_rate", "0.1"), ("batch_size", 0), ("max_length", 8),
    ("chat_template", ""),
])
def test_bad_settings_name_the_field(key, value):
    with pytest.raises(HyperscalerError, match=r"mlops\.finetune\.%s" % key):
        oc.oumi_training_config(dict(SETTINGS, **{key: value}), "/o", "r")


def test_missing_setting():
    settings = dict(SETTINGS)
    del settings["dataset"]
    with pytest.raises(HyperscalerError, match="mlops.finetune.dataset"):
        oc.oumi_training_config(settings, "/o", "r")


@pytest.mark.parametrize("args,field", [
    (("relative", "r"), "output_dir"), (("/o", "bad name"), "run_name"), (("/o", "r", "DPO"), "trainer_type"),
])
def test_bad_arguments(args, field):
    with pytest.raises(HyperscalerError, match=field):
        oc.oumi_training_config(SETTINGS, *args)


def test_gpus_must_be_a_count():
    with pytest.raises(HyperscalerError, match="gpus_per_node"):
        oc.oumi_training_config(SETTINGS, "/o", "r", gpus=-1)


def test_loss_curve():
    history = [{"loss": 5.9, "step": 1}, {"loss": 4.0, "step": 2}, {"loss": 2.2, "step": 30},
               {"train_loss": 3.4, "step": 30}]
    assert oc.loss_curve(history) == (5.9, 2.2, 30)


def test_loss_curve_sorts_by_step():
    assert oc.loss_curve([{"loss": 2.0, "step": 9}, {"loss": 6.0, "step": 1}]) == (6.0, 2.0, 9)


@pytest.mark.parametrize("history", [[], None, [{"loss": 1.0, "step": 1}], [{"train_loss": 1.0, "step": 3}] * 3])
def test_loss_curve_needs_two_points(history):
    with pytest.raises(HyperscalerError, match="at least 2"):
        oc.loss_curve(history)
