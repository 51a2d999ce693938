"""Make ansible_collections.aihow.hyperscaler importable for the command-line scripts beside this file.

Works from an installed collection (.../ansible_collections/aihow/hyperscaler/scripts) and from a
git checkout: there through the checkout's own link (.build/collections, made by `make
collection-link` and the unit tests) when it exists, else through a private temporary link that is
removed when the script exits.
"""
import atexit
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CHECKOUT_COLLECTIONS = os.path.join(ROOT, ".build", "collections")


def _checkout_link_ok():
    link = os.path.join(CHECKOUT_COLLECTIONS, "ansible_collections", "aihow", "hyperscaler")
    return os.path.realpath(link) == ROOT


def enable():
    parts = ROOT.split(os.sep)
    if parts[-3:] == ["ansible_collections", "aihow", "hyperscaler"]:
        base = os.sep.join(parts[:-3])
    elif _checkout_link_ok():
        base = CHECKOUT_COLLECTIONS
    else:
        base = tempfile.mkdtemp(prefix="hyperscaler-import-")
        atexit.register(shutil.rmtree, base, True)
        os.makedirs(os.path.join(base, "ansible_collections", "aihow"))
        os.symlink(ROOT, os.path.join(base, "ansible_collections", "aihow", "hyperscaler"))
    if base not in sys.path:
        sys.path.insert(0, base)
