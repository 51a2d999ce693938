# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The NVML backend a module option names. Apart from backend.py, so that the simulator (which
implements backend.NvmlBackend) and the real backend never import each other.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.backend import (
    BackendInputError,
    PynvmlBackend,
)
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml


def make_backend(kind="nvml", simulator_state=None, simulator_spec=None, check_mode=False):
    """The backend a module option names: ``nvml`` (real, the default) or ``simulator``.

    In check mode a simulator created from ``simulator_spec`` stays in memory (nothing is written).
    """
    if kind == "simulator":
        if not simulator_state:
            raise BackendInputError("backend 'simulator' needs a simulator_state path", op="init")
        return SimulatedNvml(simulator_state, spec=simulator_spec, write_new=not check_mode)
    if kind != "nvml":
        raise BackendInputError("unknown NVML backend %r (use nvml or simulator)" % (kind,), op="init")
    return PynvmlBackend()
