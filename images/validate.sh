#!/usr/bin/env bash
# Boots throwaway copy-on-write clones of a golden image under TCG and checks them.
#
#   images/validate.sh IMAGE [--name NAME] [--clones N] [--timeout SECONDS] [--logs DIR]
#
# Each clone is a qcow2 overlay backed by IMAGE with its own NoCloud seed (hostname, a user with
# a freshly generated SSH key). Two clones (the default) make the uniqueness checks real: their
# machine-ids and SSH host keys must differ. IMAGE's sha256 is compared before and after.
# NAME defaults to the "name" of the metadata JSON next to IMAGE.
# Exit status 0 only if every check passed; progress and results go to stderr, a JSON summary
# is the last stdout line.
set -euo pipefail
# shellcheck source=images/lib.sh
. "$(dirname "$0")/lib.sh"

image="" name="" clones=2 timeout=600 logs=""
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift 2 ;;
    --clones) clones=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$image" ] || die "one image only"; image=$1; shift ;;
  esac
done
{ [ -n "$image" ] && [ -f "$image" ]; } || die "usage: $0 IMAGE [--name NAME] [--clones N]"
[[ $clones =~ ^[1-9]$ ]] || die "--clones must be 1..9"
require_cmds qemu-system-x86_64 qemu-img cloud-localds ssh ssh-keygen sha256sum python3
image=$(readlink -f "$image")
if [ -z "$name" ]; then
  meta="${image%.qcow2}.json"
  [ -f "$meta" ] || die "no metadata $meta: pass --name"
  name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$meta")
fi
check_name "$name"

