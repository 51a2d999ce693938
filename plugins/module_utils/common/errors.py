# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The one exception type of the collection's logic: a failure with a message meant for the user.

Kept apart from module_base so pure code and the scripts (hyperscaler-gpu-restore) raise and catch
it without importing AnsibleModule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class HyperscalerError(Exception):
    """A failure with a message meant for the user (field, file or device named).

    ``details`` holds structured data (for example the list of validation errors
    or the layout that was restored) that is returned next to ``msg``.
    """

    def __init__(self, msg, **details):
        super(HyperscalerError, self).__init__(msg)
        self.msg = msg
        self.details = details
