# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""One base class for every module of the collection.

Modules stay thin: they declare an argument_spec and implement ``logic()``, which
computes the wanted state with module_utils and returns a :class:`ModuleResult`.
The base class gives all of them the same check-mode, diff and error handling:
backend failures are raised as :class:`HyperscalerError` (or a subclass) by the
module_utils, never reported with ``exit_json``/``fail_json`` from helper code,
and mapped here to one clear ``fail_json`` message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


class ModuleResult:
    """What a module reports: changed, diff before/after and extra return values."""

    def __init__(self, changed=False, before=None, after=None, **values):
        self.changed = changed
        self.before = before
        self.after = after
        self.values = values

    def as_dict(self, want_diff):
        out = dict(self.values)
        out["changed"] = bool(self.changed)
        if want_diff and (self.before is not None or self.after is not None):
            out["diff"] = {"before": self.before, "after": self.after}
        return out


class HyperscalerModule:
    """Base class: subclass it, set ``argument_spec`` (and friends), implement ``logic``."""

    argument_spec = {}
    supports_check_mode = True
    mutually_exclusive = None
    required_one_of = None
    required_if = None
    required_together = None

    def __init__(self):
        self.module = AnsibleModule(
            argument_spec=self.argument_spec,
            supports_check_mode=self.supports_check_mode,
            mutually_exclusive=self.mutually_exclusive,
            required_one_of=self.required_one_of,
            required_if=self.required_if,
            required_together=self.required_together,
        )

    @property
    def params(self):
        return self.module.params

    @property
    def check_mode(self):
        return self.module.check_mode

    def logic(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self):
        try:
            result = self.logic()
        except HyperscalerError as exc:
            self.module.fail_json(msg=exc.msg, **exc.details)
        except Exception as exc:  # a bug, not a user error: keep the traceback for the report
            self.module.fail_json(
                msg="internal error in %s: %s" % (self.__class__.__name__, exc),
                exception=traceback.format_exc(),
            )
        self.module.exit_json(**result.as_dict(self.module._diff))
