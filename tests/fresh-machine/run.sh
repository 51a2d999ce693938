#!/usr/bin/env bash
# Fresh-machine tier: the README's path (scripts/install-deps, make collection-link, make validate,
# make unit, the playbooks of `make run` that boot no VM, lab mode with a real libvirt smoke test) on a
# machine that has never seen this project, so that nothing can pass because of what earlier work left
# on the machine that runs the tests.
#
#   tests/fresh-machine/run.sh        (root; HS_FRESH_CHECKOUT=DIR tests another checkout, e.g. an old commit)
#
# 1. A pristine Debian 12 root (mmdebstrap --variant=minbase + tests/fresh-machine/root-packages), cached
#    by content under $HS_FRESH_CACHE_DIR like the golden images (images/lib.sh).
# 2. The registries, offline: the .deb files that root needs for install-deps' APT_PACKAGES, resolved
#    against the root's own dpkg status and served as a local apt repository; a wheelhouse of
#    requirements-*.txt plus the build backends of the sdists among them. Both are cached by content.
# 3. A container: its own mount, PID, network, IPC and UTS namespaces (unshare), a copy-on-write overlay
#    of the root (the cached root is never written) made its / with pivot_root, so nothing of this
#    machine's file system stays reachable from inside, a copy of the checkout's files (git ls-files:
#    tracked + untracked non-ignored; never .venv or .build), no network at all, no /dev/kvm.
#    tests/fresh-machine/inside.sh runs the phases there.
# Every phase has a time limit; a summary of the phases' times follows. The last line is
# "fresh-machine: PASSED", or "fresh-machine: FAILED ..." with the phase, its last output line and its
# log, and a non-zero exit. Whatever happens, the container's processes, mounts and overlay go with it.
#
# Why unshare + pivot_root and not systemd-nspawn: nspawn does start here (--register=no --keep-unit,
# though PID 1 is not systemd), but it is one more host package (systemd-container), it leaves
# /run/systemd/nspawn/ behind on this machine, and QEMU's /dev/net/tun would need binding in. unshare is
# util-linux, already installed; with pivot_root and a PID namespace every mount and process of the
# container is gone when its PID 1 exits, whatever killed it.
#
# Environment: HS_FRESH_CACHE_DIR (default /var/cache/aihow-hyperscaler/fresh-machine),
# HS_FRESH_CHECKOUT (default: this checkout), HS_FRESH_KEEP_RUN=1 (keep the overlay for a look),
# HS_FRESH_PASS_ENV="NAME ..." (variables of this machine's environment to pass in; the container's is
# otherwise PATH, HOME, LANG=C.UTF-8, TERM: to tell whether a failure comes from a missing variable),
# AIHOW_DEBIAN_MIRROR, AIHOW_DEBIAN_SECURITY_MIRROR (as images/build-base.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=images/lib.sh
. "$HERE/../../images/lib.sh"

