# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The Oumi training config (``oumi train -c FILE``) of cluster.yaml's mlops.finetune: a pure function.

The keys are those of oumi 0.9's ``oumi.core.configs.TrainingConfig`` (``model``: ModelParams,
``data``: DataParams, ``training``: TrainingParams). The run reports to MLflow through Oumi's
``training.enable_mlflow`` (transformers' MLflow callback, which reads MLFLOW_TRACKING_URI and
MLFLOW_EXPERIMENT_NAME from the job's environment); TensorBoard and Weights & Biases stay off.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

# Oumi's trainers: TRL_SFT (TRL's SFTTrainer through Oumi's HF wrapper), HF (transformers' Trainer) and
# OUMI (Oumi's own loop). SFT on conversations needs TRL_SFT or HF; the collection uses TRL_SFT.
TRAINER_TYPES = ("TRL_SFT", "HF", "OUMI")
_MODEL_ID = re.compile(r"^(/.+|[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _need(settings, key, kind, check, what):
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, kind) or not check(value):
        raise HyperscalerError("mlops.finetune.%s: %s (got %r)" % (key, what, value))
    return value


def oumi_training_config(settings, output_dir, run_name, trainer_type="TRL_SFT", gpus=0, seed=42):
    """The Oumi TrainingConfig as a dict, from the inventory's hyperscaler_mlops.finetune.

    ``settings``: model, dataset, chat_template, max_steps, learning_rate, batch_size, max_length
    (the schema's keys). ``output_dir``: the run's directory on the shared filesystem. ``gpus``: 0 for
    CPU (float32, no device map), else bfloat16 on the GPUs. Raises HyperscalerError naming the field.
    """
    if not isinstance(settings, dict):
        raise HyperscalerError("mlops.finetune: expected a mapping, got %r" % (settings,))
    model = _need(settings, "model", str, _MODEL_ID.match, "a Hugging Face id org/name or an absolute directory")
    dataset = _need(settings, "dataset", str, lambda v: v.startswith("/") and v.endswith((".jsonl", ".json")),
                    "an absolute .jsonl or .json file")
    template = _need(settings, "chat_template", str, bool, "an Oumi chat template name")
    max_steps = _need(settings, "max_steps", int, lambda v: v >= 1, "an integer >= 1")
    rate = _need(settings, "learning_rate", (int, float), lambda v: 0 < v <= 1, "a number in (0, 1]")
    batch = _need(settings, "batch_size", int, lambda v: v >= 1, "an integer >= 1")
    length = _need(settings, "max_length", int, lambda v: v >= 16, "an integer >= 16")
    if trainer_type not in TRAINER_TYPES:
        raise HyperscalerError("trainer_type: one of %s (got %r)" % (", ".join(TRAINER_TYPES), trainer_type))
    if not (isinstance(output_dir, str) and output_dir.startswith("/")):
        raise HyperscalerError("output_dir: an absolute directory (got %r)" % (output_dir,))
    if not (isinstance(run_name, str) and _RUN_NAME.match(run_name)):
        raise HyperscalerError("run_name: letters, digits, '.', '_' and '-' (got %r)" % (run_name,))
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise HyperscalerError("gpus_per_node: an integer >= 0 (got %r)" % (gpus,))
    return {
        "model": {
            "model_name": model,
            "model_max_length": length,
            "chat_template": template,
            "torch_dtype_str": "bfloat16" if gpus else "float32",
            # One process per node: no accelerate device map on CPU; "auto" places the model on the GPUs.
            "device_map": "auto" if gpus else None,
            "trust_remote_code": False,
            "load_pretrained_weights": True,
        },
        "data": {
            "train": {
                "datasets": [{"dataset_name": "text_sft_jsonl", "dataset_path": dataset}],
            },
        },
        "training": {
            "trainer_type": trainer_type,
            "output_dir": output_dir,
            "run_name": run_name,
            "max_steps": max_steps,
            "per_device_train_batch_size": batch,
            "learning_rate": float(rate),
            "seed": seed,
            "logging_steps": 1,
            "logging_first_step": True,
            # No intermediate checkpoints: the final model is saved into output_dir.
            "save_steps": 0,
            "save_final_model": True,
            "enable_mlflow": True,
            "enable_tensorboard": False,
            "enable_wandb": False,
            "dataloader_num_workers": 0,
        },
    }


def loss_curve(log_history):
    """(first loss, last loss, steps) from a transformers trainer_state.json's ``log_history``.

    Raises HyperscalerError when fewer than two steps logged a loss: the check cannot be made.
    """
    points = [(e["step"], e["loss"]) for e in (log_history or [])
              if isinstance(e, dict) and isinstance(e.get("loss"), (int, float)) and "step" in e]
    if len(points) < 2:
        raise HyperscalerError("the run logged a loss at %d step(s); at least 2 are needed to see it decrease"
                               % len(points))
    points.sort()
    return points[0][1], points[-1][1], points[-1][0]
