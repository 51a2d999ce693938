"""mig_placement.solve against a brute-force search over the placement tables, for every MIG model."""
from collections import Counter
from itertools import product

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import placement as mig_placement
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.catalog import GPU_MODELS

MIG_MODELS = [m for m in GPU_MODELS if m.mig_capable]
SETTINGS = settings(max_examples=60, deadline=None)


def bits(start, size):
    return ((1 << size) - 1) << start


def all_layouts(model):
    """Every set of non-overlapping instances at allowed starts within max counts (brute force)."""
    slots = [(p.name, s, p.size) for p in model.mig_profiles for s in p.starts]
    out = []

    def go(i, mask, chosen):
        if i == len(slots):
            out.append(tuple(chosen))
            return
        go(i + 1, mask, chosen)
        name, start, size = slots[i]
        b = bits(start, size)
        if not mask & b:
            go(i + 1, mask | b, chosen + [slots[i]])

    go(0, 0, [])
    return [lay for lay in out if all(n <= model.profile(p).max_count
                                      for p, n in Counter(x[0] for x in lay).items())]


LAYOUTS = dict((m.key, all_layouts(m)) for m in MIG_MODELS)
FEASIBLE = dict((k, set(frozenset(Counter(x[0] for x in lay).items()) for lay in v)) for k, v in LAYOUTS.items())


def feasible(model, counter):
    return frozenset((k, v) for k, v in counter.items() if v) in FEASIBLE[model.key]


@st.composite
def model_and_request(draw):
    model = draw(st.sampled_from(MIG_MODELS))
    counts = dict((p.name, draw(st.integers(0, min(p.max_count, 4)))) for p in model.mig_profiles)
    return model, Counter(dict((k, v) for k, v in counts.items() if v))


def check_layout(model, placed, counter):
    assert Counter(p.profile for p in placed) == counter
    mask = 0
    for p in placed:
        prof = model.profile(p.profile)
        assert p.start in prof.starts and p.size == prof.size
        assert not mask & bits(p.start, p.size), "overlap in %r" % (placed,)
        mask |= bits(p.start, p.size)


@SETTINGS
@given(model_and_request())
def test_solve_accepts_exactly_the_feasible_multisets(case):
    model, counter = case
    try:
        placed = mig_placement.solve(model, dict(counter))
    except mig_placement.PlacementError:
        assert not feasible(model, counter), "solver rejected a feasible request %r on %s" % (counter, model.key)
        return
    assert feasible(model, counter), "solver accepted an infeasible request %r on %s" % (counter, model.key)
    check_layout(model, placed, counter)
    assert placed == sorted(placed, key=lambda p: (p.start, p.profile))


def test_every_small_multiset_exhaustively_on_a30_and_a100():
    """Full enumeration (not sampled) for one 4-slice and one 8-slice model."""
    for key in ("A30", "A100-80GB"):
        model = [m for m in MIG_MODELS if m.key == key][0]
        ranges = [range(0, min(p.max_count, 3) + 1) for p in model.mig_profiles]
        for counts in product(*ranges):
            counter = Counter(dict((p.name, n) for p, n in zip(model.mig_profiles, counts) if n))
            ok = mig_placement.fits(model, dict(counter))
            assert ok == feasible(model, counter), (key, counter)


@st.composite
def model_current_request(draw):
    model = draw(st.sampled_from(MIG_MODELS))
    current = list(draw(st.sampled_from(LAYOUTS[model.key])))
    counts = dict((p.name, draw(st.integers(0, min(p.max_count, 3)))) for p in model.mig_profiles)
    return model, current, Counter(dict((k, v) for k, v in counts.items() if v))


def best_keep(model, current, counter):
    """Brute force: the most current instances any feasible layout of ``counter`` keeps in place."""
    best = -1
    for lay in LAYOUTS[model.key]:
        if Counter(x[0] for x in lay) != counter:
            continue
        best = max(best, len(set(lay) & set(current)))
    return best


