"""The Molecule cloud image uses the golden images' wheel download (images/lib.sh's fetch_wheels).

tests/molecule/wheels.sh sources images/lib.sh; these tests check that it gives the guests' target and
reuses the wheel directory a golden image build made.
"""
import os
import subprocess

from helpers import repo_path

SNIPPET = 'set -euo pipefail; source tests/molecule/wheels.sh; declare -F fetch_wheels >/dev/null; printf "%s\\n" "${WHEEL_TARGET[@]}"'


def _run(script, cwd):
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, check=False)


def test_wheels_sh_defines_the_build_base_download():
    done = _run(SNIPPET, repo_path())
    assert done.returncode == 0, done.stderr
    target = done.stdout.split()
    # The guests' Python: CPython 3.11 on glibc 2.36, x86_64 (images/lib.sh).
    assert target[:6] == ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    assert "manylinux_2_36_x86_64" in target and "manylinux_2_28_x86_64" in target


def test_wheels_sh_reuses_a_cached_wheel_directory(tmp_path):
    """A directory with one wheel per lock line is reused as it is: the golden image build's cache."""
    lock = tmp_path / "python.lock"
    lock.write_text("# a lock\nalpha==1.0\nbeta==2.0\n")
    script = SNIPPET + (
        '; key=$( { cat "$LOCK"; echo "${WHEEL_TARGET[*]}"; } | short_hash); mkdir -p "$DIR/cloud-base-$key"'
        '; touch "$DIR/cloud-base-$key/alpha-1.0-py3-none-any.whl" "$DIR/cloud-base-$key/beta-2.0-py3-none-any.whl"'
        '; fetch_wheels cloud-base "$LOCK" "$DIR"')
    env = dict(os.environ, LOCK=str(lock), DIR=str(tmp_path))
    done = subprocess.run(["bash", "-c", script], cwd=repo_path(), env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    dest = done.stdout.strip().splitlines()[-1]
    assert os.path.dirname(dest) == str(tmp_path) and os.path.basename(dest).startswith("cloud-base-")
    assert "wheels cached" in done.stderr
