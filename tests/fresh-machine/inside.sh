#!/usr/bin/env bash
# The fresh-machine tier's phases, run as PID 1 of the container that tests/fresh-machine/run.sh starts
# (no network: apt and pip read the local repository and wheelhouse it prepared). From the copy of the
# checkout, as a new user would: install-deps from nothing, the make targets, `make test` tiers and
# `make run` playbooks that boot no VM, lab mode with a real libvirt smoke test, and a check that lab
# mode leaves nothing behind.
#
# Not run here, and why: `make run`'s images.yml (builds the golden image with mmdebstrap from the mirror:
# no network here, and 10-15 minutes of TCG), gpu.yml (the default cluster plans no GPU; the GPU role runs in
# the gpu-simulator phase), vms.yml and hpc.yml (boot VMs: tests/e2e does that); `make test`'s sanity
# (ansible-test --requirements installs each test's own requirements from PyPI, which are not in the
# wheelhouse), Molecule (podman images built from the mirror) and the VM end to end.
#
# Writes to $HS_FRESH_OUT: phases.tsv (name, seconds, exit code), logs/NAME.log, failed (name, exit
# code) or passed.
set -euo pipefail
OUT=${HS_FRESH_OUT:?}
HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "${HS_FRESH_WORKDIR:?}"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0

say() { printf '[%s] fresh-machine: %s\n' "$(date +%H:%M:%S)" "$*"; }

# Best effort on the way out: the labs down (PID 1's exit then ends whatever is left in the container).
teardown() {
  local lab
  # fresh: this tier's own lab; lab, mlops: metadata.name of the templates `make run` may default to.
  for lab in fresh lab mlops; do
    [ ! -x scripts/hyperscaler-lab ] || scripts/hyperscaler-lab down "$lab" >>"$OUT/logs/teardown.log" 2>&1 || true
  done
}

# phase NAME LIMIT CMD...: CMD under a time limit, its output in logs/NAME.log; a failure ends the run.
phase() {
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  say "$name (limit ${limit}s): $*"
  # A function of this file runs in a new bash (inside.sh __call FUNCTION ...), so timeout can bound it.
  if declare -F "$1" >/dev/null; then set -- bash "$HARNESS/inside.sh" __call "$@"; fi
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1 </dev/null || rc=$?
  printf '%s\t%d\t%d\n' "$name" $((SECONDS - t0)) "$rc" >>"$OUT/phases.tsv"
  if [ "$rc" != 0 ]; then
    say "$name FAILED (exit $rc)"
    printf '%s\t%d\n' "$name" "$rc" >"$OUT/failed"
    teardown
    exit 1
  fi
}

# What lab mode must not leave behind: no network namespace, no daemon or guest process.
no_leftovers() {
  local ns procs p comm
  ns=$(ip netns list)
  procs=""
  for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    case $comm in libvirtd|virtlogd|qemu-system-*|dnsmasq) procs+=" ${p#/proc/}:$comm";; esac
  done
  echo "netns: ${ns:-none}; processes:${procs:- none}"
  [ -z "$ns" ] && [ -z "$procs" ]
}

# The libvirt smoke test in the namespace of lab $1 (up), whose name the checkout's lab script gives; a
# checkout from before `hyperscaler-lab netns` (HS_FRESH_CHECKOUT) has it in its status line.
lab_smoke() {
  local netns
  netns=$(scripts/hyperscaler-lab netns "$1" 2>/dev/null) \
    || netns=$(scripts/hyperscaler-lab status "$1" | sed -n 's/.* netns=\([^ ]*\).*/\1/p')
  [ -n "$netns" ] || { echo "lab_smoke: no namespace name for lab $1" >&2; return 1; }
  .venv/bin/python "$HARNESS/lab-smoke.py" "$netns"
}

# lab.yml down; a checkout from before the playbooks' prefix convention called its variable hs_lab_state.
playbook_lab_down() {
  local var=lab_state
  ! grep -q hs_lab_state playbooks/lab.yml || var=hs_lab_state
  run_playbook playbooks/lab.yml -e "$var=down"
}

# A clone has a .git (tests/sanity.sh, for one, lists files with git): the copied files as one commit.
clone() {
  git init -q && git add -A && git -c user.name=fresh -c user.email=fresh@localhost commit -qm "fresh clone"
  git log --oneline
}

# As tests/run-all.sh runs its tiers (make test).
test_tier() {
  PATH=$PWD/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$PWD/.build/collections ANSIBLE_CONFIG=$PWD/ansible.cfg "$@"
}

# The inventory source `make run` writes (Makefile, target run) for its default CONFIG, for the
# playbooks below.
run_playbook() {
  local cfg
  cfg=$PWD/$(sed -n 's/^CONFIG ?= *//p' Makefile)
  [ -f "$cfg" ] || { echo "run_playbook: the Makefile's default CONFIG ($cfg) is not a file" >&2; return 1; }
  mkdir -p .build
  printf 'plugin: aihow.hyperscaler.cluster\nconfig: %s\n' "$cfg" >.build/run.cluster.yml
  ANSIBLE_COLLECTIONS_PATH=$PWD/.build/collections .venv/bin/ansible-playbook -i .build/run.cluster.yml \
    "$@" -e "hyperscaler_config_file=$cfg"
}

if [ "${1:-}" = __call ]; then
  shift
  "$@"
  exit
fi

mkdir -p "$OUT/logs"
: >"$OUT/phases.tsv"
# shellcheck source=/dev/null  # the container's /etc/os-release, not a file of this repository
say "checkout $PWD ($(find . -type f | wc -l) files), $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version)"
say "$(dpkg-query -W -f='.' | wc -c) Debian packages before install-deps; apt sources: $(grep -v '^#' /etc/apt/sources.list)"

phase clone 120 clone
phase install-deps 1800 bash scripts/install-deps
phase collection-link 60 make collection-link
phase validate 300 make validate
# make test's tiers that need neither the network nor a VM.
phase unit 900 make unit
phase ansible-lint 600 test_tier ansible-lint --profile production
if [ -f tests/shellcheck.sh ]; then
  phase shellcheck 120 test_tier bash tests/shellcheck.sh
else
  say "shellcheck: not run, the checkout has no tests/shellcheck.sh (HS_FRESH_CHECKOUT from before it)"
fi
# promtool as install-deps left it (.build/promtool, from the local repository's prometheus .deb), offline.
if [ -f tests/monitoring/promtool-test.sh ]; then
  phase promtool 120 test_tier bash tests/monitoring/promtool-test.sh
else
  say "promtool: not run, the checkout has no tests/monitoring/promtool-test.sh (HS_FRESH_CHECKOUT from before it)"
fi
phase collection-install 300 test_tier bash tests/integration/collection-install.sh
phase gpu-simulator 600 test_tier bash tests/integration/gpu-simulator.sh
# make run's playbooks up to lab mode, on the inventory it generates.
phase playbook-validate 300 run_playbook playbooks/validate.yml
phase playbook-host 300 run_playbook playbooks/host.yml
phase lab-up 120 scripts/hyperscaler-lab up fresh
phase lab-status 30 scripts/hyperscaler-lab status fresh
phase lab-smoke 300 lab_smoke fresh
phase lab-down 120 scripts/hyperscaler-lab down fresh
phase lab-leftovers 30 no_leftovers
# make run's own way into lab mode (playbooks/lab.yml, lab_mode auto), and out again.
phase playbook-lab-up 300 run_playbook playbooks/lab.yml
phase playbook-lab-down 300 playbook_lab_down
phase playbook-lab-leftovers 30 no_leftovers

echo ok >"$OUT/passed"
say "all phases passed"