CACHE=${HS_FRESH_CACHE_DIR:-/var/cache/aihow-hyperscaler/fresh-machine}
CHECKOUT=${HS_FRESH_CHECKOUT:-$REPO_DIR}
SUITE=bookworm
MIRROR=${AIHOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${AIHOW_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Build backends that pip needs offline for the sdists of the wheelhouse (libvirt-python: setuptools);
# wheel for setuptools releases that still ask for it. The sdists' own build requirements are added too.
BUILD_BACKENDS=(setuptools wheel)
# Paths inside the container.
C_CHECKOUT=/root/aihow-hyperscaler
C_SRV=/srv/fresh-machine

# Phase limits (seconds), host side; inside.sh has its own per phase.
LIMIT_ROOT=1200 LIMIT_APT=1200 LIMIT_PIP=600 LIMIT_CONTAINER=3600

# ---- host phases (each also runs alone as "run.sh __PHASE", so that timeout can bound it) ----------------

# mmdebstrap runs its hooks with dash and picks free fds for them (`cat >&N`): with fds 3-9 inherited
# from the caller (some CI agents and tool shells pass several) it picks N >= 10, which dash rejects
# ("Bad fd number"). It gets stdin, stdout and stderr only.
mmdebstrap_own_fds() (
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
  done
  exec mmdebstrap "$@"
)

# Pristine root: key = this script, lib.sh, root-packages and the mmdebstrap arguments.
root_args() {
  local pkgs
  pkgs=$(read_packages "$HERE/root-packages" | paste -sd, -)
  printf '%s\n' --mode=root --variant=minbase --components=main "--include=$pkgs" "$SUITE" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main"
}
root_hash() {
  { file_manifest "$HERE/run.sh" "$IMAGES_DIR/lib.sh" "$HERE/root-packages"; root_args; } | short_hash
}

phase_root() {
  local root=$CACHE/root-$ROOT_HASH tmp old args
  if [ -d "$root" ]; then
    log "pristine root: cached, reused $root"
    return 0
  fi
  mapfile -t args < <(root_args)
  tmp=$CACHE/.root-$ROOT_HASH.tmp
  rm -rf "$tmp"
  log "pristine root: mmdebstrap ${args[*]}"
  mmdebstrap_own_fds "${args[@]:0:5}" "$tmp" "${args[@]:5}"
  dpkg-query --admindir="$tmp/var/lib/dpkg" -W -f='${Package}\t${Version}\n' >"$CACHE/root-$ROOT_HASH.packages"
  mv -T "$tmp" "$root"
  # Older roots (another script version or package list) and their repositories are not used again.
  for old in "$CACHE"/root-* "$CACHE"/repo-*; do
    case $old in "$root"|"$root.packages"|"$CACHE/repo-$ROOT_HASH-"*) ;; *) rm -rf "$old";; esac
  done
  log "pristine root: built $root ($(du -sh "$root" | cut -f1), $(wc -l <"$CACHE/root-$ROOT_HASH.packages") packages)"
}

# The checkout's apt list: install-deps --print-apt-packages; a checkout from before that option existed
# has its list read from the APT_PACKAGES assignment (never by running that install-deps here).
checkout_apt_packages() {
  local s=$CHECKOUT/scripts/install-deps
  if grep -q -- '--print-apt-packages' "$s"; then
    env -u APT_EXTRA bash "$s" --print-apt-packages
  else
    log "apt: $s has no --print-apt-packages, reading its APT_PACKAGES assignment"
    # shellcheck disable=SC2016 # expanded by the inner bash
    env -u APT_EXTRA bash -c 'eval "$(sed -n "/^APT_PACKAGES=\"/,/\"\$/p" "$1")"; for p in $APT_PACKAGES; do echo "$p"; done' sh "$s"
  fi
}

# The .debs the checkout downloads without installing them (scripts/fetch-promtool: promtool is unpacked
# from the pinned prometheus package); older checkouts have none.
checkout_apt_downloads() {
  local s=$CHECKOUT/scripts/fetch-promtool
  [ ! -f "$s" ] || env -u PROMTOOL_DIR bash "$s" --print-package
}

# apt with nothing of the host's configuration: only Debian's mirrors, the pristine root's dpkg status,
# private lists and a .deb cache shared by all keys.
apt_private() {
  local a=$CACHE/apt
  mkdir -p "$a/empty" "$a/lists/partial" "$a/archives/partial" "$a/state" "$a/cache"
  cat >"$a/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR $SUITE main
deb [signed-by=$KEYRING] $MIRROR $SUITE-updates main
deb [signed-by=$KEYRING] $SECURITY_MIRROR $SUITE-security main
EOF
  cat >"$a/apt.conf" <<EOF
Dir::Etc::main "/dev/null";
Dir::Etc::Parts "$a/empty";
Dir::Etc::SourceList "$a/sources.list";
Dir::Etc::SourceParts "$a/empty";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$a/empty";
Dir::Etc::TrustedParts "$a/empty";
Dir::State "$a/state";
Dir::State::Lists "$a/lists";
Dir::State::status "$CACHE/root-$ROOT_HASH/var/lib/dpkg/status";
Dir::Cache "$a/cache";
Dir::Cache::archives "$a/archives";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
Debug::NoLocking "true";
EOF
  APT_CONFIG=$a/apt.conf apt-get "$@"
}

