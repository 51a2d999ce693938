# Mitogen's linear strategy (PyPI `mitogen`, pinned in requirements-test.txt) under the name ansible.cfg
# uses, without a path into the virtual environment's site-packages (which names the Python version).
# One persistent Python interpreter per host instead of one per task: under TCG a guest needs seconds to
# start Python (docs/benchmarks.md). `ANSIBLE_STRATEGY=linear` runs without it.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401 pylint: disable=unused-import
except ImportError as exc:  # pragma: no cover - only without the pinned requirements
    from ansible.errors import AnsibleError

    raise AnsibleError(
        "strategy mitogen_linear needs the Python package mitogen (pip install -r requirements-test.txt, "
        "or run with ANSIBLE_STRATEGY=linear): %s" % exc
    )
