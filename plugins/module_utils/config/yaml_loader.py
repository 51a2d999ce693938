# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Read cluster.yaml exactly: UTF-8 only, no duplicate keys, bounded size and depth, lines kept.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word, recurses once per
nesting level (a few thousand levels end in RecursionError) and forgets where each value
was. :func:`load_yaml_text` composes the node tree with a depth guard, walks it once
(iteratively, each node once, so aliases cannot multiply the work) to refuse duplicate keys
naming both lines and to record the line of every value by its path, then constructs the
data. Problems come back as :class:`YamlProblem` (a line, a column, a message), never as
an exception of PyYAML's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.resolver import Resolver
    from yaml.scanner import Scanner
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.atomic_file import utf8_error_position

# A cluster.yaml is a few KiB (production.yml: 3 KiB) and about ten levels deep; these bounds leave room
# for any real one and keep the pure-Python parse of the largest file allowed under a second.
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 50000

MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
# What YAML 1.1 (PyYAML) reads an unquoted key as, for the message that says to quote it.
TAG_NAMES = {"tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
             "tag:yaml.org,2002:bool": "a boolean (YAML reads yes/no/on/off/true/false so)",
             "tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:timestamp": "a date"}


class YamlProblem(Exception):
    """The text cannot be read as a cluster.yaml document: where (1-based line/column) and why."""

    def __init__(self, message, line=None, column=None, path=None):
        super(YamlProblem, self).__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path

    @property
    def where(self):
        if self.line is None:
            return None
        return "line %d, column %d" % (self.line, self.column or 1)


def _line_of(mark):
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


if HAS_YAML:
    class _BoundedComposer(Composer):
        """Composer that refuses nesting deeper than MAX_DEPTH before Python's stack runs out."""

        def compose_node(self, parent, index):
            depth = getattr(self, "_depth", 0) + 1
            if depth > MAX_DEPTH:
                line, column = _line_of(self.peek_event().start_mark)
                raise YamlProblem("the document is nested more than %d levels deep; a cluster.yaml needs "
                                  "about 10" % MAX_DEPTH, line, column)
            self._depth = depth
            try:
                return Composer.compose_node(self, parent, index)
            finally:
                self._depth = depth - 1

    class _ExactLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
        """yaml.SafeLoader with the bounded composer (pure Python, so the guard applies)."""

        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


def decode_text(data):
    """bytes -> str, or YamlProblem naming the line and column of the first byte that is not UTF-8."""
    if not isinstance(data, bytes):
        return data
    if len(data) > MAX_BYTES:
        raise YamlProblem("the file is %d bytes; a cluster.yaml is a few KiB (at most %d bytes are read)"
                          % (len(data), MAX_BYTES))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark: allowed, and not part of the text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column, byte = utf8_error_position(data, exc)
        raise YamlProblem("the file is not UTF-8 text: byte 0x%02x cannot be decoded (save the file as UTF-8)"
                          % byte, line, column)


def _scalar_key(node):
    """The key of a mapping entry as text for messages and paths (non-scalar keys get a marker)."""
    if isinstance(node, yaml.ScalarNode):
        return node.value
    return "<%s>" % node.id


def _walk(root):
    """Refuse duplicate keys; map each value's path (tuple) to its 1-based line. Visits a node once."""
    lines = {(): root.start_mark.line + 1}
    seen = set()
    stack = [(root, ())]
    count = 0
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        count += 1
        if count > MAX_NODES:
            line, column = _line_of(node.start_mark)
            raise YamlProblem("the document has more than %d values; a cluster.yaml has a few hundred"
                              % MAX_NODES, line, column)
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    # Merged keys may be overridden by explicit ones: that is what << is for.
                    stack.append((value_node, path))
                    continue
                key = _scalar_key(key_node)
                child = path + (key,)
                line, column = _line_of(key_node.start_mark)
                if key_node.tag != STR_TAG:
                    raise YamlProblem(
                        "the key %s is read as %s; keys are names: quote it ('%s')"
                        % (key, TAG_NAMES.get(key_node.tag, "a %s" % key_node.id), key), line, column, child)
                if key in first:
                    raise YamlProblem(
                        "duplicate key %r: first at line %d, column %d, again at line %d, column %d; a key may "
                        "appear only once in a mapping (remove one)" % ((key,) + first[key] + (line, column)),
                        line, column, child)
                first[key] = (line, column)
                lines.setdefault(child, value_node.start_mark.line + 1)
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = path + (index,)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((item, child))
    return lines


def load_yaml_text(text):
    """Parse one YAML document: (data, lines) where lines maps path tuples to line numbers.

    Raises YamlProblem for text that is not UTF-8, too large, not YAML, nested too deep, or has a
    duplicate key. Keys in ``lines`` are the scalar texts of the keys (``5`` for a key ``5:``).
    """
    if not HAS_YAML:  # pragma: no cover
        raise YamlProblem("the Python library PyYAML is required to read cluster.yaml")
    text = decode_text(text)
    if len(text) > MAX_BYTES:
        raise YamlProblem("the text is %d characters; a cluster.yaml is a few KiB" % len(text))
    loader = None
    try:
        try:
            loader = _ExactLoader(text)  # the reader refuses control characters here already
            root = loader.get_single_node()
            if root is None:
                return None, {}
            lines = _walk(root)
            return loader.construct_document(root), lines
        except yaml.MarkedYAMLError as exc:
            line, column = _line_of(exc.problem_mark or exc.context_mark)
            problem = exc.problem or exc.context or str(exc)
            if exc.context and exc.problem:
                problem = "%s (%s)" % (exc.problem, exc.context)
            raise YamlProblem("not valid YAML: %s" % problem, line, column)
        except yaml.reader.ReaderError as exc:
            before = text[:exc.position]
            raise YamlProblem("not valid YAML: the control character #x%04x is not allowed in YAML text"
                              % exc.character, before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
        except yaml.YAMLError as exc:
            raise YamlProblem("not valid YAML: %s" % " ".join(str(exc).split()))
        except ValueError:
            # int() of a number longer than Python allows (4300 digits).
            raise YamlProblem("a number with thousands of digits cannot be read; cluster.yaml numbers are small")
        except RecursionError:
            # Only the constructor of a recursive alias could get here; the composer is bounded.
            raise YamlProblem("the document refers to itself (a recursive alias); cluster.yaml needs none")
    finally:
        if loader is not None:
            loader.dispose()
