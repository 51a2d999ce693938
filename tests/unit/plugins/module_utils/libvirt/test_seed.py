"""NoCloud seed content and ISOs (real genisoimage/xorriso when installed, a fake runner otherwise)."""
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.libvirt import seed as cis
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxJ2yVQ8G1cEcdWk8o2p3VbO0lmK6uJ0b5l3Y0q8x1P test@host"
HAVE_ISO_TOOL = any(shutil.which(t) for t in cis.ISO_TOOLS)


def parsed_user_data(text):
    assert text.startswith("#cloud-config\n")
    return json.loads(text.split("\n", 1)[1])


def test_user_data_user_key_sudo_no_passwords():
    doc = parsed_user_data(cis.user_data("hpc-compute-01", "hyperscaler", KEY, "lab.internal"))
    assert doc["hostname"] == "hpc-compute-01" and doc["fqdn"] == "hpc-compute-01.lab.internal"
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    [user] = doc["users"]
    assert user["name"] == "hyperscaler"
    assert user["ssh_authorized_keys"] == [KEY]
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["lock_passwd"] is True and "passwd" not in user


@pytest.mark.parametrize("bad", ["", "not a key", "ssh-ed25519", KEY + "\n" + KEY])
def test_bad_public_key_rejected(bad):
    with pytest.raises(HyperscalerError, match="one OpenSSH public key line"):
        cis.user_data("h", "u", bad)


def test_instance_id_follows_user_data():
    a = cis.seed_files("lab-h", "h", "u", KEY)
    b = cis.seed_files("lab-h", "h", "u", KEY.replace("test@host", "other@host"))
    assert a == cis.seed_files("lab-h", "h", "u", KEY)  # deterministic
    assert a["meta-data"].startswith("instance-id: lab-h-") and "local-hostname: h\n" in a["meta-data"]
    assert a["meta-data"] != b["meta-data"]
    assert cis.content_digest(a) != cis.content_digest(b)


def test_no_iso_tool_is_a_clear_error():
    with pytest.raises(HyperscalerError, match=r"neither genisoimage nor xorriso .*\(apt-get install genisoimage\)"):
        cis.find_iso_tool(which=lambda name: None)


def test_xorriso_used_when_genisoimage_is_missing():
    assert cis.find_iso_tool(which=lambda n: "/usr/bin/xorriso" if n == "xorriso" else None) == \
        ("xorriso", "/usr/bin/xorriso")
    argv = cis.iso_command("xorriso", "/usr/bin/xorriso", "/o.iso", "APP", ["/w/meta-data", "/w/user-data"])
    assert argv[:3] == ["/usr/bin/xorriso", "-as", "mkisofs"]
    assert argv[argv.index("-volid") + 1] == "cidata" and argv[-2:] == ["/w/meta-data", "/w/user-data"]


def test_tool_failure_is_reported(tmp_path):
    def run(argv, **kw):
        return subprocess.CompletedProcess(argv, 3, "", "boom")
    with pytest.raises(HyperscalerError, match=r"genisoimage failed building .* \(exit 3\): boom"):
        cis.write_seed(str(tmp_path / "s.iso"), {"user-data": "x", "meta-data": "y"},
                       which=lambda n: "/bin/" + n, run=run)
    assert os.listdir(str(tmp_path)) == []  # the work dir is cleaned up


def test_read_app_id_of_non_iso(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 40000)
    assert cis.read_app_id(str(junk)) is None
    assert cis.read_app_id(str(tmp_path / "missing.iso")) is None
    assert cis.remove_seed(str(junk)) is False and junk.exists()  # not ours: never deleted


@pytest.mark.skipif(not HAVE_ISO_TOOL, reason="needs genisoimage or xorriso")
def test_real_iso_written_once_and_rebuilt_on_change(tmp_path):
    iso = str(tmp_path / "sub" / "vm-seed.iso")
    files = cis.seed_files("lab-vm", "vm", "admin", KEY, "lab.internal")
    assert cis.write_seed(iso, files, check_mode=True) is True and not os.path.exists(iso)
    assert cis.write_seed(iso, files) is True
    assert oct(os.stat(iso).st_mode & 0o777) == "0o644"
    data = open(iso, "rb").read()
    assert b"CD001" in data[32768:32774] and b"cidata" in data[32768:34816]
    assert files["user-data"].encode() in data and files["meta-data"].encode() in data
    assert cis.read_app_id(iso) == cis.APP_ID_PREFIX + cis.content_digest(files)
    mtime = os.stat(iso).st_mtime_ns
    assert cis.write_seed(iso, files) is False and os.stat(iso).st_mtime_ns == mtime
    changed = cis.seed_files("lab-vm", "vm", "admin2", KEY, "lab.internal")
    assert cis.write_seed(iso, changed, check_mode=True) is True
    assert cis.write_seed(iso, changed) is True
    assert b"admin2" in open(iso, "rb").read()
    assert cis.remove_seed(iso, check_mode=True) is True and os.path.exists(iso)
    assert cis.remove_seed(iso) is True and not os.path.exists(iso)
