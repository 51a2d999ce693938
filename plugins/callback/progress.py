# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: progress
type: aggregate
author: aihow engineering (@aihow)
short_description: Prints the progress lines of long-running tasks while they run
version_added: 0.1.0
description:
  - At playbook start, creates a private progress file (a C(mkdtemp) directory, mode 0600) and exports its
    path to the controller's environment as C(HYPERSCALER_PROGRESS_FILE). Modules and scripts that run on
    the controller's host (connection local) inherit the variable and append one line per step, so far the
    golden image build (C(images/build.sh), bash function C(progress) of C(images/lib.sh)) and the VM boot
    of C(aihow.hyperscaler.libvirt_cluster) (Python, C(plugins/module_utils/common/progress.py)).
  - While a task runs, a background thread reads the file every O(interval) seconds and prints each new
    line through Ansible's display, so the stdout callback's own output stays as it is. The thread stops at
    the next task, play or the end of the playbook; every host result flushes what is pending.
  - A line written less than O(interval) seconds before a task ends may be printed right after the task's
    status line (the stdout callback always gets the result first).
  - Hosts reached over SSH (or with C(become) through sudo, which resets the environment) do not get the
    variable, so their tasks print no progress lines.
  - The file and its directory are removed when the playbook ends.
requirements:
  - Enabled in ansible.cfg with C(callbacks_enabled = aihow.hyperscaler.progress).
options:
  enabled:
    description: Set to false to switch the progress lines off without editing C(callbacks_enabled).
    type: bool
    default: true
    env:
      - name: HYPERSCALER_PROGRESS
    ini:
      - section: callback_progress
        key: enabled
  interval:
    description: Seconds between two reads of the progress file while a task runs.
    type: float
    default: 0.1
    env:
      - name: HYPERSCALER_PROGRESS_INTERVAL
    ini:
      - section: callback_progress
        key: interval
  prefix:
    description: Printed before every progress line.
    type: str
    default: "  [progress] "
    env:
      - name: HYPERSCALER_PROGRESS_PREFIX
    ini:
      - section: callback_progress
        key: prefix
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = aihow.hyperscaler.progress
#
# What a task then prints while it runs (playbooks/images.yml):
# TASK [Build the golden images] *************************************************
#   [progress] 17:10:17 hpc-base: step 1/3: base disk
#   [progress] 17:10:17 hpc-base: base disk cached (hpc-base-4f0e1d2c3b4a5968.qcow2)
#   [progress] 17:10:17 hpc-base: step 2/3: packer boots an overlay of the base disk under qemu and provisions it (the long step)
#   [progress] 17:10:17 hpc-base: packer: Starting VM, booting disk image
#   [progress] 17:11:52 hpc-base: packer: Waiting for SSH to become available...
#   [progress] 17:14:05 hpc-base: packer: TASK [image_common : Write the image identity] (#2)
#
# Switched off for one run:
# HYPERSCALER_PROGRESS=false ansible-playbook playbooks/site.yml
"""

import atexit
import functools
import os
import shutil
import sys
import tempfile
import threading

from ansible.plugins.callback import CallbackBase

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.progress import ENV

_CHUNK = 1 << 16


def _guarded(method):
    """Callback entry points never raise into Ansible: the first failure is a warning, then silence."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            self._fail(exc)
            return None
    return wrapper


