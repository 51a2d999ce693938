"""Make ansible_collections.aihow.hyperscaler importable: the one bootstrap of the scripts, benchmarks and tests.

From an installed collection (.../ansible_collections/aihow/hyperscaler/scripts) its own tree is used.
From a git checkout, the checkout's link .build/collections/ansible_collections/aihow/hyperscaler (what
`make collection-link` makes) is used, made here when missing; where the checkout cannot be written, a
private temporary link stands in and is removed when the process exits.
"""
import atexit
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CHECKOUT_COLLECTIONS = os.path.join(ROOT, ".build", "collections")
_LINK_PARTS = ("ansible_collections", "aihow", "hyperscaler")


def _link_to_root(base):
    """Make base/ansible_collections/aihow/hyperscaler -> ROOT; True when it is (or already was) so."""
    link = os.path.join(base, *_LINK_PARTS)
    if os.path.realpath(link) == ROOT:
        return True
    try:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    except OSError:
        return os.path.realpath(link) == ROOT  # another process may have made it meanwhile
    return True


def collections_path():
    """The directory to put on sys.path (and ANSIBLE_COLLECTIONS_PATH) for this collection."""
    parts = ROOT.split(os.sep)
    if parts[-3:] == list(_LINK_PARTS):
        return os.sep.join(parts[:-3])
    if _link_to_root(CHECKOUT_COLLECTIONS):
        return CHECKOUT_COLLECTIONS
    base = tempfile.mkdtemp(prefix="hyperscaler-import-")
    atexit.register(shutil.rmtree, base, True)
    _link_to_root(base)
    return base


def enable():
    """Put the collection on sys.path; returns the path used."""
    base = collections_path()
    if base not in sys.path:
        sys.path.insert(0, base)
    return base
