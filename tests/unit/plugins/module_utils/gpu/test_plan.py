"""The GPU allocation plan: deterministic, exact, and explicit about what does not fit."""
import copy
import itertools

import pytest

from helpers import assert_issue, issues_of, load_yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as cat
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import placement as mp
from ansible_collections.aihow.hyperscaler.plugins.module_utils.config.model import build_cluster_config


def gpu_config(devices, mig_slices=None, whole=None, hpc_gpu_nodes=4, cloud_gpu_nodes=0, strategy="hybrid"):
    """A small valid config around the given GPU devices."""
    raw = load_yaml("config", "workstation.yml")
    raw["global"]["gpu_allocation"] = {"devices": devices, "strategy": strategy,
                                       "mig_slices": mig_slices or {}, "whole_gpus": whole or {}}
    hpc = raw["clusters"]["hpc"]["compute_nodes"]
    hpc.update(count=hpc_gpu_nodes, ip_range="192.168.100.11-%d" % (10 + hpc_gpu_nodes), gpu_enabled=True)
    if not hpc_gpu_nodes:
        del hpc["ip_range"]
    gpu_workers = raw["clusters"]["cloud"]["worker_nodes"]["gpu_workers"]
    gpu_workers.update(count=cloud_gpu_nodes, ip_range="192.168.200.21-%d" % (20 + cloud_gpu_nodes))
    if not cloud_gpu_nodes:
        del gpu_workers["ip_range"]
    return raw


def dev(i, model, **extra):
    d = {"id": "GPU-%d" % i, "pci_address": "0000:%02x:00.0" % (0x10 + i), "model": model}
    d.update(extra)
    return d


A100 = "NVIDIA A100 80GB"


def test_workstation_plan_is_the_documented_one():
    plan = build_cluster_config(load_yaml("config", "workstation.yml")).plan
    gpu0, gpu1 = plan["devices"]
    assert gpu0["mode"] == "mig" and gpu0["mig_devices"] == {"1g.10gb": 7}
    assert [(i["start"], i["cluster"]) for i in gpu0["mig_layout"]] == \
        [(0, "hpc"), (1, "hpc"), (2, "hpc"), (3, "hpc"), (4, "cloud"), (5, "cloud"), (6, "cloud")]
    assert (gpu1["mode"], gpu1["node"]) == ("whole", "cloud-gpu-worker-01")
    # every GPU-enabled node has something, round-robin within its cluster
    assert sorted(plan["nodes"]) == ["cloud-gpu-worker-01", "cloud-gpu-worker-02", "cloud-gpu-worker-03",
                                     "hpc-compute-01", "hpc-compute-02", "hpc-compute-03", "hpc-compute-04"]
    assert [g["kind"] for g in plan["nodes"]["cloud-gpu-worker-01"]] == ["whole", "mig"]
    assert plan["nodes"]["hpc-compute-02"][0]["slurm_gres_type"] == "1g.10gb"
    assert plan["nodes"]["cloud-gpu-worker-01"][0]["slurm_gres_type"] == "rtx6000"


def test_plan_is_deterministic():
    raw = load_yaml("config", "production.yml")
    plans = [build_cluster_config(copy.deepcopy(raw)).plan for _unused in range(3)]
    assert plans[0] == plans[1] == plans[2]


def test_production_plan_uses_only_allowed_profiles_and_valid_placements():
    config = build_cluster_config(load_yaml("config", "production.yml"))
    for d in config.plan["devices"]:
        model = cat.MODELS_BY_KEY[d["model_key"]]
        allowed = next(x for x in config.data["global"]["gpu_allocation"]["devices"] if x["id"] == d["id"]).get(
            "allowed_mig_profiles")
        placed = [mp.Placed(i["profile"], i["start"], i["size"]) for i in d["mig_layout"]]
        mask = 0
        for p in placed:
            prof = model.profile(p.profile)
            assert p.start in prof.starts and p.size == prof.size
            assert allowed is None or p.profile in allowed
            bits = ((1 << p.size) - 1) << p.start
            assert not mask & bits, "overlap on %s" % d["id"]
            mask |= bits
    whole = [d for d in config.plan["devices"] if d["mode"] == "whole"]
    assert [d["model_key"] for d in whole] == ["L40S", "L40S"]


def test_sizes_that_add_up_in_gb_but_cannot_be_placed():
    # 40 + 4 x 10 = 80 GB on an 80 GB card, but a 4g instance leaves only three 1g starts.
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": {"4g.40gb": 1, "1g.10gb": 4}}, hpc_gpu_nodes=5)
    assert_issue(raw, "global.gpu_allocation.mig_slices", "does not fit", "GPU-0 (NVIDIA A100 80GB)")
    # the same total with a 3g instance does fit: 3g at 4, four 1g at 0-3
    ok = gpu_config([dev(0, A100)], mig_slices={"hpc": {"3g.40gb": 1, "1g.10gb": 4}}, hpc_gpu_nodes=5)
    layout = build_cluster_config(ok).plan["devices"][0]["mig_layout"]
    assert [(i["profile"], i["start"]) for i in layout] == [
        ("1g.10gb", 0), ("1g.10gb", 1), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)]


