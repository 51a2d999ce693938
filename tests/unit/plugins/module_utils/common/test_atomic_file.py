"""atomic_file: the one reader/writer of state files, and the messages it gives for each way a file is wrong."""
import errno

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common import atomic_file as af
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("content,message", [
    ('{"a": 1}', None),
    ("{broken", "opt: {p} is not valid JSON (line 1, column 2): Expecting property name enclosed in double quotes"),
    ('{"a": 1}\n{"b": 2}', "opt: {p} is not valid JSON (line 2, column 1): Extra data"),
    ("[1]", "opt: {p} must hold a JSON object ({{...}}), not an array"),
    ('"text"', "opt: {p} must hold a JSON object ({{...}}), not a string"),
    ("true", "opt: {p} must hold a JSON object ({{...}}), not a boolean"),
    (b'{"a": "\xe9"}', "opt: {p} is not UTF-8 text (byte 0xe9 at line 1, column 8); save it as UTF-8"),
])
def test_read_json_object(tmp_path, content, message):
    path = write(tmp_path / "f.json", content)
    if message is None:
        assert af.read_json_object(path, "opt") == {"a": 1}
        return
    with pytest.raises(af.StateFileError) as exc:
        af.read_json_object(path, "opt")
    assert exc.value.msg == message.format(p=path)
    assert isinstance(exc.value, HyperscalerError) and exc.value.path == path


def test_read_problems_with_the_path_itself(tmp_path):
    with pytest.raises(af.StateFileError, match="does not exist$"):
        af.read_text(str(tmp_path / "nope"), "opt")
    with pytest.raises(af.StateFileError, match="is a directory, not a file$"):
        af.read_text(str(tmp_path), "opt")
    write(tmp_path / "file", "")
    with pytest.raises(af.StateFileError) as exc:
        af.read_text(str(tmp_path / "file" / "x"), "opt")
    assert exc.value.msg == "opt: %s cannot be read: %s is a regular file, not a directory" % (
        tmp_path / "file" / "x", tmp_path / "file")


def test_permission_denied_says_so(tmp_path, monkeypatch):
    # Tests may run as root, which reads any file: fake the kernel's answer instead of chmod.
    class DeniedIo:
        @staticmethod
        def open(path, mode="r"):
            raise OSError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(af, "io", DeniedIo)
    path = write(tmp_path / "secret.json", "{}")
    with pytest.raises(af.StateFileError) as exc:
        af.read_json_object(path, "opt")
    assert exc.value.msg == ("opt: %s cannot be read: permission denied (run the task with become, or fix the "
                             "owner or mode)" % path)


def test_labels_read_as_options_or_as_kinds_of_file(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(af.StateFileError) as exc:
        af.read_text(path, "the MIG layout file")
    assert exc.value.msg == "the MIG layout file %s does not exist" % path
    with pytest.raises(af.StateFileError) as exc:
        af.read_text(path)
    assert exc.value.msg == "%s does not exist" % path


def test_write_text_and_check_writable(tmp_path):
    target = tmp_path / "deep" / "er" / "state.json"
    af.write_text(str(target), "{}\n", "opt")  # parents are created
    assert target.read_text() == "{}\n"
    with pytest.raises(af.StateFileError) as exc:
        af.write_text(str(tmp_path / "deep"), "x", "opt")
    assert exc.value.msg == "opt: %s is a directory; give a file path" % (tmp_path / "deep")
    blocked = target / "below" / "x.json"  # state.json is a file: nothing can live below it
    for check in (lambda: af.check_writable(str(blocked), "opt"), lambda: af.write_text(str(blocked), "x", "opt")):
        with pytest.raises(af.StateFileError) as exc:
            check()
        assert exc.value.msg == "opt: %s cannot be written: %s is a regular file, not a directory" % (blocked, target)
    assert af.first_file_ancestor(str(tmp_path / "free" / "x.json")) is None
    af.check_writable(str(tmp_path / "free" / "x.json"))  # nothing in the way
