# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The command-line validator, ``scripts/hyperscaler-config validate|plan CONFIG [--json]``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import sys

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import (
    ConfigError,
    load_cluster_config,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.report import render_text, summary


def main(argv=None, out=None, err=None):
    """hyperscaler-config validate|plan CONFIG [--json]: exit 0 when valid, 1 when not, 2 on usage."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="hyperscaler-config",
                                     description="Validate a cluster.yaml and print its nodes and GPU plan.")
    parser.add_argument("command", choices=["validate", "plan"],
                        help="validate: check and print a summary; plan: print the full GPU plan")
    parser.add_argument("config", help="path to cluster.yaml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        config = load_cluster_config(args.config)
    except ConfigError as exc:
        if args.json:
            json.dump({"valid": False, "source": exc.source, "issues": [i.as_dict() for i in exc.issues]},
                      out, indent=2)
            out.write("\n")
        else:
            err.write(str(exc) + "\n")
        return 1
    if args.json:
        payload = summary(config) if args.command == "validate" else config.plan
        json.dump(dict(valid=True, **payload) if args.command == "validate" else payload, out, indent=2)
        out.write("\n")
    elif args.command == "validate":
        out.write(render_text(config) + "\n")
    else:
        json.dump(config.plan, out, indent=2)
        out.write("\n")
    return 0