def test_request_that_adds_up_across_gpus_but_cannot_be_split():
    # 2 x 4g + 3 x 2g = 14 compute slices = two A100s exactly, but a 4g GPU has no room for two 2g.
    raw = gpu_config([dev(0, A100), dev(1, A100)], mig_slices={"hpc": {"4g.40gb": 2, "2g.20gb": 3}}, hpc_gpu_nodes=5)
    found = assert_issue(raw, "global.gpu_allocation.mig_slices", "does not fit",
                         "No assignment to GPUs satisfies the MIG placement rules")
    assert len(found) == 1
    raw = gpu_config([dev(0, A100), dev(1, A100)], mig_slices={"hpc": {"4g.40gb": 2, "2g.20gb": 2}}, hpc_gpu_nodes=4)
    assert issues_of(raw) == []


def test_plain_oversubscription_says_the_numbers():
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": 8}, hpc_gpu_nodes=4)
    assert_issue(raw, "global.gpu_allocation.mig_slices", "needs 8 compute slices; those GPUs hold 7")


def test_slice_count_means_the_smallest_allowed_profile():
    raw = gpu_config([dev(0, A100, allowed_mig_profiles=["2g.20gb", "3g.40gb"])], mig_slices={"hpc": 3},
                     hpc_gpu_nodes=3)
    assert build_cluster_config(raw).plan["devices"][0]["mig_devices"] == {"2g.20gb": 3}


def test_profile_not_offered_by_any_gpu():
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": {"1g.5gb": 1}}, hpc_gpu_nodes=1)
    assert_issue(raw, "global.gpu_allocation.mig_slices.hpc.1g.5gb", "no MIG GPU left for slicing offers 1g.5gb",
                 "1g.10gb")


def test_profile_restricted_by_allowed_list():
    raw = gpu_config([dev(0, A100, allowed_mig_profiles=["1g.10gb"])], mig_slices={"hpc": {"3g.40gb": 1}},
                     hpc_gpu_nodes=1)
    assert_issue(raw, "global.gpu_allocation.mig_slices.hpc.3g.40gb", "offers 3g.40gb", "they offer: 1g.10gb")


def test_mixed_models_put_profiles_where_they_exist():
    raw = gpu_config([dev(0, "NVIDIA H100 NVL"), dev(1, A100)],
                     mig_slices={"hpc": {"3g.47gb": 2, "3g.40gb": 1}}, hpc_gpu_nodes=3)
    devices = build_cluster_config(raw).plan["devices"]
    assert devices[0]["mig_devices"] == {"3g.47gb": 2} and devices[1]["mig_devices"] == {"3g.40gb": 1}


def test_whole_gpus_prefer_non_mig_devices():
    raw = gpu_config([dev(0, A100), dev(1, "NVIDIA L40S"), dev(2, A100)], mig_slices={"hpc": 2},
                     whole={"hpc": 2}, hpc_gpu_nodes=4)
    devices = build_cluster_config(raw).plan["devices"]
    assert [d["mode"] for d in devices] == ["mig", "whole", "whole"]


def test_too_many_whole_gpus():
    raw = gpu_config([dev(0, A100)], whole={"hpc": 1, "cloud": 1}, hpc_gpu_nodes=1, cloud_gpu_nodes=1)
    assert_issue(raw, "global.gpu_allocation.whole_gpus", "asks for 2 whole GPUs (hpc 1, cloud 1)", "lists 1")


def test_no_mig_gpu_left_after_whole():
    raw = gpu_config([dev(0, A100)], whole={"hpc": 1}, mig_slices={"cloud": 1}, hpc_gpu_nodes=1, cloud_gpu_nodes=1)
    assert_issue(raw, "global.gpu_allocation.mig_slices", "no MIG-capable GPU is left", "1 are given whole")


def test_mig_capable_false_keeps_a_gpu_whole():
    raw = gpu_config([dev(0, A100, mig_capable=False)], mig_slices={"hpc": 1}, hpc_gpu_nodes=1)
    assert_issue(raw, "global.gpu_allocation.mig_slices", "no MIG-capable GPU is left")


def test_gpu_enabled_node_without_allocation():
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": 2}, hpc_gpu_nodes=3)
    assert_issue(raw, "clusters.hpc.compute_nodes.gpu_enabled", "3 hpc nodes have gpu_enabled",
                 "only 2 GPU resources", "hpc-compute-03 would get none")


