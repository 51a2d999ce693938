# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Filters oumi_training_config and oumi_loss_curve (plugins/module_utils/mlops/oumi_config.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.mlops import oumi_config


def oumi_training_config(settings, output_dir, run_name, trainer_type="TRL_SFT", gpus=0):
    try:
        return oumi_config.oumi_training_config(dict(settings), output_dir, run_name, trainer_type, int(gpus))
    except (HyperscalerError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(str(exc))


def oumi_loss_curve(log_history):
    try:
        first, last, steps = oumi_config.loss_curve(list(log_history or []))
    except HyperscalerError as exc:
        raise AnsibleFilterError(str(exc))
    return {"first": first, "last": last, "steps": steps}


class FilterModule(object):
    def filters(self):
        return {"oumi_training_config": oumi_training_config, "oumi_loss_curve": oumi_loss_curve}
