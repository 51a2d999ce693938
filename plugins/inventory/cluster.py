# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: cluster
author: aihow engineering (@aihow)
short_description: Hosts and groups of the emulated data centre, from cluster.yaml
version_added: 0.1.0
description:
  - Reads a cluster.yaml (validated against C(schemas/cluster.schema.json) and the semantic rules of the
    collection's config model) and returns every VM of the HPC and cloud clusters as a host, with its address,
    resources, network and GPU assignment from the GPU allocation plan.
  - "Groups: C(hpc), C(hpc_controller), C(hpc_compute), C(cloud), C(cloud_control_plane), C(cloud_workers),
    one C(slurm_partition_<name>) group per Slurm partition, and C(hypervisors) with the libvirt host(s).
    With C(clusters.cloud.platform=kubernetes) also C(k8s_control_plane), C(k8s_worker_cpu), C(k8s_worker_gpu)
    and the groups Kubespray expects (C(kube_control_plane), C(kube_node), C(etcd), C(k8s_cluster))."
  - With an C(mlops) section, C(hyperscaler_mlops) on C(all) (resolved, with the tracking server's address and
    URL and the workers of each served model) and C(hyperscaler_model_server) on each cloud worker.
  - Host names are stable; see docs/inventory.md.
  - C(compose), C(groups) and C(keyed_groups) apply to the VMs (hosts with C(hyperscaler_node)), not to the
    hypervisor hosts.
  - An invalid cluster.yaml fails the inventory with every validation message (path and reason). Ansible
    only turns a failed source into a non-zero exit with C(any_unparsed_is_failed=true) in the
    C([inventory]) section of ansible.cfg (the collection's ansible.cfg sets it); without it
    ansible-inventory prints the messages as warnings.
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: [aihow.hyperscaler.cluster]
    type: str
  config:
    description:
      - Path to the cluster.yaml. A relative path is taken from the inventory source file's directory.
    required: true
    type: str
"""

EXAMPLES = r"""
---
# inventory.cluster.yml
plugin: aihow.hyperscaler.cluster
config: ../config/minimal.yml

---
# Group GPU nodes by their first GPU's model, expose a short name
plugin: aihow.hyperscaler.cluster
config: /etc/hyperscaler/cluster.yaml
compose:
  short_name: hyperscaler_node.name | regex_replace('^(hpc|cloud)-', '')
keyed_groups:
  - key: hyperscaler_gpus | map(attribute='model_key') | first | default('none')
    prefix: gpu_model
"""

import hashlib
import os
import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var as make_unsafe

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ConfigError,
    load_cluster_config,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.inventory import inventory_from_config
from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt.specs import inventory_specs


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "aihow.hyperscaler.cluster"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(
            ("cluster.yml", "cluster.yaml", "hyperscaler.yml", "hyperscaler.yaml"))

    def _config_path(self, source):
        config = os.path.expandvars(os.path.expanduser(self.get_option("config")))
        if not os.path.isabs(config):
            config = os.path.join(os.path.dirname(os.path.abspath(source)), config)
        return os.path.normpath(config)

    def _cache_key_for(self, source, config_path):
        # The cache must follow the cluster.yaml's content, not only the source file's name.
        try:
            with open(config_path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()[:16]
        except (IOError, OSError):
            digest = "unreadable"
        return "%s_%s" % (self.get_cache_key(source), digest)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        config_path = self._config_path(path)
        cache_key = self._cache_key_for(path, config_path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        model = None
        if use_cache:
            try:
                model = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if model is None:
            try:
                config = load_cluster_config(config_path)
            except ConfigError as exc:
                raise AnsibleParserError(str(exc))
            # A local hypervisor runs modules with this very interpreter (the one running Ansible).
            model = inventory_from_config(config, local_python=sys.executable)
            # The VM definitions are built here, on the controller: a hypervisor needs no cluster.yaml.
            for host in config.hypervisor_hosts():
                model["hosts"][host["name"]]["vars"]["hyperscaler_libvirt_specs"] = inventory_specs(config, host["name"])
        if update_cache:
            self._cache[cache_key] = model
        self._populate(model)

    def _populate(self, model):
        strict = self.get_option("strict")
        for group, variables in model["groups"].items():
            self.inventory.add_group(group)
            for key, value in variables.items():
                self.inventory.set_variable(group, key, make_unsafe(value))
        for group, children in model["children"].items():
            for child in children:
                self.inventory.add_child(group, child)
        for name, host in model["hosts"].items():
            self.inventory.add_host(name)
            for group in host["groups"]:
                self.inventory.add_child(group, name)
            for key, value in host["vars"].items():
                self.inventory.set_variable(name, key, make_unsafe(value))
            if "hyperscaler_node" not in host["vars"]:
                continue  # compose/groups/keyed_groups describe VMs; hypervisor hosts have no node vars
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