def test_allocation_without_gpu_node():
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": 2}, hpc_gpu_nodes=2)
    raw["clusters"]["hpc"]["compute_nodes"]["gpu_enabled"] = False
    assert_issue(raw, "global.gpu_allocation.mig_slices.hpc", "2 GPU resources are allocated to the hpc cluster",
                 "none of its nodes has gpu_enabled")


def test_gpu_on_another_hypervisor_host():
    raw = gpu_config([dev(0, "NVIDIA L40S", hypervisor_host="gpu2")], whole={"hpc": 1}, hpc_gpu_nodes=1)
    raw["hypervisor"] = {"hosts": [{"name": "local"}, {"name": "gpu2", "uri": "qemu+ssh://root@gpu2/system"}]}
    assert_issue(raw, "global.gpu_allocation.devices[0].hypervisor_host", "GPU-0 is on hypervisor host gpu2",
                 "hpc-compute-01, which runs on local")
    raw["clusters"]["hpc"]["compute_nodes"]["hypervisor_host"] = "gpu2"
    assert issues_of(raw) == []


def test_max_count_of_me_profiles():
    raw = gpu_config([dev(0, A100)], mig_slices={"hpc": {"1g.10gb+me": 2}}, hpc_gpu_nodes=2)
    assert_issue(raw, "global.gpu_allocation.mig_slices", "does not fit")
    raw = gpu_config([dev(0, A100), dev(1, A100)], mig_slices={"hpc": {"1g.10gb+me": 2}}, hpc_gpu_nodes=2)
    assert [d["mig_devices"] for d in build_cluster_config(raw).plan["devices"]] == [
        {"1g.10gb+me": 1}, {"1g.10gb+me": 1}]


# ---------------------------------------------------------- the multi-GPU search is exact

MODELS = ["A100-80GB", "A30", "H100-80GB"]


def brute_force_feasible(models, names):
    """Try every assignment of instances to GPUs (small cases only)."""
    for assignment in itertools.product(range(len(models)), repeat=len(names)):
        per = [[] for _unused in models]
        for name, gpu in zip(names, assignment):
            if cat.MODELS_BY_KEY[models[gpu]].profile(name) is None:
                break
            per[gpu].append(name)
        else:
            if all(mp.fits(cat.MODELS_BY_KEY[m], p) for m, p in zip(models, per) if p):
                return True
    return False


@st.composite
def pools_and_requests(draw):
    models = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3))
    names = sorted({p.name for m in models for p in cat.MODELS_BY_KEY[m].mig_profiles})
    request = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
    return models, request


@settings(max_examples=60, deadline=None)
@given(pools_and_requests())
def test_plan_search_agrees_with_brute_force(case):
    models, request = case
    devices = [dev(i, cat.MODELS_BY_KEY[m].name if m != "H100-80GB" else "H100-SXM5-80GB")
               for i, m in enumerate(models)]
    counts = {}
    for name in request:
        counts[name] = counts.get(name, 0) + 1
    raw = gpu_config(devices, mig_slices={"hpc": counts}, hpc_gpu_nodes=len(request))
    found = issues_of(raw)
    expected = brute_force_feasible(models, request)
    assert (found == []) == expected, (models, request, found)


# ---------------------------------------------------------------- the solver's reason in the message (issue #10)
A100_40 = "NVIDIA A100 40GB"


@pytest.mark.parametrize("devices,request_,needles", [
    ([A100_40], {"1g.10gb": 4, "1g.5gb": 1},
     ["The instances (4 x 1g.10gb, 1 x 1g.5gb) need 9 memory slices; those GPUs have 8."]),
    ([A100_40], {"1g.5gb+me": 2},
     ["1g.5gb+me can be used once per GPU (NVIDIA A100 40GB); 2 wanted on the one GPU left for slicing"]),
    ([A100_40, A100_40], {"1g.5gb+me": 3},
     ["1g.5gb+me can be used once per GPU", "the 2 GPUs left for slicing that offer it (GPU-0, GPU-1) allow 2"]),
    ([A100_40, A100_40], {"1g.10gb": 8, "1g.5gb": 1},
     ["The instances (8 x 1g.10gb, 1 x 1g.5gb) need 17 memory slices; those GPUs have 16."]),
])
def test_infeasible_requests_say_the_exact_reason(devices, request_, needles):
    raw = gpu_config([dev(i, m) for i, m in enumerate(devices)], mig_slices={"hpc": request_},
                     hpc_gpu_nodes=sum(request_.values()))
    found = assert_issue(raw, "global.gpu_allocation.mig_slices", "does not fit", *needles)
    assert "No assignment to GPUs" not in found[0][1]
