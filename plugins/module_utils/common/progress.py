# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Progress notes of long steps, printed live by the callback ``aihow.hyperscaler.progress``.

The callback creates a private file at playbook start and exports its path as
``HYPERSCALER_PROGRESS_FILE``; modules and scripts that run on the controller's host (connection
local) inherit it and append one line per step; the callback prints each line while the task
still runs. Without the variable (remote hosts, plain module runs) :func:`report` does nothing.
images/lib.sh has the same writer in bash (``progress``): one line, ``HH:MM:SS message``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

ENV = "HYPERSCALER_PROGRESS_FILE"


def format_line(message, now=None):
    """``HH:MM:SS message`` and a newline; the message is flattened to one line."""
    text = " ".join(str(message).split("\n")).replace("\r", " ").strip()
    return "%s %s\n" % (time.strftime("%H:%M:%S", time.localtime(now)), text)


def report(message, environ=None):
    """Append one progress line to $HYPERSCALER_PROGRESS_FILE; True when written.

    A no-op without the variable. Never raises: a missing or unwritable file only returns False
    (the file is never created here, so a finished playbook's path leaves nothing behind).
    One ``write`` on an ``O_APPEND`` descriptor, so lines of parallel writers do not interleave.
    """
    path = (os.environ if environ is None else environ).get(ENV)
    if not path:
        return False
    try:
        data = format_line(message).encode("utf-8", "replace")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except (OSError, TypeError, ValueError):
        return False
    try:
        return os.write(fd, data) == len(data)
    except OSError:
        return False
    finally:
        os.close(fd)
