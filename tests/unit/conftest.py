"""Make the checkout importable as ansible_collections.aihow.hyperscaler for every test.

Ansible's own collection finder is installed first (as ansible-test units does), so plugin
loaders (inventory_loader, doc fragments) and plain imports see the same modules.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import _collection_import  # noqa: E402  the one bootstrap, shared with the scripts and benchmarks

COLLECTIONS = _collection_import.enable()
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)

from ansible.plugins.loader import init_plugin_loader  # noqa: E402

init_plugin_loader([COLLECTIONS])

# tests/unit/helpers.py is shared by test files in several folders (importlib import mode).
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
