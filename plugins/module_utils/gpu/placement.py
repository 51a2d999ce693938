# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Exact MIG placement: which memory slices each GPU instance occupies.

NVIDIA's mig-parted tries orderings and lets the driver choose placements; a
layout that adds up can still fail at apply time. Here placements are explicit:
:func:`solve` finds a placement for a multiset of profiles on one GPU or proves
none exists (complete depth-first search with memoised dead ends over at most
8 memory slices, so it is exact and takes microseconds), preferring layouts that
keep the instances already on the GPU where they are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import Counter, namedtuple
from itertools import combinations

Placed = namedtuple("Placed", ["profile", "start", "size"])


class PlacementError(ValueError):
    """The wanted profiles cannot be placed on the GPU; ``reason`` says why."""


def _mask(start, size):
    return ((1 << size) - 1) << start


def _profiles_for(model, wanted):
    """Validate names and counts; return a list of MigProfile, largest first."""
    counts = Counter(wanted) if not isinstance(wanted, dict) else Counter(
        dict((k, v) for k, v in wanted.items() if v))
    profiles = []
    for name, count in sorted(counts.items()):
        prof = model.profile(name)
        if prof is None:
            raise PlacementError("%s has no MIG profile %r (it has: %s)"
                                 % (model.name, name, ", ".join(model.profile_names()) or "none, no MIG"))
        if count < 0:
            raise PlacementError("count of %s must not be negative" % name)
        if count > prof.max_count:
            raise PlacementError("%s, %d wanted" % (max_count_text(model, prof), count))
        profiles.extend([prof] * count)
    # Most constrained first: large instances have the fewest starts.
    profiles.sort(key=lambda p: (-p.size, len(p.starts), p.name))
    return profiles


def _search(model, profiles, occupied):
    """Complete DFS. Returns a list of Placed for ``profiles`` avoiding ``occupied``, or None."""
    dead = set()

    def go(i, mask, last_start):
        if i == len(profiles):
            return []
        prof = profiles[i]
        # Equal profiles are interchangeable: place them in increasing start order only.
        floor = last_start if i > 0 and profiles[i - 1] is prof else -1
        key = (i, mask, floor)
        if key in dead:
            return None
        for start in prof.starts:
            if start <= floor:
                continue
            bits = _mask(start, prof.size)
            if mask & bits:
                continue
            rest = go(i + 1, mask | bits, start)
            if rest is not None:
                return [Placed(prof.name, start, prof.size)] + rest
        dead.add(key)
        return None

    return go(0, occupied, -1)


def times_text(n):
    return "once" if n == 1 else "twice" if n == 2 else "at most %d times" % n


def max_count_text(model, prof):
    """'1g.5gb+me can be used once per GPU (NVIDIA A100 40GB)': the per-GPU maximum, in words."""
    return "%s can be used %s per GPU (%s)" % (prof.name, times_text(prof.max_count), model.name)


def _demand_text(profiles, attr):
    """'4 x 1g.10gb: 2 each, 1g.5gb: 1' -- what each wanted profile contributes to a slice total."""
    counts = Counter(p.name for p in profiles)
    by_name = dict((p.name, p) for p in profiles)
    parts = []
    for name in sorted(counts, key=lambda n: (-getattr(by_name[n], attr), n)):
        per = getattr(by_name[name], attr)
        parts.append("%s: %d" % (name, per) if counts[name] == 1 else "%d x %s: %d each" % (counts[name], name, per))
    return ", ".join(parts)


def _explain(model, profiles):
    """The first rule the wanted multiset breaks, with the numbers (the counts were checked before)."""
    slices = sum(p.size for p in profiles)
    compute = sum(p.compute_slices for p in profiles)
    max_compute = max(p.compute_slices for p in model.mig_profiles)
    if compute > max_compute:
        return "needs %d compute slices (%s), %s has %d" % (
            compute, _demand_text(profiles, "compute_slices"), model.name, max_compute)
    if slices > model.memory_slices:
        return "needs %d memory slices (%s), %s has %d" % (
            slices, _demand_text(profiles, "size"), model.name, model.memory_slices)
    return ("the sizes add up but no arrangement fits the placement rules (%s)"
            % "; ".join("%s starts at %s" % (p.name, "/".join(str(s) for s in p.starts))
                        for p in sorted(set(profiles), key=lambda p: p.name)))


def why_not(model, wanted):
    """None when ``wanted`` fits on one empty GPU of ``model``, else the solver's reason (a sentence)."""
    try:
        solve(model, wanted)
        return None
    except PlacementError as exc:
        return str(exc)


def solve(model, wanted, current=()):
    """Place ``wanted`` (profile names, a list or a {name: count} map) on one GPU of ``model``.

    ``current`` is the existing layout (Placed or (profile, start) pairs). The result
    keeps as many current instances as possible in place (exactly: the largest
    subset of current instances that can stay is kept), places the rest, and is
    deterministic. Returns a list of Placed sorted by start. Raises PlacementError
    with the reason when no layout exists.
    """
    if not model.mig_capable:
        raise PlacementError("%s does not support MIG" % model.name)
    profiles = _profiles_for(model, wanted)
    if not profiles:
        return []
    current = [Placed(c[0], c[1], model.profile(c[0]).size if model.profile(c[0]) else 0)
               for c in current]
    # Candidate instances to keep: those whose profile is still wanted (at most its wanted count).
    wanted_count = Counter(p.name for p in profiles)
    keepable = [c for c in sorted(current, key=lambda c: (c.start, c.profile)) if wanted_count[c.profile]]
    for keep_n in range(len(keepable), -1, -1):
        for kept in combinations(keepable, keep_n):
            kept_count = Counter(k.profile for k in kept)
            if any(kept_count[n] > wanted_count[n] for n in kept_count):
                continue
            mask = 0
            clash = False
            for k in kept:
                bits = _mask(k.start, k.size)
                clash = clash or bool(mask & bits)
                mask |= bits
            if clash:
                continue
            rest = list(profiles)
            for k in kept:
                rest.remove(model.profile(k.profile))
            placed = _search(model, rest, mask)
            if placed is not None:
                return sorted(list(kept) + placed, key=lambda p: (p.start, p.profile))
    raise PlacementError("%s cannot hold %s: %s" % (
        model.name, ", ".join("%d x %s" % (n, name) for name, n in sorted(wanted_count.items())),
        _explain(model, profiles)))


def fits(model, wanted):
    """True when ``wanted`` can be placed on one empty GPU of ``model``."""
    try:
        solve(model, wanted)
        return True
    except PlacementError:
        return False


def occupied_mask(layout):
    mask = 0
    for placed in layout:
        mask |= _mask(placed.start, placed.size)
    return mask


def possible_placements(model, layout, profile_name):
    """Starts where one more ``profile_name`` instance fits next to ``layout`` (NVML PossiblePlacements)."""
    prof = model.profile(profile_name)
    mask = occupied_mask(layout)
    return [Placed(prof.name, s, prof.size) for s in prof.starts if not mask & _mask(s, prof.size)]


def remaining_capacity(model, layout, profile_name):
    """How many more ``profile_name`` instances can be created (NVML RemainingCapacity).

    Allowed starts of one profile are aligned to its size, so its free starts never
    overlap each other: the capacity is their count, capped by the per-GPU maximum.
    """
    prof = model.profile(profile_name)
    existing = sum(1 for p in layout if p.profile == prof.name)
    free = len(possible_placements(model, layout, profile_name))
    return max(0, min(free, prof.max_count - existing))
