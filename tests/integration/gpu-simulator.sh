#!/usr/bin/env bash
# End to end against the simulators: playbooks/gpu.yml (role gpu_host) on config/workstation.yml with
# gpu_allocation.backend: simulator. Everything it writes is under a scratch directory (no root, no
# /etc or /var). Checks the NVML simulator's GIs against the plan, the vGPUs in the simulated sysfs
# tree and their mdevctl definitions, the per-VM device list, idempotence (changed=0 on a second
# run), the restore script after a simulated reboot, and that a host whose GPU differs from the plan
# is refused before anything changes. KEEP=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$repo/.build/collections"
export ANSIBLE_CONFIG="$repo/ansible.cfg"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
export PYTHONPATH="$ANSIBLE_COLLECTIONS_PATH${PYTHONPATH:+:$PYTHONPATH}"
PY="$repo/.venv/bin/python"

S=$(mktemp -d "${TMPDIR:-/tmp}/gpu-simulator.XXXXXX")
cleanup() {
  rc=$?
  if [ "$rc" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then echo "gpu-simulator: scratch directory kept: $S" >&2
  else rm -rf "$S"; fi
}
trap cleanup EXIT
fail() { echo "gpu-simulator: FAIL: $*" >&2; exit 1; }

# --- the cluster: workstation.yml with the simulator backend, state inside the scratch dir
"$PY" - "$repo/config/workstation.yml" "$S" <<'PY'
import sys, yaml
src, scratch = sys.argv[1:]
with open(src) as f:
    config = yaml.safe_load(f)
alloc = config["global"]["gpu_allocation"]
alloc["backend"] = "simulator"
alloc["simulator_state"] = scratch + "/nvml-simulator.json"
with open(scratch + "/cluster.yaml", "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
PY
cat > "$S/lab.cluster.yml" <<YML
plugin: aihow.hyperscaler.cluster
config: cluster.yaml
YML
# The plan as the config tool computes it: the expected results come from here, not from the role.
"$PY" scripts/hyperscaler-config plan "$S/cluster.yaml" > "$S/plan.json"

# --- the simulated vGPU sysfs tree: the lab preset (GPUs the plan does not use, which must stay
# untouched) plus the workstation's A100 80GB as an SR-IOV mdev GPU in MIG mode. The preset has no
# A100 80GB, so this one is added with vgpu_sysfs_sim's API; its MIG-backed types are A100D-*.
# vGPU and NVML are separate simulators: the tree's MIG flag stands for the mode the role sets.
"$PY" scripts/hyperscaler-vgpu-sim "$S/sysroot" >/dev/null
"$PY" - "$S/sysroot" <<'PY'
import sys
from ansible_collections.aihow.hyperscaler.plugins.module_utils.vgpu.simulator import VgpuSim
# Illustrative ids, as in the simulator's own presets; names and max instances follow the driver.
A100D_TYPES = [{"id": tid, "name": "NVIDIA " + name, "max": count, "description": ""} for tid, name, count in (
    ("nvidia-700", "A100D-1-10C", 7), ("nvidia-701", "A100D-1-20C", 4), ("nvidia-702", "A100D-2-20C", 3),
    ("nvidia-703", "A100D-3-40C", 2), ("nvidia-704", "A100D-4-40C", 1), ("nvidia-705", "A100D-7-80C", 1),
    ("nvidia-710", "A100D-8C", 10), ("nvidia-711", "A100D-20C", 4))]
VgpuSim(sys.argv[1]).add_sriov_mdev_gpu("0000:65:00.0", types=A100D_TYPES, num_vfs=16, device_id="0x20b5",
                                        mig=True)
PY

# shellcheck source=tests/lib/gpu-host-scratch-vars.sh
. "$repo/tests/lib/gpu-host-scratch-vars.sh"
gpu_host_scratch_vars "$S" "$PY" > "$S/vars.yml"

# The local connection runs modules with the venv interpreter (interpreter discovery may find a broken shim).
play() { ansible-playbook -i "$S/lab.cluster.yml" playbooks/gpu.yml -e "@$S/vars.yml" -e ansible_python_interpreter="$PY" "$@"; }

# --- run 1: converge
play > "$S/run1.log" 2>&1 || { tail -n 60 "$S/run1.log" >&2; fail "first playbook run failed"; }
grep -q "is installed but not enabled or started" "$S/run1.log" || fail "no log line saying the unit was not enabled"

# --- the checks; the same function runs again after the restore
check() {
  "$PY" - "$S" "$1" <<'PY'
import json, os, sys
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as gpu_catalog
from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.identity import stable_uuid
scratch, what = sys.argv[1:]
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)
with open(scratch + "/plan.json") as f:
    plan = json.load(f)
devices = plan["devices"]
mig_devs = [d for d in devices if d["mode"] == "mig"]
expect(mig_devs, "the plan has no MIG GPU; the test would prove nothing")
# 1. NVML simulator: exactly the planned GIs at the planned placements, one CI each
with open(scratch + "/nvml-simulator.json") as f:
    state = json.load(f)
by_pci = dict((g["pci_bus_id"], g) for g in state["gpus"])
for d in devices:
    gpu = by_pci.get(d["pci_address"])
    if gpu is None:
        errors.append("%s: not in the simulator state" % d["pci_address"]); continue
    model = gpu_catalog.MODELS_BY_KEY[gpu["model"]]
    got = sorted((model.profile_by_id(gi["profile_id"]).name, gi["start"], gi["size"])
                 for gi in gpu["gpu_instances"])
    want = sorted((i["profile"], i["start"], i["size"]) for i in d.get("mig_layout") or [])
    expect(got == want, "%s: GIs %s, planned %s" % (d["pci_address"], got, want))
    expect(all(len(gi["compute_instances"]) == 1 for gi in gpu["gpu_instances"]),
           "%s: a GI without exactly one CI" % d["pci_address"])
    if gpu["mig"] is not None:
        mode = gpu["mig"]["current"]
        expect(mode == (1 if d["mode"] == "mig" else 0), "%s: MIG mode %s for a %s GPU" % (d["pci_address"], mode, d["mode"]))
def finish(summary):
    for e in errors:
        print("  " + e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print(summary)
    sys.exit(0)
if what == "restore":
    finish("layout restored (%d GIs)" % sum(len(d["mig_layout"]) for d in mig_devs))
# 2. vGPUs: one per MIG instance, stable UUID, MIG-backed type, in the tree and defined in mdevctl
root = scratch + "/sysroot"
cluster = "hyperscaler-emulation"  # metadata.name of config/workstation.yml
with open(root + "/.vgpu-sim.json") as f:
    sim = json.load(f)
types = {"1g.10gb": "NVIDIA A100D-1-10C", "1g.20gb": "NVIDIA A100D-1-20C", "2g.20gb": "NVIDIA A100D-2-20C",
         "3g.40gb": "NVIDIA A100D-3-40C", "4g.40gb": "NVIDIA A100D-4-40C", "7g.80gb": "NVIDIA A100D-7-80C"}
wanted, seen = {}, {}
for d in mig_devs:
    for inst in d["mig_layout"]:
        index = seen.get(inst["node"], 0)
        seen[inst["node"]] = index + 1
        wanted[stable_uuid(cluster, inst["node"], index)] = (d, inst)
active = sorted(os.listdir(root + "/sys/bus/mdev/devices"))
expect(sorted(wanted) == active, "active mdevs %s, wanted %s" % (active, sorted(wanted)))
for uid, (d, inst) in wanted.items():
    ddir = os.path.realpath(os.path.join(root, "sys/bus/mdev/devices", uid))
    parent = os.path.basename(os.path.dirname(ddir))
    expect(parent in sim["gpus"][d["pci_address"]]["parents"], "%s: parent %s is not a VF of %s" % (uid, parent, d["pci_address"]))
    tdir = os.path.realpath(os.path.join(ddir, "mdev_type"))
    name = open(os.path.join(tdir, "name")).read().strip() if os.path.isdir(tdir) else None
    expect(name == types[inst["profile"]], "%s (%s %s): type %s, wanted %s" % (uid, inst["node"], inst["profile"], name, types[inst["profile"]]))
    defn = os.path.join(root, "etc/mdevctl.d", parent, uid)
    if not os.path.isfile(defn):
        errors.append("%s: no mdevctl definition %s" % (uid, defn)); continue
    with open(defn) as f:
        definition = json.load(f)
    expect(definition == {"mdev_type": os.path.basename(tdir), "start": "auto", "attrs": []},
           "%s: mdevctl definition %s" % (uid, definition))
# 3. the per-VM device list
with open(scratch + "/var/lib/aihow-hyperscaler/vm-devices.json") as f:
    vm_devices = json.load(f)
want_vm = {}
for d in devices:
    if d["mode"] == "whole":
        want_vm.setdefault(d["node"], []).append(("pci", d["pci_address"], None, d["id"], None))
for uid, (d, inst) in wanted.items():
    want_vm.setdefault(inst["node"], []).append(("mdev", None, uid, d["id"], inst["profile"]))
got_vm = dict((vm, [(e["device"], e.get("pci_address") if e["device"] == "pci" else None, e.get("uuid") if e["device"] == "mdev" else None, e["gpu_id"], e["profile"]) for e in entries]) for vm, entries in vm_devices.items())
expect(sorted(got_vm) == sorted(want_vm), "VMs %s, wanted %s" % (sorted(got_vm), sorted(want_vm)))
for vm in want_vm:
    expect(sorted(got_vm.get(vm, []), key=str) == sorted(want_vm[vm], key=str), "%s: devices %s, wanted %s" % (vm, got_vm.get(vm), want_vm[vm]))
kinds = set(e["kind"] for entries in vm_devices.values() for e in entries)
expect(kinds == {"simulated"}, "kinds %s; the simulator backend must give only 'simulated' entries" % kinds)
# 4. the boot unit, the script and its library
unit = open(scratch + "/etc/systemd/system/aihow-hyperscaler-gpu.service").read()
for needle in ("Type=oneshot", "Before=libvirtd.service", "After=nvidia-persistenced.service",
               scratch + "/usr/local/sbin/hyperscaler-gpu-restore", "--backend simulator",
               "--layout \"%s/etc/aihow-hyperscaler/mig-layout.json\"" % scratch):
    expect(needle in unit, "the unit lacks %r" % needle)
expect(os.access(scratch + "/usr/local/sbin/hyperscaler-gpu-restore", os.X_OK), "restore script not installed")
finish("%d GIs at the planned placements, %d vGPUs with mdevctl definitions, %d VMs in vm-devices.json"
       % (len(wanted), len(active), len(vm_devices)))
PY
}
summary_converge=$(check converge) || fail "state after the first run does not match the plan"

# --- run 2: idempotence
play > "$S/run2.log" 2>&1 || { tail -n 60 "$S/run2.log" >&2; fail "second playbook run failed"; }
grep -Eq '^local +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$S/run2.log" \
  || { grep -E '^(changed|local +:)' "$S/run2.log" >&2; fail "second run is not idempotent"; }

# --- reboot: the GPUs lose every GI; the installed restore script (no ansible-core: python -S -I)
# brings the saved layout back
"$PY" - "$S/nvml-simulator.json" <<'PY'
import sys
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml
sim = SimulatedNvml(sys.argv[1])
sim.init()
for index, gpu in enumerate(sim.state["gpus"]):
    sim.reset(index)
assert not any(g["gpu_instances"] for g in SimulatedNvml(sys.argv[1]).state["gpus"]), "reset left GIs"
PY
if check restore >/dev/null 2>&1; then fail "the simulated reboot did not drop the GIs"; fi
"$PY" -S -I "$S/usr/local/sbin/hyperscaler-gpu-restore" --layout "$S/etc/aihow-hyperscaler/mig-layout.json" \
  --backend simulator --simulator-state "$S/nvml-simulator.json" --lib "$S/usr/local/lib/aihow-hyperscaler" \
  > "$S/restore.log" 2>&1 || { cat "$S/restore.log" >&2; fail "the restore script failed"; }
summary_restore=$(check restore) || fail "the restore script did not bring the planned layout back"

# --- a host whose GPU differs from the plan is refused before anything changes
"$PY" - "$S/wrong-host.json" <<'PY'
import sys
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml.simulator import SimulatedNvml
SimulatedNvml(sys.argv[1], spec=[{"model": "A100-80GB", "pci_address": "0000:65:00.0"},
                                 {"model": "A30", "pci_address": "0000:ca:00.0"}])
PY
cp "$S/wrong-host.json" "$S/wrong-host.before.json"
if play -e gpu_host_simulator_state="$S/wrong-host.json" > "$S/wrong.log" 2>&1; then
  fail "a host with an A30 where the plan has a Quadro RTX 6000 was accepted"
fi
grep -q "GPU-1 (Quadro RTX 6000) is planned at 0000:ca:00.0 on local, but the GPU there is a NVIDIA A30" "$S/wrong.log" \
  || { grep -E "fatal|msg" "$S/wrong.log" >&2; fail "the mismatch message does not name the device"; }
cmp -s "$S/wrong-host.json" "$S/wrong-host.before.json" || fail "the mismatched host was changed"

echo "gpu-simulator: OK - $summary_converge; second run changed=0; $summary_restore after a simulated reboot; mismatched GPU refused"
