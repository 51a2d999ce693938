# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""cloud-init NoCloud seed ISOs: user-data, meta-data and the ISO (volume id ``cidata``).

The ISO is rebuilt only when its content changes: the SHA-256 of user-data + meta-data is stored
in the ISO's application id (primary volume descriptor) and read back, because the ISO bytes
themselves carry timestamps and differ on every build.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

ISO_TOOLS = ("genisoimage", "xorriso")
APP_ID_PREFIX = "AIHOW-HS-SEED-"
_PVD_OFFSET = 16 * 2048  # ISO 9660: the primary volume descriptor is sector 16
_APP_ID = (574, 128)  # offset, length of the application identifier inside the PVD
_KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


def check_public_key(key):
    key = (key or "").strip()
    if not key or "\n" in key or not key.startswith(_KEY_TYPES) or len(key.split()) < 2:
        raise HyperscalerError("ssh_public_key must be one OpenSSH public key line (e.g. 'ssh-ed25519 AAAA... "
                               "comment'), got %r" % (key[:40] + ("..." if len(key) > 40 else "")))
    return key


def user_data(hostname, user, public_key, domain=None):
    """#cloud-config: host name, one admin user with the key, passwordless sudo, no password logins."""
    key = check_public_key(public_key)
    doc = {
        "hostname": hostname,
        "manage_etc_hosts": True,
        "preserve_hostname": False,
        "ssh_pwauth": False,
        "disable_root": True,
        "users": [{
            "name": user,
            "gecos": "aihow hyperscaler admin",
            "shell": "/bin/bash",
            "groups": ["sudo"],
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": True,
            "ssh_authorized_keys": [key],
        }],
    }
    if domain:
        doc["fqdn"] = "%s.%s" % (hostname, domain)
    # JSON is YAML: deterministic output without needing PyYAML on the hypervisor.
    return "#cloud-config\n" + json.dumps(doc, indent=2, sort_keys=True) + "\n"


def meta_data(instance_id, hostname):
    return "instance-id: %s\nlocal-hostname: %s\n" % (instance_id, hostname)


def seed_files(vm_name, hostname, user, public_key, domain=None):
    """{"user-data", "meta-data"}. The instance id follows the user-data, so cloud-init re-applies a change."""
    ud = user_data(hostname, user, public_key, domain)
    iid = "%s-%s" % (vm_name, hashlib.sha256(ud.encode("utf-8")).hexdigest()[:12])
    return {"user-data": ud, "meta-data": meta_data(iid, hostname)}


def content_digest(files):
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode("utf-8") + b"\0" + files[name].encode("utf-8") + b"\0")
    return h.hexdigest()


def find_iso_tool(which=shutil.which):
    """(tool name, path) of genisoimage or xorriso; HyperscalerError with the install hint otherwise."""
    for tool in ISO_TOOLS:
        path = which(tool)
        if path:
            return tool, path
    raise HyperscalerError("cannot build cloud-init seed ISOs: neither genisoimage nor xorriso is installed "
                           "on this host; install one (apt-get install genisoimage)")


def iso_command(tool, path, output, app_id, files):
    common = ["-output", output, "-volid", "cidata", "-joliet", "-rock", "-appid", app_id] + files
    if tool == "xorriso":
        return [path, "-as", "mkisofs", "-quiet"] + common
    return [path, "-quiet"] + common


def read_app_id(iso_path):
    """The application id of an ISO 9660 image, or None (missing file, not an ISO)."""
    try:
        with open(iso_path, "rb") as handle:
            handle.seek(_PVD_OFFSET)
            pvd = handle.read(2048)
    except (IOError, OSError):
        return None
    if len(pvd) < 2048 or pvd[1:6] != b"CD001" or pvd[0:1] != b"\x01":
        return None
    off, size = _APP_ID
    return pvd[off:off + size].decode("ascii", "replace").rstrip(" \0")


def write_seed(iso_path, files, check_mode=False, which=shutil.which, run=subprocess.run):
    """Build the seed ISO unless an ISO with the same content exists; True when it was (or would be) written."""
    app_id = APP_ID_PREFIX + content_digest(files)[:64]
    if read_app_id(iso_path) == app_id:
        return False
    if check_mode:
        return True
    tool, path = find_iso_tool(which)
    directory = os.path.dirname(os.path.abspath(iso_path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    work = tempfile.mkdtemp(prefix=".seed-", dir=directory)
    try:
        names = []
        for name in sorted(files):
            with open(os.path.join(work, name), "w") as handle:
                handle.write(files[name])
            names.append(os.path.join(work, name))
        tmp_iso = os.path.join(work, "seed.iso")
        done = run(iso_command(tool, path, tmp_iso, app_id, names), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HyperscalerError("%s failed building %s (exit %d): %s"
                                   % (tool, iso_path, done.returncode, (done.stderr or done.stdout).strip()))
        # Readable by the QEMU process, whichever user libvirt runs it as; replaced atomically.
        os.chmod(tmp_iso, 0o644)
        os.replace(tmp_iso, iso_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


def remove_seed(iso_path, check_mode=False):
    """Delete a seed ISO built by write_seed (recognised by its application id); True when removed."""
    app_id = read_app_id(iso_path)
    if app_id is None or not app_id.startswith(APP_ID_PREFIX):
        return False
    if not check_mode:
        os.unlink(iso_path)
    return True
