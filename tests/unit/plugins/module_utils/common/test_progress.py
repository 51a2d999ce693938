"""The progress writer: one line per call into $HYPERSCALER_PROGRESS_FILE, a no-op without it, never raising."""
import os
import re
import threading

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common import progress

LINE = re.compile(r"^\d\d:\d\d:\d\d (.*)\n$")


@pytest.fixture
def pfile(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    path.write_text("")
    monkeypatch.setenv(progress.ENV, str(path))
    return path


def messages(path):
    lines = path.read_text().splitlines(True)
    assert all(LINE.match(line) for line in lines), lines
    return [LINE.match(line).group(1) for line in lines]


def test_no_op_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert progress.report("hpc-compute-01 up") is False
    assert progress.report("x", environ={progress.ENV: ""}) is False
    assert os.listdir(str(tmp_path)) == []


def test_appends_one_timestamped_line_per_call(pfile):
    assert progress.report("hpc-controller started (1/3)")
    assert progress.report("two\nlines\r\n")
    assert progress.report(42)
    assert messages(pfile) == ["hpc-controller started (1/3)", "two lines", "42"]


def test_explicit_environ_wins(tmp_path, pfile):
    other = tmp_path / "other.log"
    other.write_text("")
    assert progress.report("here", environ={progress.ENV: str(other)})
    assert messages(other) == ["here"] and messages(pfile) == []


@pytest.mark.parametrize("where", ["missing", "directory", "below_a_file", "bad_name"])
def test_unwritable_paths_return_false_and_create_nothing(tmp_path, where):
    target = {
        "missing": tmp_path / "gone" / "progress.log",
        "directory": tmp_path,
        "below_a_file": tmp_path / "file" / "progress.log",
        "bad_name": "bad\0name",
    }[where]
    (tmp_path / "file").write_text("")
    before = sorted(os.listdir(str(tmp_path)))
    assert progress.report("ignored", environ={progress.ENV: str(target)}) is False
    assert sorted(os.listdir(str(tmp_path))) == before


def test_a_removed_file_is_not_recreated(pfile):
    pfile.unlink()
    assert progress.report("after the playbook") is False
    assert not pfile.exists()


def test_parallel_writers_do_not_interleave(pfile):
    def writer(n):
        for i in range(200):
            progress.report("writer %d line %03d %s" % (n, i, "x" * 100))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = messages(pfile)
    assert len(got) == 1600
    assert sorted(got) == sorted("writer %d line %03d %s" % (n, i, "x" * 100) for n in range(8) for i in range(200))


def test_format_line():
    assert re.match(r"^\d\d:\d\d:\d\d a b\n$", progress.format_line(" a\nb "))
