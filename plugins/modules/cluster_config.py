#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cluster_config
short_description: Validate a cluster.yaml and return its nodes and GPU allocation plan
version_added: 0.1.0
author: aihow engineering (@aihow)
description:
  - Loads a cluster.yaml with the collection's one config model, which applies the JSON Schema and the
    semantic checks (networks, addresses, resources against host capacity, GPU models and MIG profiles,
    the placement of every MIG instance, GPU-enabled nodes against allocations).
  - Fails with every problem found, each with its path in the file, in C(issues).
  - Reads only; never changes anything (C(changed) is always false).
options:
  path:
    description: Path to the cluster.yaml on the host the module runs on (usually localhost).
    type: path
    required: true
attributes:
  check_mode:
    description: Can run in check mode and return the same result; it never changes anything.
    support: full
  diff_mode:
    description: Reports no diff; nothing changes.
    support: none
requirements:
  - jsonschema
  - PyYAML
"""

EXAMPLES = r"""
- name: Validate the cluster definition and show the GPU plan
  aihow.hyperscaler.cluster_config:
    path: "{{ playbook_dir }}/../config/workstation.yml"
  register: cluster
  delegate_to: localhost
  run_once: true

- name: Show which node gets which GPU
  ansible.builtin.debug:
    msg: "{{ cluster.report.splitlines() }}"
"""

RETURN = r"""
name:
  description: metadata.name of the cluster.
  returned: success
  type: str
config:
  description: The configuration with every default filled in.
  returned: success
  type: dict
nodes:
  description: Every VM with its cluster, role, resources, address and GPU assignments.
  returned: success
  type: list
  elements: dict
plan:
  description: The GPU allocation plan (devices with mode, MIG layout with explicit placements, per-node assignments).
  returned: success
  type: dict
report:
  description: The same as a human-readable table.
  returned: success
  type: str
issues:
  description: Every validation problem, each with C(path), C(message) and, where the file gives one, C(line).
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ConfigError,
    load_cluster_config,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.report import render_text, summary
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.module_base import (
    HyperscalerModule,
    ModuleResult,
)


class ClusterConfigModule(HyperscalerModule):
    argument_spec = dict(path=dict(type="path", required=True))

    def logic(self):
        try:
            config = load_cluster_config(self.params["path"])
        except ConfigError as exc:
            raise HyperscalerError(str(exc), issues=[i.as_dict() for i in exc.issues])
        report = summary(config)
        return ModuleResult(changed=False, name=config.name, config=config.data, nodes=report["nodes"],
                            plan=config.plan, report=render_text(config))


def main():
    ClusterConfigModule().run()


if __name__ == "__main__":
    main()
