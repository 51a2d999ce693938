# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""The collection's state files: atomic writes, and reads and writes with messages a person can act on.

:func:`atomic_write` writes through a temp file and a rename, so a crash never leaves half a file.
Every reader of a JSON state or input file (simulator state, saved MIG layout, vGPU ownership record,
...) goes through :func:`read_json_object` and every writer through :func:`write_text`: a missing file,
a directory, a permission problem, bytes that are not UTF-8, broken JSON or a JSON value of the wrong
type all end in one :class:`StateFileError` naming the option and the file, never in a traceback.
(One file, not two: the boot-time restore script ships a fixed list of module_utils.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import io
import json
import os
import tempfile

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


def atomic_write(path, text, mode=0o644):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s-" % os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_JSON_TYPES = ((dict, "an object"), (list, "an array"), (bool, "a boolean"), (str, "a string"),
               (int, "a number"), (float, "a number"), (type(None), "null"))


class StateFileError(HyperscalerError):
    """A file that cannot be read, parsed or written; ``msg`` names the file (and its option)."""

    def __init__(self, msg, path=None):
        super(StateFileError, self).__init__(msg)
        self.path = path


def file_label(what, path):
    # "simulator_state: /x/y.json" (an option: named first, so the reader knows what to fix)
    # or "the MIG layout file /x/y.json" (a kind of file).
    if not what:
        return str(path)
    return "%s %s" % (what, path) if " " in what else "%s: %s" % (what, path)


def json_type(value):
    """'an object', 'an array', ... (JSON's words, which is what the file's author wrote)."""
    for cls, name in _JSON_TYPES:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _os_problem(exc, path):
    """Why an OSError happened, in words, naming the path component at fault where it helps."""
    code = getattr(exc, "errno", None)
    if code == errno.EISDIR:
        return "is a directory, not a file"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (run the task with become, or fix the owner or mode)"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = first_file_ancestor(path)
        if blocker:
            return "%s is a regular file, not a directory" % blocker
    return getattr(exc, "strerror", None) or str(exc)


def first_file_ancestor(path):
    """The nearest existing ancestor of ``path`` that is not a directory (it blocks the path), or None."""
    probe = os.path.dirname(os.path.abspath(path))
    while probe and probe != os.path.dirname(probe):
        if os.path.exists(probe):
            return None if os.path.isdir(probe) else probe
        probe = os.path.dirname(probe)
    return None


def utf8_error_position(data, exc):
    """(line, column, byte) of the first byte a UnicodeDecodeError of ``data`` (decoded whole) refused."""
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return line, column, bytearray(data[exc.start:exc.start + 1])[0]


def read_text(path, what=None):
    """The UTF-8 text of ``path``; StateFileError naming ``what`` (the option) and the path otherwise."""
    try:
        with io.open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:
            raise StateFileError("%s does not exist" % file_label(what, path), path)
        if getattr(exc, "errno", None) == errno.EISDIR:
            raise StateFileError("%s is a directory, not a file" % file_label(what, path), path)
        raise StateFileError("%s cannot be read: %s" % (file_label(what, path), _os_problem(exc, path)), path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column, byte = utf8_error_position(data, exc)
        raise StateFileError("%s is not UTF-8 text (byte 0x%02x at line %d, column %d); save it as UTF-8"
                             % (file_label(what, path), byte, line, column), path)


def parse_json_object(text, path, what=None):
    """The JSON object in ``text`` (read from ``path``); StateFileError for bad JSON or another type."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        # json.JSONDecodeError carries the position; keep its short reason, not its repr.
        where = ""
        if getattr(exc, "lineno", None) is not None:
            where = " (line %d, column %d)" % (exc.lineno, exc.colno)
        raise StateFileError("%s is not valid JSON%s: %s"
                             % (file_label(what, path), where, getattr(exc, "msg", exc)), path)
    if not isinstance(data, dict):
        raise StateFileError("%s must hold a JSON object ({...}), not %s"
                             % (file_label(what, path), json_type(data)), path)
    return data


def read_json_object(path, what=None):
    """Read ``path`` as a JSON object (a dict). ``what`` names the option or file kind in messages."""
    return parse_json_object(read_text(path, what), path, what)


def write_text(path, text, what=None, mode=0o644):
    """Atomically write ``text`` to ``path`` (parent directories are created); StateFileError on failure."""
    check_writable(path, what)
    try:
        atomic_write(path, text, mode)
    except (IOError, OSError) as exc:
        raise StateFileError("%s cannot be written: %s" % (file_label(what, path), _os_problem(exc, path)), path)


def check_writable(path, what=None):
    """Raise StateFileError when ``path`` can obviously not be written (a directory, or below a file).

    What check mode can tell without writing; permissions are left to the real write.
    """
    if os.path.isdir(path):
        raise StateFileError("%s is a directory; give a file path" % file_label(what, path), path)
    blocker = first_file_ancestor(path)
    if blocker:
        raise StateFileError("%s cannot be written: %s is a regular file, not a directory"
                             % (file_label(what, path), blocker), path)
