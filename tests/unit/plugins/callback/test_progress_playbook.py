"""ansible-playbook on localhost (no VMs, no network): progress lines show up while the task runs.

Runs the real ansible-playbook with the repository's ansible.cfg (which enables the callback) and reads
its stdout as it comes, so the tests see both the order of the lines and when each one arrived.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest
from helpers import repo_path

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
PROGRESS = re.compile(r"^  \[progress\] \d\d:\d\d:\d\d (.*)$")

PLAYBOOK = r"""
- name: Progress lines of long local tasks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: A script that reports its steps
      ansible.builtin.shell:
        executable: /bin/bash
        cmd: |
          set -euo pipefail
          . "$LIB"
          progress "demo: step 1/3: base disk"
          sleep 1
          printf '%s\n' '==> qemu.image: Waiting for SSH to become available...' \
            '    qemu.image: TASK [image_common : Write the image identity] ******' '    qemu.image: ok: [default]' \
            | progress_tee "demo: packer" '^==> |: TASK \[' 'TASK \['
          sleep 1
          progress "demo: step 3/3: compress"
          sleep 0.5
      environment:
        LIB: "{{ lib }}"
      changed_when: true

    - name: A module that reports its steps
      progress_probe:
        lines: ["vm-a started (1/2)", "vm-b up: SSH after 1 s (2/2)"]
        pause: 0.8

    - name: A quiet task
      ansible.builtin.command: "true"
      changed_when: false
"""

PROBE = '''#!/usr/bin/python
from __future__ import absolute_import, division, print_function
__metaclass__ = type
import time
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.progress import report


def main():
    module = AnsibleModule(argument_spec=dict(lines=dict(type="list", elements="str"), pause=dict(type="float")))
    for line in module.params["lines"]:
        report(line)
        time.sleep(module.params["pause"])
    module.exit_json(changed=True)


if __name__ == "__main__":
    main()
'''

PACKER_STUB = r"""#!/bin/bash
# packer for the test: the output lines of a build, a disk and a package list where build.sh wants them.
[ "$1" = version ] && { echo "Packer v1.6.6 (test stub)"; exit 0; }
for a in "$@"; do
  case $a in
    output_dir=*) out=${a#output_dir=} ;;
    packages_out=*) pkgs=${a#packages_out=} ;;
    *.pkrvars.hcl) name=$(basename "$a" .pkrvars.hcl) ;;
  esac
done
echo "==> qemu.image: Starting VM, booting disk image"; sleep 0.4
echo "==> qemu.image: Waiting for SSH to become available..."; sleep 0.4
echo "    qemu.image: TASK [image_common : Write the image identity] ********"; sleep 0.4
echo "    qemu.image: ok: [default]"
echo "    qemu.image: TASK [image_common : Remove the SSH host keys] ********"; sleep 0.4
mkdir -p "$out" && qemu-img create -q -f qcow2 "$out/$name.qcow2" 16M
printf 'bash\t5.2.15-2+b2\n' >"$pkgs"
echo "==> qemu.image: Gracefully halting virtual machine..."
"""


def strategies():
    yield "linear"
    try:
        import ansible_mitogen  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        yield pytest.param("mitogen_linear", marks=pytest.mark.skip(reason="mitogen is not installed"))
    else:
        yield "mitogen_linear"


def mitogen_strategy_dir():
    import ansible_mitogen  # pylint: disable=import-outside-toplevel
    return os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")


def run_playbook(tmp_path, args, strategy="linear", extra_env=None, timeout=240):
    """[(seconds since start, line)] of stdout+stderr; the private temp dir must be empty afterwards."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_CONFIG=repo_path("ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=repo_path(".build", "collections"), ANSIBLE_STRATEGY=strategy,
               ANSIBLE_DEPRECATION_WARNINGS="0", TMPDIR=str(tmp), ANSIBLE_RETRY_FILES_ENABLED="0")
    env.pop("HYPERSCALER_PROGRESS_FILE", None)
    env.pop("HYPERSCALER_PROGRESS", None)
    if strategy.startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_dir()
    env.update(extra_env or {})
    cmd = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % sys.executable] + args
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                            universal_newlines=True)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("ansible-playbook ran longer than %s s:\n%s" % (timeout, text_of(lines)))
    reader.join(10)
    assert rc == 0, text_of(lines)
    assert not [n for n in os.listdir(str(tmp)) if n.startswith("hyperscaler-progress-")], "progress file left behind"
    return lines


def text_of(lines):
    return "\n".join(text for at, text in lines)


def task(lines, name):
    """The lines from TASK [name] up to the next task or the recap."""
    start = [i for i, (at, text) in enumerate(lines) if text.startswith("TASK [%s]" % name)]
    assert start, "no task %r in:\n%s" % (name, text_of(lines))
    out = []
    for at, text in lines[start[0] + 1:]:
        if text.startswith(("TASK [", "PLAY RECAP", "PLAY [")):
            break
        out.append((at, text))
    return out


def progress_of(block):
    """[(arrival, message without prefix and timestamp)] of the progress lines."""
    return [(at, PROGRESS.match(text).group(1)) for at, text in block if PROGRESS.match(text)]


def only_progress(block):
    """Every non-blank line is a progress line."""
    return all(PROGRESS.match(text) for at, text in block if text.strip())


