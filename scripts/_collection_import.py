"""Make ansible_collections.aihow.hyperscaler importable for the command-line scripts beside this file.

Works from an installed collection (.../ansible_collections/aihow/hyperscaler/scripts) and from a
git checkout (exposed under the collection's import name through a private temporary link).
"""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def enable():
    parts = ROOT.split(os.sep)
    if parts[-3:] == ["ansible_collections", "aihow", "hyperscaler"]:
        base = os.sep.join(parts[:-3])
    else:
        base = tempfile.mkdtemp(prefix="hyperscaler-import-")
        os.makedirs(os.path.join(base, "ansible_collections", "aihow"))
        os.symlink(ROOT, os.path.join(base, "ansible_collections", "aihow", "hyperscaler"))
    if base not in sys.path:
        sys.path.insert(0, base)