phase_apt() {
  local repo=$CACHE/repo-$APT_HASH tmp name ver arch f n=0 pkgs=() downloads=()
  if [ -f "$repo/Release" ]; then
    log "apt: cached, reused $repo ($(grep -c '^Package:' "$repo/Packages") packages)"
    return 0
  fi
  mapfile -t pkgs < <(checkout_apt_packages)
  [ ${#pkgs[@]} -gt 0 ] || die "apt: no package list from $CHECKOUT/scripts/install-deps"
  log "apt: resolving ${#pkgs[@]} packages against the pristine root's dpkg status"
  apt_private update -q
  tmp=$CACHE/.repo-$APT_HASH.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  # The exact set apt would install there (simulation), then those files, downloaded once for all keys.
  apt_private -s install "${pkgs[@]}" \
    | sed -n 's/^Inst \([^ ]*\) \(\[[^]]*\] \)\{0,1\}(\([^ ]*\) [^)]*\[\([^]]*\)\]).*$/\1 \3 \4/p' >"$tmp/.set"
  [ -s "$tmp/.set" ] || die "apt: nothing to install for ${pkgs[*]}?"
  apt_private -q --download-only install -y "${pkgs[@]}"
  while read -r name ver arch; do
    f=$CACHE/apt/archives/${name}_${ver//:/%3a}_${arch}.deb
    [ -f "$f" ] || die "apt: $f was not downloaded"
    ln -f "$f" "$tmp/" 2>/dev/null || cp "$f" "$tmp/"
    n=$((n + 1))
  done <"$tmp/.set"
  # What install-deps downloads (apt-get download) from the same repository, at the pinned version.
  mapfile -t downloads < <(checkout_apt_downloads)
  if [ ${#downloads[@]} -gt 0 ]; then
    log "apt: downloads ${downloads[*]}"
    (cd "$tmp" && apt_private download -q "${downloads[@]}")
    n=$((n + ${#downloads[@]}))
  fi
  (cd "$tmp" && apt-ftparchive packages . >Packages && apt-ftparchive release . >Release)
  rm "$tmp/.set"
  mv -T "$tmp" "$repo"
  # Downloads that no repository links any more.
  find "$CACHE/apt/archives" -maxdepth 1 -name '*.deb' -links 1 -delete
  log "apt: repository $repo ($n packages, $(du -sh "$repo" | cut -f1))"
}

# pip with nothing of the host's configuration (no /etc/pip.conf, /etc/xdg/pip constraints, user config
# or PIP_* variables, among them PIP_FIND_LINKS=/opt/wheels): PyPI only, Debian's CA bundle.
pip_private() {
  local v unset=()
  for v in $(compgen -e); do [[ $v != PIP_* ]] || unset+=(-u "$v"); done
  env "${unset[@]}" PIP_CONFIG_FILE=/dev/null python3 -m pip --disable-pip-version-check \
    --cert /etc/ssl/certs/ca-certificates.crt "$@"
}

phase_pip() {
  local wheels=$CACHE/wheels-$PIP_HASH tmp reqs round before f r=()
  if [ -d "$wheels" ]; then
    log "pip: cached, reused $wheels ($(find "$wheels" -maxdepth 1 -type f | wc -l) files)"
    return 0
  fi
  tmp=$CACHE/.wheels-$PIP_HASH.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  for f in "$CHECKOUT"/requirements-*.txt; do r+=(-r "$f"); done
  log "pip: download ${r[*]} ${BUILD_BACKENDS[*]}"
  pip_private download -q -d "$tmp" "${r[@]}" "${BUILD_BACKENDS[@]}"
  # Build requirements of each sdist (pyproject.toml [build-system] requires; pip's default without one),
  # until no new sdist comes in.
  for round in 1 2 3 4 5; do
    mapfile -t reqs < <(python3 - "$tmp" <<'PY'
import pathlib, sys, tarfile, tomllib
for sdist in sorted(pathlib.Path(sys.argv[1]).glob("*.tar.gz")):
    with tarfile.open(sdist) as tar:
        names = [n for n in tar.getnames() if n.count("/") == 1 and n.endswith("/pyproject.toml")]
        data = tomllib.load(tar.extractfile(names[0])) if names else {}
    for req in data.get("build-system", {}).get("requires", ["setuptools>=40.8.0", "wheel"]):
        print(req)
PY
    )
    [ ${#reqs[@]} -gt 0 ] || break
    before=$(find "$tmp" -maxdepth 1 -name '*.tar.gz' | wc -l)
    pip_private download -q -d "$tmp" "${reqs[@]}"
    [ "$(find "$tmp" -maxdepth 1 -name '*.tar.gz' | wc -l)" != "$before" ] || break
    [ "$round" -lt 5 ] || die "pip: build requirements still bring new sdists after 5 rounds"
  done
  mv -T "$tmp" "$wheels"
  log "pip: wheelhouse $wheels ($(find "$wheels" -maxdepth 1 -type f | wc -l) files, $(du -sh "$wheels" | cut -f1));" \
    "sdists: $(find "$wheels" -maxdepth 1 -name '*.tar.gz' -printf '%f ')"
}

# Runs as PID 1 of the new namespaces (unshare ... run.sh __enter): mounts the container, then becomes
# inside.sh. Its mounts live in this mount namespace only and vanish with it.
phase_enter() {
  local m=$RUN/merged d v pass=()
  mount -t overlay overlay -o "lowerdir=$CACHE/root-$ROOT_HASH,upperdir=$RUN/upper,workdir=$RUN/work" "$m"
  mount -t proc proc "$m/proc"
  mount -t sysfs sysfs "$m/sys"
  mount -t tmpfs -o mode=755,size=16m dev "$m/dev"
  mknod -m 666 "$m/dev/null" c 1 3; mknod -m 666 "$m/dev/zero" c 1 5; mknod -m 666 "$m/dev/full" c 1 7
  mknod -m 666 "$m/dev/random" c 1 8; mknod -m 666 "$m/dev/urandom" c 1 9; mknod -m 666 "$m/dev/tty" c 5 0
  # QEMU's tap NIC. No /dev/kvm: the guest runs under TCG, as the smoke test's domain asks.
  mkdir -p "$m/dev/net" "$m/dev/pts" "$m/dev/shm"; mknod -m 666 "$m/dev/net/tun" c 10 200
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$m/dev/pts"
  mknod -m 666 "$m/dev/ptmx" c 5 2; ln -s /proc/self/fd "$m/dev/fd"
  for d in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${d%%:*}" "$m/dev/${d#*:}"; done
  mount -t tmpfs -o mode=1777 shm "$m/dev/shm"
  mount -t tmpfs -o mode=755 run "$m/run"
  mkdir -m 1777 "$m/run/lock"
  for d in debs:"$CACHE/repo-$APT_HASH" wheels:"$CACHE/wheels-$PIP_HASH" harness:"$HERE"; do
    mkdir -p "$m$C_SRV/${d%%:*}"
    mount --bind "${d#*:}" "$m$C_SRV/${d%%:*}"
    mount -o remount,bind,ro "$m$C_SRV/${d%%:*}"
  done
  mkdir -p "$m$C_SRV/out"; mount --bind "$RUN/out" "$m$C_SRV/out"
  # The clone of a new user: the checkout's files, no build output, no venv.
  mkdir -p "$m$C_CHECKOUT"
  tar -C "$CHECKOUT" --null -T "$RUN/files" -cf - | tar -C "$m$C_CHECKOUT" -xf -
  # apt sees the local repository only; a new machine's apt would see the mirror.
  rm -f "$m"/etc/apt/sources.list.d/*
  echo "deb [trusted=yes] file:$C_SRV/debs ./" >"$m/etc/apt/sources.list"
  echo fresh-machine >"$m/etc/hostname"; hostname fresh-machine
  printf '127.0.0.1 localhost\n127.0.1.1 fresh-machine\n::1 localhost ip6-localhost ip6-loopback\n' >"$m/etc/hosts"
  ip link set lo up
  # Only what HS_FRESH_PASS_ENV names of this machine's environment (default: nothing).
  for v in ${HS_FRESH_PASS_ENV:-}; do [ -z "${!v+x}" ] || pass+=("$v=${!v}"); done
  # pivot_root, not a bare chroot: the root of this mount namespace must be the container's. libvirtd
  # enters QEMU's mount namespace with setns() to create its device nodes, and setns() resets the root
  # to the namespace's: behind a bare chroot that is this machine's own / and its /dev.
  cd "$m"
  mkdir .hs-old-root
  pivot_root . .hs-old-root
  # shellcheck disable=SC2016 # expanded by the container's sh
  exec /usr/sbin/chroot . /bin/sh -c 'umount -l /.hs-old-root && rmdir /.hs-old-root && exec "$@"' sh \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb PIP_NO_INDEX=1 PIP_FIND_LINKS="$C_SRV/wheels" \
    HS_FRESH_OUT="$C_SRV/out" HS_FRESH_WORKDIR="$C_CHECKOUT" "${pass[@]}" /bin/bash "$C_SRV/harness/inside.sh"
}

if [[ ${1:-} == __* ]]; then
  "phase_${1#__}"
  exit
fi

# ---- main -------------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, namespaces, mounts)"
require_cmds mmdebstrap apt-get apt-ftparchive unshare pivot_root mount timeout git tar python3 flock ip ps
CHECKOUT=$(cd "$CHECKOUT" && pwd)
git -C "$CHECKOUT" rev-parse --git-dir >/dev/null 2>&1 || die "$CHECKOUT is not a git checkout"
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
exec 9>"$CACHE/.lock"
flock -n 9 || { log "another fresh-machine run holds $CACHE/.lock, waiting"; flock 9; }
# What a killed run left (its namespaces, and with them its mounts, died with it).
rm -rf "$CACHE"/.run-* "$CACHE"/.*.tmp

LOGS=$CACHE/logs
rm -rf "$LOGS"; mkdir -p "$LOGS"
RUN="" CPID=""
declare -a SUMMARY=()
t_start=$SECONDS

container_procs() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" != "$RUN/merged" ] || echo "${p#/proc/}"
  done
}
cleanup() {
  local child
  # The running phase: timeout passes TERM on to its process group. unshare ignores it while it waits, and
  # so does the container's PID 1, which has no handler: unshare gets KILL, and its --kill-child then ends
  # the container's PID 1 and with it the whole PID namespace.
  if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
    kill -TERM "$CPID" 2>/dev/null || true
    for child in $(ps -o pid= --ppid "$CPID"); do kill -KILL "$child" 2>/dev/null || true; done
    wait "$CPID" 2>/dev/null || true
  fi
  CPID=""
  if [ -n "$RUN" ] && [ -d "$RUN" ]; then
    for _ in $(seq 50); do container_procs | grep -q . || break; sleep 0.2; done
    if [ "${HS_FRESH_KEEP_RUN:-0}" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
  fi
}
# The caller's stdout, for the last line even when a signal comes while a phase's output is redirected.
exec 8>&1
on_signal() {
  trap - EXIT
  cleanup
  echo "fresh-machine: FAILED: interrupted by SIG$1 (the container, its mounts and its overlay are gone)" >&8
  exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

summary() {
  local line
  echo "fresh-machine phases (seconds):"
  for line in "${SUMMARY[@]}"; do echo "  $line"; done
  echo "  total $((SECONDS - t_start))"
}
fail() {  # PHASE RC LOG
  local last=""
  if [ -f "$3" ]; then
    # The last three lines say more than the last one ("up failed, cleaning up" follows the cause).
    last=$(grep -v '^[[:space:]]*$' "$3" | tail -n 3 | sed 's/^[[:space:]]*//' | cut -c1-200 | paste -sd'|' - | sed 's/|/ | /g')
    { echo "--- last lines of $3"; tail -n 60 "$3"; echo "---"; } >&2
  fi
  summary
  echo "fresh-machine: FAILED in phase $1 (exit $2$([ "$2" != 124 ] || echo ", time limit")): ${last:-no output}; log: $3"
  exit 1
}
# bounded LIMIT CMD...: CMD under timeout, in the background so that cleanup can end it; returns its status.
bounded() {
  local limit=$1 rc=0
  shift
  timeout --kill-after=20 "$limit" "$@" &
  CPID=$!
  wait "$CPID" || rc=$?
  CPID=""
  return "$rc"
}
host_phase() {  # NAME LIMIT
  local t0=$SECONDS rc=0
  log "phase $1 (limit $2 s)"
  bounded "$2" bash "$HERE/run.sh" "__$1" >"$LOGS/$1.log" 2>&1 || rc=$?
  SUMMARY+=("$(printf '%-24s %5d' "$1" $((SECONDS - t0)))")
  grep -E '^\[[0-9:]{8}\] (pristine root|apt|pip):' "$LOGS/$1.log" >&2 || true
  [ "$rc" = 0 ] || fail "$1" "$rc" "$LOGS/$1.log"
}
# The namespace of inside.sh's lab "fresh", as this harness's lab script names it.
LAB_NETNS=$("$REPO_DIR/scripts/hyperscaler-lab" netns fresh)
# This machine's side of the container's boundary: its device nodes (QEMU's are made by libvirtd in a
# mount namespace of the container's), no lab namespace of the container's name, no mount of the run.
host_state() {
  stat -c '%n %F %t:%T %i %Z' /dev/null /dev/zero /dev/ptmx /dev/net/tun /dev/urandom 2>&1
  ip netns list | awk -v ns="$LAB_NETNS" '$1 == ns'
  grep -F "$CACHE/.run-" /proc/self/mountinfo || true
}

ROOT_HASH=$(root_hash)
APT_HASH=$ROOT_HASH-$( { checkout_apt_packages; checkout_apt_downloads; } | short_hash)
pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PIP_HASH=$( { (cd "$CHECKOUT" && file_manifest requirements-*.txt); echo "${BUILD_BACKENDS[*]} $pyver"; } | short_hash)
export CACHE CHECKOUT ROOT_HASH APT_HASH PIP_HASH
log "fresh-machine: checkout $CHECKOUT ($(git -C "$CHECKOUT" rev-parse --short HEAD)$(git -C "$CHECKOUT" diff --quiet HEAD || echo ', with local changes'))"
host_before=$(host_state)

host_phase root "$LIMIT_ROOT"
# The wheels are downloaded by this machine's python3 for the root's: same minor version or nothing fits.
root_py=$(basename "$(readlink -f "$CACHE/root-$ROOT_HASH/usr/bin/python3")")
[ "$root_py" = "python$pyver" ] || die "host python3 is $pyver, the pristine root's is $root_py: the wheelhouse would not fit"
host_phase apt "$LIMIT_APT"
host_phase pip "$LIMIT_PIP"

RUN=$(mktemp -d "$CACHE/.run-XXXXXX")
export RUN
mkdir -p "$RUN/upper" "$RUN/work" "$RUN/merged" "$RUN/out"
git -C "$CHECKOUT" ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do
      if [ -e "$CHECKOUT/$f" ] || [ -L "$CHECKOUT/$f" ]; then printf '%s\0' "$f"; fi
    done >"$RUN/files"
log "phase container (limit $LIMIT_CONTAINER s): $(tr -cd '\0' <"$RUN/files" | wc -c) files of the checkout," \
  "overlay $RUN, no network"
t0=$SECONDS rc=0
bounded "$LIMIT_CONTAINER" unshare --mount --net --pid --ipc --uts --fork --kill-child --propagation private -- \
  bash "$HERE/run.sh" __enter > >(tee "$LOGS/container.log" >&2) 2>&1 || rc=$?
SUMMARY+=("$(printf '%-24s %5d' container $((SECONDS - t0)))")
if [ -f "$RUN/out/phases.tsv" ]; then
  while IFS=$'\t' read -r name secs prc; do
    SUMMARY+=("$(printf '  %-22s %5d%s' "$name" "$secs" "$([ "$prc" = 0 ] || echo "  exit $prc")")")
  done <"$RUN/out/phases.tsv"
fi
cp -r "$RUN/out/logs" "$LOGS/container" 2>/dev/null || true
if [ "$rc" != 0 ]; then
  if [ -f "$RUN/out/failed" ]; then
    IFS=$'\t' read -r name prc <"$RUN/out/failed"
    fail "container/$name" "$prc" "$LOGS/container/$name.log"
  fi
  fail container "$rc" "$LOGS/container.log"
fi
[ -s "$RUN/out/passed" ] || fail container "$rc" "$LOGS/container.log"
cleanup
RUN=""
# Nothing of the container may outlive it, nor have reached this machine's side.
if [ "$(host_state)" != "$host_before" ]; then
  diff <(echo "$host_before") <(host_state) >"$LOGS/host-state.diff" || true
  fail host-untouched 1 "$LOGS/host-state.diff"
fi
summary
# make test runs these tiers only here (tests/run-all.sh): their result lines, for the CI log.
for tier in unit ansible-lint shellcheck promtool collection-install gpu-simulator; do
  [ -f "$LOGS/container/$tier.log" ] || continue
  echo "--- $tier (last lines of $LOGS/container/$tier.log)"
  grep -v '^[[:space:]]*$' "$LOGS/container/$tier.log" | grep -Ev '^(Name|-{5,}|plugins/)' | tail -n 4
done
echo "fresh-machine: PASSED"