sum_before=$(sha256sum "$image" | cut -d' ' -f1)
work=$(mktemp -d /tmp/aihow-validate-XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$logs" ]; then mkdir -p "$logs"; cp "$work"/*.log "$logs"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -C aihow-validate -f "$work/id"
user=aihow-validate
run_id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Two clones share the 2 host cores; one clone gets both.
smp=$(( clones > 1 ? 1 : 2 ))

ports=() hosts=()
t_start=$SECONDS
for i in $(seq 1 "$clones"); do
  host="vt-$run_id-$i"
  hosts+=("$host")
  qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$work/clone$i.qcow2"
  cat >"$work/user-data$i" <<UD
#cloud-config
users:
  - name: $user
    shell: /bin/bash
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - $(cat "$work/id.pub")
UD
  printf 'instance-id: %s\nlocal-hostname: %s\n' "$host" "$host" >"$work/meta-data$i"
  cloud-localds "$work/seed$i.iso" "$work/user-data$i" "$work/meta-data$i"
  port=$(free_port)
  ports+=("$port")
  # User-mode networking: guest traffic stays inside qemu; the SSH forward listens on loopback only.
  qemu-system-x86_64 -accel tcg,thread=multi,tb-size=128 -cpu max -m 1536 -smp "$smp" \
    -display none -monitor none -serial "file:$work/console$i.log" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -drive "file=$work/clone$i.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/seed$i.iso,if=virtio,format=raw,readonly=on" \
    </dev/null >"$work/qemu$i.log" 2>&1 &
  pids+=("$!")
  log "clone $i: qemu pid ${pids[-1]}, ssh 127.0.0.1:$port, hostname $host"
done

sshc() {
  local port=$1; shift
  ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=5 -i "$work/id" -p "$port" "$user@127.0.0.1" "$@"
}

boot_s=()
for i in $(seq 1 "$clones"); do
  idx=$((i - 1))
  until sshc "${ports[$idx]}" true 2>/dev/null; do
    kill -0 "${pids[$idx]}" 2>/dev/null || { tail -n 30 "$work/console$i.log" >&2; die "clone $i: qemu exited"; }
    (( SECONDS - t_start < timeout )) || { tail -n 30 "$work/console$i.log" >&2; die "clone $i: no SSH within ${timeout}s"; }
    sleep 2
  done
  boot_s+=($((SECONDS - t_start)))
  log "clone $i: SSH ready after ${boot_s[-1]}s"
done

# Facts gathered in the guest as key=value lines; the judging happens here on the host.
# shellcheck disable=SC2016  # expanded by the guest's shell, not here
probe='
set -u
cloud-init status --wait >/dev/null 2>&1
echo "cloud_init=$(cloud-init status 2>/dev/null | sed -n "s/^status: //p")"
echo "hostname=$(hostname)"
echo "machine_id=$(cat /etc/machine-id)"
echo "munge_key=$(test -e /etc/munge/munge.key && echo present || echo absent)"
boot=$(( $(date +%s) - $(cut -d. -f1 /proc/uptime) ))
echo "boot_epoch=$boot"
n=0 old=0
for k in /etc/ssh/ssh_host_*_key.pub; do
  [ -f "$k" ] || continue
  n=$((n + 1))
  [ "$(stat -c %Y "$k")" -ge "$boot" ] || old=$((old + 1))
  echo "hostkey=$(ssh-keygen -lf "$k" | cut -d" " -f2)"
done
echo "hostkeys=$n"
echo "hostkeys_older_than_boot=$old"
echo "firstboot_unit=$(systemctl is-enabled aihow-ssh-hostkeys.service 2>&1)"
echo "image_file=$(. /etc/aihow-hyperscaler-image 2>/dev/null && echo "$IMAGE_NAME")"
echo "failed_units=$(systemctl list-units --failed --plain --no-legend | cut -d" " -f1 | paste -sd, -)"
'
fail=0
check() { # DESCRIPTION CONDITION...
  local d=$1; shift
  if "$@"; then log "  ok   $d"; else log "  FAIL $d"; fail=$((fail + 1)); fi
}
declare -A seen_mid=() seen_key=()
for i in $(seq 1 "$clones"); do
  idx=$((i - 1)) port=${ports[$((i - 1))]}
  log "clone $i (${hosts[$idx]}):"
  facts=$(sshc "$port" sudo bash -s <<<"$probe")
  get() { sed -n "s/^$1=//p" <<<"$facts" | head -n 1; }
  mid=$(get machine_id)
  check "cloud-init finished without errors ($(get cloud_init))" test "$(get cloud_init)" = "done"
  check "hostname from the seed ($(get hostname))" test "$(get hostname)" = "${hosts[$idx]}"
  check "no munge key shipped" test "$(get munge_key)" = absent
  check "machine-id generated ($mid)" grep -Eq '^[0-9a-f]{32}$' <<<"$mid"
  check "machine-id unique among clones" test -z "${seen_mid[$mid]:-}"
  seen_mid[$mid]=$i
  check "SSH host keys present ($(get hostkeys))" test "$(get hostkeys)" -ge 1
  check "SSH host keys generated at this boot" test "$(get hostkeys_older_than_boot)" = 0
  dup=""
  while read -r fp; do
    [ -n "$fp" ] || continue
    [ -z "${seen_key[$fp]:-}" ] || dup="$dup $fp"
    seen_key[$fp]=$i
  done < <(sed -n 's/^hostkey=//p' <<<"$facts")
  check "SSH host keys unique among clones" test -z "$dup"
  check "first-boot host key unit enabled ($(get firstboot_unit))" test "$(get firstboot_unit)" = enabled
  check "/etc/aihow-hyperscaler-image names $name" test "$(get image_file)" = "$name"
  check "no failed units ($(get failed_units))" test -z "$(get failed_units)"
  while read -r unit; do
    # </dev/null: ssh would otherwise eat the rest of the unit list.
    state=$(sshc "$port" systemctl is-enabled "$unit" </dev/null 2>&1 || true)
    active=$(sshc "$port" systemctl is-active "$unit" </dev/null 2>&1 || true)
    check "$unit disabled ($state) and not running ($active)" test "$state" = disabled -a "$active" != active
  done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$DEFS_DIR/$name/disabled-services")
  while read -r cmd; do
    check "$cmd" sshc "$port" sudo bash -c "$(printf '%q' "$cmd") >/dev/null 2>&1" </dev/null
  done < <(sed -e 's/^[[:space:]]*#.*//' -e '/^[[:space:]]*$/d' "$DEFS_DIR/$name/validate")
done

for i in $(seq 1 "$clones"); do
  sshc "${ports[$((i - 1))]}" sudo systemctl poweroff </dev/null || true
done
for i in $(seq 1 "$clones"); do
  p=${pids[$((i - 1))]}
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
  if kill -0 "$p" 2>/dev/null; then log "clone $i: no clean poweroff in 60s, killing qemu"; kill "$p"; fi
  wait "$p" 2>/dev/null || true
done
pids=()
total_s=$((SECONDS - t_start))

sum_after=$(sha256sum "$image" | cut -d' ' -f1)
check "image unchanged (sha256 $sum_before)" test "$sum_before" = "$sum_after"
if [ -n "${meta:-}" ]; then
  want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$meta")
  check "image sha256 matches its metadata" test "$want" = "$sum_after"
fi
log "validate $name: $fail failed check(s); SSH ready after ${boot_s[*]}s, total ${total_s}s"
python3 -c 'import json,sys; print(json.dumps({"image": sys.argv[1], "name": sys.argv[2], "failed": int(sys.argv[3]), "ssh_ready_s": [int(x) for x in sys.argv[4].split()], "total_s": int(sys.argv[5])}))' \
  "$image" "$name" "$fail" "${boot_s[*]}" "$total_s"
[ "$fail" = 0 ]