def status_of(block, word):
    """(index, arrival) of the first "word: [localhost]" line."""
    found = [(i, at) for i, (at, text) in enumerate(block) if text.startswith("%s: [localhost]" % word)]
    assert found, "no %s line in:\n%s" % (word, text_of(block))
    return found[0]


@pytest.mark.parametrize("strategy", strategies())
def test_progress_lines_come_while_the_task_runs_before_its_status(tmp_path, strategy):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "progress_probe.py").write_text(PROBE)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    lines = run_playbook(tmp_path, ["-e", "lib=%s" % repo_path("images", "lib.sh"), "play.yml"], strategy,
                         {"ANSIBLE_LIBRARY": str(tmp_path / "library")})

    block = task(lines, "A script that reports its steps")
    got = progress_of(block)
    assert [message for at, message in got] == [
        "demo: step 1/3: base disk",
        "demo: packer: Waiting for SSH to become available...",
        "demo: packer: TASK [image_common : Write the image identity] (#1)",
        "demo: step 3/3: compress",
    ]
    index, status_time = status_of(block, "changed")
    assert only_progress(block[:index]), block
    # Live, not replayed at the end: the first line came while the script still had 2.5 s to go.
    assert got[0][0] < status_time - 1.5, (got, status_time)

    block = task(lines, "A module that reports its steps")
    got = progress_of(block)
    assert [message for at, message in got] == ["vm-a started (1/2)", "vm-b up: SSH after 1 s (2/2)"]
    index, status_time = status_of(block, "changed")
    assert only_progress(block[:index]) and len(progress_of(block[:index])) == 2, block
    assert got[0][0] < status_time - 1.0, (got, status_time)

    assert progress_of(task(lines, "A quiet task")) == []


def test_switched_off_the_playbook_prints_no_progress(tmp_path):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "progress_probe.py").write_text(PROBE)
    (tmp_path / "play.yml").write_text(PLAYBOOK.replace("sleep 1", "sleep 0").replace("pause: 0.8", "pause: 0"))
    lines = run_playbook(tmp_path, ["-e", "lib=%s" % repo_path("images", "lib.sh"), "play.yml"],
                         extra_env={"ANSIBLE_LIBRARY": str(tmp_path / "library"), "HYPERSCALER_PROGRESS": "false"})
    assert "[progress]" not in text_of(lines)
    status_of(task(lines, "A module that reports its steps"), "changed")


BUILD_TOOLS = ("qemu-img", "qemu-system-x86_64", "cloud-localds", "ssh-keygen", "flock")


@pytest.mark.slow
@pytest.mark.skipif(not all(shutil.which(c) for c in BUILD_TOOLS),
                    reason="images/build.sh needs qemu-img, qemu-system-x86_64, cloud-localds, ssh-keygen, flock")
def test_images_playbook_prints_the_build_steps(tmp_path):
    """playbooks/images.yml as make run runs it, with a stub packer (nothing boots) and a given base disk."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "packer").write_text(PACKER_STUB)
    (stub / "packer").chmod(stat.S_IRWXU)
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True, timeout=60)
    cache = tmp_path / "cache"
    extra = {"images_target": "localhost", "images_kinds": ["hpc"], "ansible_connection": "local",
             "hyperscaler_images": {"cache_dir": str(cache), "hpc": {"base_image": str(base)}}}
    env = {"PATH": "%s:%s" % (stub, os.environ["PATH"])}
    args = ["-e", json.dumps(extra), repo_path("playbooks", "images.yml")]

    block = task(run_playbook(tmp_path, args, extra_env=env), "Build the golden images")
    got = [message for at, message in progress_of(block)]
    index = status_of(block, "changed")[0]
    assert got[:9] == [
        "hpc-base: step 1/3: base disk",
        "hpc-base: base disk given: %s" % base,
        "hpc-base: step 2/3: packer boots an overlay of the base disk under qemu and provisions it (the long step)",
        "hpc-base: packer: Starting VM, booting disk image",
        "hpc-base: packer: Waiting for SSH to become available...",
        "hpc-base: packer: TASK [image_common : Write the image identity] (#1)",
        "hpc-base: packer: TASK [image_common : Remove the SSH host keys] (#2)",
        "hpc-base: packer: Gracefully halting virtual machine...",
        "hpc-base: step 3/3: flatten and compress the disk (qemu-img convert -c)",
    ]
    # The steps came before the task's status line; the closing line may come right after it.
    assert len(progress_of(block[:index])) >= 9
    assert len(got) == 10 and re.match(r"^hpc-base: built %s/hpc-base-[0-9a-f]{16}\.qcow2 \(.*\) in \d+s \(base \d+s, "
                                       r"packer \d+s, convert \d+s\)$" % cache, got[9]), got

    block = task(run_playbook(tmp_path, args, extra_env=env), "Build the golden images")
    got = [message for at, message in progress_of(block)]
    assert got[:2] == ["hpc-base: step 1/3: base disk", "hpc-base: base disk given: %s" % base]
    assert len(got) == 3 and re.match(r"^hpc-base: cached %s/hpc-base-[0-9a-f]{16}\.qcow2 \(nothing to build\)$"
                                      % cache, got[2]), got
    status_of(block, "ok")