class CallbackModule(CallbackBase):
    """Tails $HYPERSCALER_PROGRESS_FILE while a task runs and prints its new lines."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "aihow.hyperscaler.progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._dir = None
        self._path = None
        self._fd = None
        self._offset = 0
        self._partial = b""
        self._had_env = False
        self._old_env = None
        self._thread = None
        self._stop = None
        self._failed = False
        self._interval = 0.1
        self._prefix = "  [progress] "

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._interval = max(0.01, float(self.get_option("interval")))
        self._prefix = self.get_option("prefix")
        if not self.get_option("enabled"):
            self.disabled = True

    # ------------------------------------------------------------------ file

    @property
    def path(self):
        """The progress file of the running playbook (None before the start and after the end)."""
        return self._path

    def _open(self):
        if self._path is not None or self.disabled:
            return
        self._dir = tempfile.mkdtemp(prefix="hyperscaler-progress-")
        path = os.path.join(self._dir, "progress.log")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._path, self._offset, self._partial = path, 0, b""
        self._had_env, self._old_env = ENV in os.environ, os.environ.get(ENV)
        os.environ[ENV] = path
        atexit.register(self._close_at_exit)

    def _close_at_exit(self):
        # An interrupted run (no stats) still removes its file.
        try:
            self._close()
        except Exception:  # pylint: disable=broad-except
            pass

    def _close(self):
        """Stop the thread, print what is left, remove the file, restore the variable (idempotent)."""
        if os.getpid() != self._pid or self._path is None:
            return
        self._stop_tail()
        try:
            self._drain(final=True)
        finally:
            with self._lock:
                if os.environ.get(ENV) == self._path:
                    if self._had_env:
                        os.environ[ENV] = self._old_env
                    else:
                        del os.environ[ENV]
                try:
                    if self._fd is not None:
                        os.close(self._fd)
                except OSError:
                    pass
                shutil.rmtree(self._dir, ignore_errors=True)
                self._fd = self._path = self._dir = None

    def _read_new(self):
        chunks = []
        while True:
            data = os.pread(self._fd, _CHUNK, self._offset)
            if not data:
                return b"".join(chunks)
            self._offset += len(data)
            chunks.append(data)

    def _drain(self, final=False):
        """Print every complete new line (and, when final, an unterminated last one)."""
        with self._lock:
            if self._fd is None or self._failed:
                return
            data = self._partial + self._read_new()
            if final:
                lines, self._partial = data.split(b"\n"), b""
            else:
                head, sep, self._partial = data.rpartition(b"\n")
                lines = head.split(b"\n") if sep else []
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    # Display serialises with the main thread and is fork-safe: workers are forked while
                    # its lock is held, so this thread never leaves a child a locked stdout.
                    self._display.display(self._prefix + text)
            if lines:
                # Without PYTHONUNBUFFERED a pipe (CI logs, `| tee`) would hold the lines until the task's
                # own result is printed, which is what this plugin exists to avoid.
                sys.stdout.flush()

    # ------------------------------------------------------------------ thread

    def _tail(self, stop):
        try:
            while not self._failed and not stop.wait(self._interval):
                self._drain()
        except Exception as exc:  # pylint: disable=broad-except
            self._fail(exc)

    def _start_tail(self):
        if self._fd is None or self._failed:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, args=(self._stop,), name="hyperscaler-progress")
        self._thread.daemon = True
        self._thread.start()

    def _stop_tail(self):
        thread, stop = self._thread, self._stop
        self._thread = self._stop = None
        if thread is not None:
            stop.set()
            thread.join(5)
        self._drain()

    def _fail(self, exc):
        if not self._failed:
            self._failed = True
            self._display.warning("aihow.hyperscaler.progress: no more progress lines: %s" % exc)

    # ------------------------------------------------------------------ Ansible events

    @_guarded
    def v2_playbook_on_start(self, playbook):
        # Several playbooks on one command line share the file (the stats come once, at the end).
        self._open()

    @_guarded
    def v2_playbook_on_task_start(self, task, *args, **kwargs):
        self._stop_tail()
        self._start_tail()

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    @_guarded
    def v2_playbook_on_play_start(self, *args, **kwargs):
        self._stop_tail()

    v2_playbook_on_no_hosts_remaining = v2_playbook_on_play_start

    @_guarded
    def v2_runner_on_ok(self, result, *args, **kwargs):
        # A host's result only flushes: the other hosts of the task may still be writing.
        self._drain()

    v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = v2_runner_on_ok
    v2_runner_item_on_ok = v2_runner_item_on_failed = v2_runner_item_on_skipped = v2_runner_on_ok

    @_guarded
    def v2_playbook_on_stats(self, stats):
        self._close()
