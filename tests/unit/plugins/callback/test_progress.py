"""The progress callback in-process: a fake display, real files, the real thread."""
import os
import stat
import tempfile
import threading
import time

import pytest
from ansible.plugins.loader import callback_loader
from helpers import wait_until

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common import progress

ENV = progress.ENV


class FakeDisplay:
    def __init__(self):
        self.lines, self.warnings = [], []
        self.fail = False

    def display(self, msg, **kwargs):
        if self.fail:
            raise RuntimeError("stdout is gone")
        self.lines.append(msg)

    def warning(self, msg, **kwargs):
        self.warnings.append(msg)


@pytest.fixture
def tmpdir_only(tmp_path, monkeypatch):
    """mkdtemp lands in tmp_path; no progress variables from outside."""
    for name in (ENV, "HYPERSCALER_PROGRESS", "HYPERSCALER_PROGRESS_INTERVAL", "HYPERSCALER_PROGRESS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def make(**options):
    cb = callback_loader.get("aihow.hyperscaler.progress")
    assert cb is not None, "aihow.hyperscaler.progress is not found"
    cb._display = FakeDisplay()
    cb.set_options(direct=options)
    return cb


@pytest.fixture
def cb(tmpdir_only):
    cb = make(interval=0.01)
    cb.v2_playbook_on_start(None)
    yield cb
    cb.v2_playbook_on_stats(None)


def test_the_thread_prints_lines_appended_while_the_task_runs(cb):
    cb.v2_playbook_on_task_start(None, False)
    assert progress.report("hpc-base: step 1/3: base disk")
    # No task event in between: only the background thread can have printed it.
    assert wait_until(lambda: len(cb._display.lines) == 1)
    assert progress.report("hpc-base: step 2/3: packer")
    assert wait_until(lambda: len(cb._display.lines) == 2)
    assert [line[:13] for line in cb._display.lines] == ["  [progress] "] * 2
    assert cb._display.lines[0].endswith(" hpc-base: step 1/3: base disk")
    assert cb._display.lines[1].endswith(" hpc-base: step 2/3: packer")
    assert cb._display.warnings == []


def test_the_thread_stops_at_the_next_task_and_at_the_end(cb):
    cb.v2_playbook_on_task_start(None, False)
    first = cb._thread
    assert first.is_alive()
    cb.v2_playbook_on_task_start(None, False)
    assert not first.is_alive() and cb._thread.is_alive()
    second = cb._thread
    cb.v2_playbook_on_play_start(None)
    assert not second.is_alive() and cb._thread is None
    cb.v2_playbook_on_handler_task_start(None)
    third = cb._thread
    cb.v2_playbook_on_stats(None)
    assert not third.is_alive() and cb._thread is None
    assert not any(t.name == "hyperscaler-progress" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("event", ["v2_runner_on_ok", "v2_runner_on_failed", "v2_runner_on_skipped",
                                   "v2_runner_on_unreachable", "v2_runner_item_on_ok", "v2_runner_item_on_failed",
                                   "v2_runner_item_on_skipped"])
def test_every_host_result_flushes_at_once(tmpdir_only, event):
    cb = make(interval=3600)  # the thread never wakes up during the test
    cb.v2_playbook_on_start(None)
    cb.v2_playbook_on_task_start(None, False)
    progress.report("hpc-compute-01 up: SSH after 41 s (2/3)")
    getattr(cb, event)(None)
    assert len(cb._display.lines) == 1 and cb._display.lines[0].endswith("hpc-compute-01 up: SSH after 41 s (2/3)")
    # The tail keeps running for the other hosts of the task.
    assert cb._thread.is_alive()
    cb.v2_playbook_on_stats(None)


def test_lines_printed_once_in_order_and_unterminated_ones_wait(cb):
    cb.v2_playbook_on_task_start(None, False)
    with open(cb.path, "ab") as fh:
        fh.write(b"one\n\ntwo\nthr")
        fh.flush()
        assert wait_until(lambda: len(cb._display.lines) == 2)
        time.sleep(0.05)
        assert cb._display.lines == ["  [progress] one", "  [progress] two"]
        fh.write(b"ee \xff\n")
        fh.flush()
        assert wait_until(lambda: len(cb._display.lines) == 3)
    cb.v2_runner_on_ok(None)
    assert cb._display.lines[2] == "  [progress] three \ufffd"
    with open(cb.path, "ab") as fh:
        fh.write(b"last words")
    cb.v2_playbook_on_stats(None)  # the end prints an unterminated last line too
    assert cb._display.lines[3:] == ["  [progress] last words"]


def test_private_file_exported_then_removed_and_the_variable_restored(tmpdir_only, monkeypatch):
    monkeypatch.setenv(ENV, "/outer/run/progress.log")  # e.g. a playbook run from a task of another one
    cb = make()
    cb.v2_playbook_on_start(None)
    path = cb.path
    assert os.environ[ENV] == path and os.path.dirname(os.path.dirname(path)) == str(tmpdir_only)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    cb.v2_playbook_on_start(None)  # a second playbook on the command line keeps the file
    assert cb.path == path
    cb.v2_playbook_on_stats(None)
    assert not os.path.exists(os.path.dirname(path)) and cb.path is None
    assert os.environ[ENV] == "/outer/run/progress.log"
    cb._close_at_exit()  # the atexit hook after a normal end: nothing left to do
    assert os.listdir(str(tmpdir_only)) == []


def test_variable_removed_at_the_end_when_it_was_not_set(tmpdir_only):
    cb = make()
    cb.v2_playbook_on_start(None)
    assert ENV in os.environ
    cb._close_at_exit()  # an interrupted run: no stats, the atexit hook cleans up
    assert ENV not in os.environ and os.listdir(str(tmpdir_only)) == []


@pytest.mark.parametrize("how", ["option", "env"])
def test_disabled_creates_no_file_and_exports_nothing(tmpdir_only, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("HYPERSCALER_PROGRESS", "false")
        cb = make()
    else:
        cb = make(enabled=False)
    assert cb.disabled
    cb.v2_playbook_on_start(None)
    cb.v2_playbook_on_task_start(None, False)
    cb.v2_runner_on_ok(None)
    cb.v2_playbook_on_stats(None)
    assert cb.path is None and cb._thread is None
    assert ENV not in os.environ and os.listdir(str(tmpdir_only)) == []


def test_options_from_the_environment(tmpdir_only, monkeypatch):
    monkeypatch.setenv("HYPERSCALER_PROGRESS_PREFIX", ">> ")
    monkeypatch.setenv("HYPERSCALER_PROGRESS_INTERVAL", "0.5")
    cb = make()
    assert not cb.disabled and cb._interval == 0.5 and cb._prefix == ">> "


def test_never_raises_into_ansible(cb):
    cb.v2_playbook_on_task_start(None, False)
    cb._display.fail = True
    progress.report("a line nobody can print")
    cb.v2_runner_on_ok(None)  # raises inside: turned into one warning
    assert wait_until(lambda: not cb._thread.is_alive())
    cb.v2_runner_on_failed(None, ignore_errors=True)
    cb.v2_playbook_on_task_start(None, False)
    assert cb._thread is None  # gave up: no more threads
    assert len(cb._display.warnings) == 1 and "stdout is gone" in cb._display.warnings[0]
    path = cb.path
    cb.v2_playbook_on_stats(None)
    assert not os.path.exists(path)  # still cleaned up


def test_a_broken_file_descriptor_is_a_warning(cb):
    os.close(cb._fd)
    cb.v2_playbook_on_task_start(None, False)
    cb._fd = -1
    cb.v2_runner_on_ok(None)
    assert len(cb._display.warnings) == 1
    cb._fd = None
    cb.v2_playbook_on_stats(None)


def test_ansible_dispatches_every_event_it_handles(tmpdir_only):
    cb = make()
    if not hasattr(cb, "_init_callback_methods"):
        pytest.skip("ansible-core before 2.19 calls every method")
    cb._init_callback_methods()  # what the task queue manager does: only these get called
    assert {"v2_playbook_on_start", "v2_playbook_on_play_start", "v2_playbook_on_task_start",
            "v2_playbook_on_handler_task_start", "v2_playbook_on_no_hosts_remaining", "v2_runner_on_ok",
            "v2_runner_on_failed", "v2_runner_on_skipped", "v2_runner_on_unreachable", "v2_runner_item_on_ok",
            "v2_runner_item_on_failed", "v2_runner_item_on_skipped",
            "v2_playbook_on_stats"} <= cb._implemented_callback_methods
