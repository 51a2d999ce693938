# shellcheck shell=bash
# Sourced by the VM end-to-end tests (tests/e2e/run.sh, tests/e2e/mlops.sh): one definition of their
# environment, phase timings, preconditions, work directory and cleanup, golden images and the final
# "nothing left" check, so both tests hold the lab to the same standard.
#   e2e_init NAME LAB          (from the checkout's root) exports the tools' environment; sets REPO, LAB,
#                              LAB_SCRIPT, NETNS, T0; say/fail/phase_start/phase_end/report use NAME
#   e2e_require_lab TOOL...    root, the tools, libvirt-python, no other libvirtd on the default socket
#   e2e_make_workdir           WORK under /var/tmp; on exit: the guests' last console lines (on failure),
#                              lab down, the lab's own files and WORK removed, the timings printed
#   e2e_image NAME VAR [PATH]  sets VAR to the real path of the golden image NAME, built or taken from the
#                              cache (PATH: that file instead, a development override), and notes its
#                              size and time for e2e_nothing_left
#   e2e_record_lab_pids        once the lab is up: its daemons' and guests' PIDs, for e2e_nothing_left
#   e2e_nothing_left           no definition, namespace, process, lab state, overlay or seed ISO left,
#                              the golden images untouched

e2e_init() {
  E2E_NAME=$1 LAB=$2
  REPO=$PWD
  export PATH="$REPO/.venv/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$REPO/.build/collections"
  export ANSIBLE_CONFIG="$REPO/ansible.cfg"
  export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
  LAB_SCRIPT=$REPO/scripts/hyperscaler-lab
  # The lab's network namespace, as the lab script names it (not spelled here).
  NETNS=$("$LAB_SCRIPT" netns "$LAB")
  T0=$(date +%s)
  E2E_PHASES=() E2E_IMAGES=() E2E_IMAGE_STATS=() DAEMON_PIDS="" QEMU_PIDS=""
}

say() { printf '\n=== %s: %s\n' "$E2E_NAME" "$*"; }
fail() { echo "$E2E_NAME FAILED: $*" >&2; exit 1; }
phase_start() { PHASE=$1; PHASE_T=$(date +%s); say "$PHASE"; }
phase_end() { local d=$(( $(date +%s) - PHASE_T )); E2E_PHASES+=("$(printf '%-62s %5ss' "$PHASE" "$d")"); }
report() {
  echo; echo "=== $E2E_NAME timings"
  local p; for p in "${E2E_PHASES[@]}"; do echo "  $p"; done
  echo "  $(printf '%-62s %5ss' total $(( $(date +%s) - T0 )))"
}

# shellcheck disable=SC2120  # the extra tools are optional: run.sh needs none beyond the common ones
e2e_require_lab() {
  [ "$(id -u)" = 0 ] || fail "must run as root (network namespace, libvirtd)"
  local tool
  for tool in ip libvirtd virtlogd qemu-system-x86_64 qemu-img nc ansible-playbook ssh-keygen "$@"; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/install-deps installs what the VM tests need; make deps)"
  done
  command -v genisoimage >/dev/null || command -v xorriso >/dev/null || fail "genisoimage or xorriso is needed for seed ISOs"
  "$REPO/.venv/bin/python" -c 'import libvirt' 2>/dev/null || fail "libvirt-python is missing in .venv (pip install -r requirements-libvirt.txt)"
  if "$LAB_SCRIPT" mode "$LAB" auto | grep -q '^disabled'; then
    fail "another libvirtd serves /run/libvirt/libvirt-sock; the e2e test needs its own lab (stop that libvirtd)"
  fi
}

e2e_make_workdir() {
  WORK=$(mktemp -d "/var/tmp/hs-$LAB.XXXXXX")
  trap _e2e_cleanup EXIT
}

_e2e_cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then
    echo "--- last console lines of the guests" >&2
    tail -n 15 /var/log/libvirt/qemu/"$LAB"-*-console.log 2>/dev/null >&2 || true
  fi
  # Whatever happened: no daemon, guest or namespace outlives the test.
  "$LAB_SCRIPT" down "$LAB" >/dev/null 2>&1 || true
  # The lab's own /etc/libvirt (kept by down on purpose) belongs to this test only.
  rm -rf "$WORK" "/var/lib/aihow-hyperscaler/lab/$LAB"
  report
  exit $rc
}

e2e_image() {
  local name=$1 var=$2 path=${3:-} json
  if [ -n "$path" ]; then
    echo "NOTE: $path is used instead of images/build.sh $name (development override)"
  else
    # Cached by content: a no-op when the image is current. Its last stdout line is JSON with the path.
    json=$("$REPO/images/build.sh" "$name" | tail -n 1)
    path=$("$REPO/.venv/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["image"])' "$json") \
      || fail "images/build.sh $name printed no JSON result line: $json"
  fi
  [ -f "$path" ] || fail "golden image $path ($name) does not exist"
  path=$(readlink -f "$path")
  E2E_IMAGES+=("$path") E2E_IMAGE_STATS+=("$(stat -c '%s %Y' "$path")")
  printf -v "$var" '%s' "$path"
}

e2e_record_lab_pids() {
  DAEMON_PIDS="$(cat "/run/aihow-hyperscaler/$LAB/libvirtd.pid") $(cat "/run/aihow-hyperscaler/$LAB/virtlogd.pid")"
  QEMU_PIDS=$(ip netns pids "$NETNS" | xargs)
}

e2e_nothing_left() {
  local etc=/var/lib/aihow-hyperscaler/lab/$LAB/etc-libvirt left pid i leftover
  left=$(ls "$etc"/qemu/*.xml "$etc"/qemu/networks/*.xml "$etc"/storage/*.xml 2>/dev/null || true)
  [ -z "$left" ] || fail "libvirt definitions left: $left"
  ! ip netns list | grep -q "^$NETNS\b" || fail "netns $NETNS is still there"
  for pid in $DAEMON_PIDS $QEMU_PIDS; do
    ! kill -0 "$pid" 2>/dev/null || fail "process $pid ($(ps -o comm= -p "$pid")) is still running"
  done
  ! pgrep -f "guest=$LAB-" >/dev/null || fail "a QEMU process of the lab is still running"
  [ ! -e "/run/aihow-hyperscaler/$LAB" ] || fail "lab state /run/aihow-hyperscaler/$LAB is still there"
  leftover=$(find "$WORK/pool" -name "$LAB-*" 2>/dev/null)
  [ -z "$leftover" ] || fail "overlays or seed ISOs left: $leftover"
  for i in "${!E2E_IMAGES[@]}"; do
    [ "$(stat -c '%s %Y' "${E2E_IMAGES[$i]}")" = "${E2E_IMAGE_STATS[$i]}" ] || fail "the golden image ${E2E_IMAGES[$i]} was modified"
  done
  echo "no domain, network, pool, namespace, daemon, QEMU process, overlay or seed ISO left; golden images intact"
}