@SETTINGS
@given(model_current_request())
def test_solve_with_current_keeps_the_maximum(case):
    model, current, counter = case
    cur = [mig_placement.Placed(*c) for c in current]
    expected = best_keep(model, current, counter)
    try:
        placed = mig_placement.solve(model, dict(counter), current=cur)
    except mig_placement.PlacementError:
        assert expected == -1
        return
    assert expected >= 0
    check_layout(model, placed, counter)
    kept = len(set((p.profile, p.start, p.size) for p in placed) & set(current))
    assert kept == expected, "kept %d of %r, brute force keeps %d (want %r)" % (kept, current, expected, counter)


@SETTINGS
@given(model_current_request())
def test_solve_is_deterministic(case):
    model, current, counter = case
    cur = [mig_placement.Placed(*c) for c in current]
    try:
        first = mig_placement.solve(model, dict(counter), current=cur)
    except mig_placement.PlacementError as exc:
        first = str(exc)
    for _unused in range(2):
        try:
            again = mig_placement.solve(model, list(counter.elements()), current=list(reversed(cur)))
        except mig_placement.PlacementError as exc:
            again = str(exc)
        assert again == first


@SETTINGS
@given(st.sampled_from(MIG_MODELS).flatmap(lambda m: st.tuples(st.just(m), st.sampled_from(LAYOUTS[m.key]))))
def test_capacity_and_placements_match_brute_force(case):
    model, layout = case
    placed = [mig_placement.Placed(*x) for x in layout]
    for prof in model.mig_profiles:
        starts = [p.start for p in mig_placement.possible_placements(model, placed, prof.name)]
        free = [s for s in prof.starts if not mig_placement.occupied_mask(placed) & bits(s, prof.size)]
        assert starts == free
        # capacity = how many more can be added, by brute force over layouts extending this one
        more = max(len(lay) - len(layout) for lay in LAYOUTS[model.key]
                   if set(layout) <= set(lay) and all(x[0] == prof.name for x in set(lay) - set(layout)))
        assert mig_placement.remaining_capacity(model, placed, prof.name) == more


def test_unknown_profile_and_non_mig_errors():
    model = [m for m in MIG_MODELS if m.key == "A100-80GB"][0]
    try:
        mig_placement.solve(model, ["5g.50gb"])
    except mig_placement.PlacementError as exc:
        assert "3g.40gb" in str(exc)
    else:
        raise AssertionError("unknown profile accepted")
    t4 = [m for m in GPU_MODELS if m.key == "T4"][0]
    try:
        mig_placement.solve(t4, ["1g.10gb"])
    except mig_placement.PlacementError as exc:
        assert "does not support MIG" in str(exc)
    else:
        raise AssertionError("non-MIG GPU accepted")


@pytest.mark.parametrize("key,wanted,reason", [
    ("A100-40GB", {"1g.10gb": 4, "1g.5gb": 1},
     "NVIDIA A100 40GB cannot hold 4 x 1g.10gb, 1 x 1g.5gb: needs 9 memory slices (4 x 1g.10gb: 2 each, "
     "1g.5gb: 1), NVIDIA A100 40GB has 8"),
    ("A100-40GB", {"1g.5gb+me": 2}, "1g.5gb+me can be used once per GPU (NVIDIA A100 40GB), 2 wanted"),
    ("A100-80GB", {"1g.20gb": 5}, "1g.20gb can be used at most 4 times per GPU (NVIDIA A100 80GB), 5 wanted"),
    ("A30", {"2g.12gb": 3}, "2g.12gb can be used twice per GPU (NVIDIA A30), 3 wanted"),
    ("A100-80GB", {"4g.40gb": 1, "1g.10gb": 4},
     "needs 8 compute slices (4g.40gb: 4, 4 x 1g.10gb: 1 each), NVIDIA A100 80GB has 7"),
    ("A100-80GB", {"3g.40gb": 1, "1g.10gb": 4}, None),
])
def test_why_not_gives_the_exact_reason(key, wanted, reason):
    model = [m for m in MIG_MODELS if m.key == key][0]
    got = mig_placement.why_not(model, wanted)
    if reason is None:
        assert got is None
    else:
        assert reason in got
