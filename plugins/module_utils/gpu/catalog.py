# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""What each GPU model offers: MIG profiles, memory slices, placements, ids.

Sources (see docs/gpu-catalog.md): the NVIDIA MIG user guide (profile names and
counts), real ``nvidia-smi mig -lgip/-lgipp`` output (profile ids, placements,
H100 SM/memory values), NVIDIA/mig-parted (PCI device ids), NVIDIA/go-nvml mock
tables (memory and SMs where no real capture was available). Memory values are
chosen within what the driver reports so that go-nvlib's naming formula
(:func:`mig_profile_name_from_memory`) reproduces each profile's name; a unit
test checks that for every model.

Placements are counted in memory slices (8 on A100/H100/H200/B200, 4 on A30):
a GPU instance of a profile occupies ``size`` consecutive memory slices starting
at one of the profile's allowed ``starts``, and instances may not overlap.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
from collections import namedtuple

# NVML constants (nvml.h / pynvml), duplicated here so the catalog has no pynvml dependency.
NVML_GI_PROFILE = {
    "1_SLICE": 0, "2_SLICE": 1, "3_SLICE": 2, "4_SLICE": 3, "7_SLICE": 4, "8_SLICE": 5,
    "6_SLICE": 6, "1_SLICE_REV1": 7, "2_SLICE_REV1": 8, "1_SLICE_REV2": 9,
}
NVML_GI_PROFILE_COUNT = 0x12
NVML_CI_PROFILE = {"1_SLICE": 0, "2_SLICE": 1, "3_SLICE": 2, "4_SLICE": 3, "7_SLICE": 4,
                   "8_SLICE": 5, "6_SLICE": 6, "1_SLICE_REV1": 7}
NVML_CI_PROFILE_COUNT = 9
NVIDIA_VENDOR_ID = 0x10DE

MigProfile = namedtuple("MigProfile", [
    "name",            # e.g. "1g.10gb", "1g.10gb+me"
    "nvml_index",      # NVML_GPU_INSTANCE_PROFILE_* value (what nvmlDeviceGetGpuInstanceProfileInfo takes)
    "profile_id",      # the driver's real profile id (nvidia-smi -lgip "ID"; info.id)
    "compute_slices",  # g
    "size",            # memory slices occupied by one instance
    "starts",          # allowed placement starts (memory slice index)
    "max_count",       # instances per GPU
    "memory_mb",
    "multiprocessors",
    "copy_engines",
])

CiProfile = namedtuple("CiProfile", ["compute_slices", "nvml_index", "max_count", "starts"])


class GpuModel(namedtuple("GpuModel", [
        "key", "name", "family", "memory_gb", "variant", "architecture", "pci_device_ids",
        "total_memory_mb", "memory_slices", "mig_profiles", "slurm_type", "aliases", "device_names"])):
    """One GPU model. ``mig_profiles`` is empty for GPUs without MIG.

    ``device_names`` maps a PCI device id to the driver's name for it where that differs from
    ``name``: variants with the same MIG geometry share one model (an H200 NVL is an H200 here)
    but keep their own id and name.
    """

    __slots__ = ()

    @property
    def mig_capable(self):
        return bool(self.mig_profiles)

    def profile(self, name):
        """The MigProfile called ``name`` (exact, case-insensitive), or None."""
        wanted = name.strip().lower()
        for prof in self.mig_profiles:
            if prof.name == wanted:
                return prof
        return None

    def profile_names(self):
        return [p.name for p in self.mig_profiles]

    def profile_by_id(self, profile_id):
        for prof in self.mig_profiles:
            if prof.profile_id == profile_id:
                return prof
        return None

    def profile_by_nvml_index(self, index):
        for prof in self.mig_profiles:
            if prof.nvml_index == index:
                return prof
        return None

    def smallest_profile(self):
        """The plain one-slice profile (no +me): what a bare slice count means."""
        plain = [p for p in self.mig_profiles if "+" not in p.name]
        return min(plain, key=lambda p: (p.size, p.memory_mb)) if plain else None

    def ci_profiles(self, gi_profile):
        """Compute-instance shapes inside a GI of ``gi_profile`` (go-nvlib's validity rule)."""
        g = gi_profile.compute_slices
        shapes = []
        for c in range(1, g + 1):
            # go-nvlib VisitMigProfiles: C <= G and not (C < G and 2C > G+1)
            if c < g and 2 * c > g + 1:
                continue
            # Hopper/Blackwell 7g GIs offer no 4c compute instance (driver profile list).
            if g == 7 and c == 4 and self.architecture in ("hopper", "blackwell"):
                continue
            if c == g and gi_profile.nvml_index == NVML_GI_PROFILE["1_SLICE_REV2"]:
                index = NVML_CI_PROFILE["1_SLICE_REV1"]  # observed: -C on a 1g.20gb GI creates CI profile 7
            else:
                index = NVML_CI_PROFILE["%d_SLICE" % c]
            shapes.append(CiProfile(c, index, g // c, tuple(range(0, g - c + 1, c))[:g // c]))
        return shapes


def _eight_slice_profiles(names, mem, sms, ces):
    """Profiles of an 8-memory-slice GPU (A100, H100, H200, B200).

    names: 1g, 1g.REV2, 2g, 3g, 4g, 7g base names; mem: MiB of 1g, 2g(=1g.REV2), 3g(=4g), 7g;
    sms: SMs of 1g, 1g.REV2, 2g, 3g, 4g, 7g; ces: copy engines likewise.
    Ids and placements are the real -lgip/-lgipp values (identical on A100 and H100).
    """
    one, one_rev2, two, three, four, seven = names
    m1, m2, m4, m8 = mem
    return (
        MigProfile(one, 0, 19, 1, 1, (0, 1, 2, 3, 4, 5, 6), 7, m1, sms[0], ces[0]),
        MigProfile(one + "+me", 7, 20, 1, 1, (0, 1, 2, 3, 4, 5, 6), 1, m1, sms[0], ces[0]),
        MigProfile(one_rev2, 9, 15, 1, 2, (0, 2, 4, 6), 4, m2, sms[1], ces[1]),
        MigProfile(two, 1, 14, 2, 2, (0, 2, 4), 3, m2, sms[2], ces[2]),
        MigProfile(three, 2, 9, 3, 4, (0, 4), 2, m4, sms[3], ces[3]),
        MigProfile(four, 3, 5, 4, 4, (0,), 1, m4, sms[4], ces[4]),
        MigProfile(seven, 4, 0, 7, 8, (0,), 1, m8, sms[5], ces[5]),
    )


_A100_SMS = (14, 14, 28, 42, 56, 98)
_A100_CES = (1, 1, 2, 3, 4, 7)
_HOPPER_SMS = (16, 26, 32, 60, 64, 132)       # real H100-80GB -lgip
_HOPPER_CES = (1, 1, 2, 3, 4, 8)
_B200_SMS = (18, 18, 36, 54, 72, 126)          # go-nvml mock: 18 SMs per slice

_A30_PROFILES = (
    MigProfile("1g.6gb", 0, 14, 1, 1, (0, 1, 2, 3), 4, 5949, 14, 1),
    MigProfile("1g.6gb+me", 7, 21, 1, 1, (0, 1, 2, 3), 1, 5949, 14, 1),
    MigProfile("2g.12gb", 1, 5, 2, 2, (0, 2), 2, 11971, 28, 2),
    MigProfile("2g.12gb+me", 8, 6, 2, 2, (0, 2), 1, 11971, 28, 2),
    MigProfile("4g.24gb", 3, 0, 4, 4, (0,), 1, 24002, 56, 4),
)


def _model(key, name, family, memory_gb, arch, ids, total_mb, slices, profiles, slurm_type,
           variant=None, aliases=(), device_names=None):
    return GpuModel(key, name, family, memory_gb, variant, arch, tuple(i.lower() for i in ids),
                    total_mb, slices, profiles, slurm_type, tuple(aliases),
                    dict((k.lower(), v) for k, v in (device_names or {}).items()))


GPU_MODELS = (
    _model("A100-40GB", "NVIDIA A100 40GB", "a100", 40, "ampere",
           ("0x20b0", "0x20b1", "0x20f1", "0x20f6"), 40960, 8,
           _eight_slice_profiles(("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
                                 (4864, 9856, 19968, 40192), _A100_SMS, _A100_CES), "a100"),
    _model("A100-80GB", "NVIDIA A100 80GB", "a100", 80, "ampere", ("0x20b2", "0x20b5"), 81920, 8,
           _eight_slice_profiles(("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                                 (9856, 19968, 40192, 80384), _A100_SMS, _A100_CES), "a100"),
    _model("A30", "NVIDIA A30", "a30", 24, "ampere", ("0x20b7",), 24576, 4, _A30_PROFILES, "a30"),
    _model("H100-80GB", "NVIDIA H100 80GB", "h100", 80, "hopper",
           ("0x2330", "0x2331", "0x2322", "0x2324"), 81559, 8,
           _eight_slice_profiles(("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                                 (9984, 20096, 40448, 81152), _HOPPER_SMS, _HOPPER_CES), "h100"),
    _model("H100-94GB-NVL", "NVIDIA H100 NVL", "h100", 94, "hopper", ("0x2321", "0x233a"), 95830, 8,
           _eight_slice_profiles(("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
                                 (11776, 23808, 47872, 95232), _HOPPER_SMS, _HOPPER_CES), "h100nvl",
           variant="nvl"),
    # H200 SXM (0x2335) and H200 NVL (0x233b): same profiles and 143771 MiB (mig-parted lists both
    # ids under one entry; real nvidia-smi of an H200 NVL shows 143771MiB).
    _model("H200-141GB", "NVIDIA H200", "h200", 141, "hopper", ("0x2335", "0x233b"), 143771, 8,
           _eight_slice_profiles(("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
                                 (16384, 32768, 71424, 139776), _HOPPER_SMS, _HOPPER_CES), "h200",
           aliases=("h200 nvl",), device_names={"0x233b": "NVIDIA H200 NVL"}),
    # GH200 with 96 GB HBM3 ("480GB"/"120GB" is the Grace CPU's LPDDR5X): the MIG user guide's
    # "H100 96GB (H100 on GH200)" profile table; ids, memory and SMs from real -lgip output of a
    # GH200 480GB (97871 MiB); PCI id 0x2342 from mig-parted's config (GH200 filter) and lspci.
    _model("GH200-96GB", "NVIDIA GH200 480GB", "gh200", 96, "hopper", ("0x2342",), 97871, 8,
           _eight_slice_profiles(("1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
                                 (11264, 23552, 47616, 95232), _HOPPER_SMS, _HOPPER_CES), "gh200",
           aliases=("gh200 120gb", "gh200 96gb")),
    _model("B200", "NVIDIA B200", "b200", 180, "blackwell", ("0x2901",), 183359, 8,
           _eight_slice_profiles(("1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
                                 (22528, 45056, 90624, 180736), _B200_SMS, _HOPPER_CES), "b200"),
    # GPUs without MIG: whole-GPU passthrough (and vGPU time-slicing) only.
    _model("V100-16GB", "Tesla V100 16GB", "v100", 16, "volta", ("0x1db1", "0x1db4"), 16384, 0, (), "v100"),
    _model("V100-32GB", "Tesla V100 32GB", "v100", 32, "volta", ("0x1db5", "0x1db6"), 32768, 0, (), "v100"),
    _model("T4", "Tesla T4", "t4", 16, "turing", ("0x1eb8",), 15360, 0, (), "t4"),
    _model("QUADRO-RTX-6000", "Quadro RTX 6000", "rtx6000", 24, "turing", ("0x1e30",), 24576, 0, (),
           "rtx6000", aliases=("quadro rtx 6000", "rtx 6000")),
    _model("RTX-A6000", "NVIDIA RTX A6000", "rtxa6000", 48, "ampere", ("0x2230",), 49140, 0, (), "rtxa6000",
           aliases=("rtx a6000", "a6000")),
    _model("RTX-6000-ADA", "NVIDIA RTX 6000 Ada Generation", "rtx6000ada", 48, "ada", ("0x26b1",), 49140,
           0, (), "rtx6000ada", aliases=("rtx 6000 ada", "rtx 6000 ada generation")),
    _model("A10", "NVIDIA A10", "a10", 24, "ampere", ("0x2236",), 23028, 0, (), "a10"),
    _model("A40", "NVIDIA A40", "a40", 48, "ampere", ("0x2235",), 46068, 0, (), "a40"),
    _model("L4", "NVIDIA L4", "l4", 24, "ada", ("0x27b8",), 23034, 0, (), "l4"),
    _model("L40", "NVIDIA L40", "l40", 48, "ada", ("0x26b5",), 46068, 0, (), "l40"),
    _model("L40S", "NVIDIA L40S", "l40s", 48, "ada", ("0x26b9",), 46068, 0, (), "l40s"),
)

MODELS_BY_KEY = dict((m.key, m) for m in GPU_MODELS)

# Words in marketing and driver names that say nothing about MIG geometry.
_NOISE_WORDS = {"nvidia", "tesla", "sxm", "sxm2", "sxm4", "sxm5", "pcie", "pci", "e", "hbm2", "hbm2e",
                "hbm3", "hbm3e", "generation", "gpu", "graphics", "datacenter"}


class UnknownGpuModel(ValueError):
    """The name or id matches no catalog model, or several (``candidates``)."""

    def __init__(self, msg, candidates=()):
        super(UnknownGpuModel, self).__init__(msg)
        self.candidates = tuple(candidates)


def _normalise(name):
    text = name.lower().replace("_", " ")
    text = re.sub(r"(\d+)\s*gb\b", r" \1gb ", text)
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return [t for t in text.split() if t not in _NOISE_WORDS]


def _pci_device_id(text):
    """Device id from '0x20B2', '10de:20b2', '20b2' or mig-parted's '0x20B210DE' (else None)."""
    t = text.strip().lower()
    m = re.match(r"^(?:0x)?([0-9a-f]{4})10de$", t) or re.match(r"^(?:0x)?10de:([0-9a-f]{4})$", t) \
        or re.match(r"^(?:0x)?([0-9a-f]{4})$", t)
    return "0x" + m.group(1) if m else None


def _bare_hex(text):
    """A bare 4-digit hex word ('20b2'): also a possible model name ('B200'), so only a hint."""
    return re.match(r"^[0-9a-f]{4}$", text.strip().lower()) is not None


def _model_by_id(dev_id):
    for model in GPU_MODELS:
        if dev_id in model.pci_device_ids:
            return model
    return None


def resolve_model(name_or_id):
    """The GpuModel for a marketing name, a driver name or a PCI device id.

    Accepts e.g. "NVIDIA A100 80GB", "A100-SXM4-80GB", "NVIDIA H100 NVL", "0x20B2",
    "10de:20b2", "0x20B210DE". Raises UnknownGpuModel (with candidates when ambiguous).
    """
    if not isinstance(name_or_id, str) or not name_or_id.strip():
        raise UnknownGpuModel("GPU model must be a non-empty string, not %r; known models: %s"
                              % (name_or_id, known_models_text()))
    dev_id = _pci_device_id(name_or_id)
    if dev_id:
        model = _model_by_id(dev_id)
        if model is not None:
            return model
        if not _bare_hex(name_or_id):
            raise UnknownGpuModel("no GPU model in the catalog has PCI device id %s; known ids: %s"
                                  % (dev_id, known_ids_text()))
        # '20b2' is an id, but 'b200' is a name: an unknown bare hex word goes on as a name.

    tokens = _normalise(name_or_id)
    joined = " ".join(tokens)
    for model in GPU_MODELS:
        if joined in model.aliases or joined == " ".join(_normalise(model.name)):
            return model
    memory = [int(t[:-2]) for t in tokens if re.match(r"^\d+gb$", t)]
    words = set(t for t in tokens if not re.match(r"^\d+gb$", t))
    # Family tokens may be split ("rtx 6000") or joined ("rtx6000"); match on the joined form too.
    squashed = "".join(t for t in tokens if not re.match(r"^\d+gb$", t))
    name_variant = "nvl" if "nvl" in words else None
    candidates = []
    for model in GPU_MODELS:
        if model.family not in words and model.family != squashed:
            continue
        if memory and model.memory_gb not in memory:
            continue
        if model.variant != name_variant:
            continue
        candidates.append(model)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UnknownGpuModel("unknown GPU model %r; known models: %s" % (name_or_id, known_models_text()))
    raise UnknownGpuModel("GPU model %r is ambiguous: it could be %s; add the memory size"
                          % (name_or_id, " or ".join(m.name for m in candidates)), candidates)


def known_models_text():
    return ", ".join(m.name for m in GPU_MODELS)


def known_ids_text():
    return ", ".join("%s (%s)" % (i, m.device_names.get(i, m.name)) for m in GPU_MODELS for i in m.pci_device_ids)


def device_id_for(name_or_id, model):
    """The PCI device id a name or id denotes within ``model`` (its variant's id), else the first one.

    '0x233b' and 'NVIDIA H200 NVL' give 0x233b; 'NVIDIA H200' and the key 'H200-141GB' give 0x2335.
    """
    text = str(name_or_id)
    dev_id = _pci_device_id(text)
    if dev_id in model.pci_device_ids:
        return dev_id
    joined = " ".join(_normalise(text))
    for dev, name in sorted(model.device_names.items()):
        if joined == " ".join(_normalise(name)):
            return dev
    return model.pci_device_ids[0]


def device_name(model, device_id):
    """The driver's name for a device id of ``model`` (the model's name unless the variant has its own)."""
    return model.device_names.get(device_id, model.name)


def models_with_profile(profile_name):
    """Catalog models that offer a MIG profile of that name (for 'did you mean' messages)."""
    return [m for m in GPU_MODELS if m.profile(profile_name) is not None]


def _round_half_up(value):
    return int(math.floor(value + 0.5))  # Go's math.Round, which go-nvlib uses


def mig_profile_name_from_memory(compute_slices, gi_compute_slices, memory_mb, total_memory_mb, suffix=""):
    """The profile name NVIDIA's tools derive from NVML values (go-nvlib NewMigProfile).

    GB = round(ceil(migMB*2^20/totalBytes*8)/8 * ceil(totalBytes/2^30)); "Cc.Gg.Ngb" when C != G.
    """
    total_bytes = total_memory_mb * 2 ** 20
    eighths = math.ceil(memory_mb * 2 ** 20 / float(total_bytes) * 8)
    gb = _round_half_up(eighths / 8.0 * math.ceil(total_bytes / float(2 ** 30)))
    base = "%dg.%dgb" % (gi_compute_slices, gb)
    if compute_slices != gi_compute_slices:
        base = "%dc.%s" % (compute_slices, base)
    return base + suffix


_MIG_DEVICE_RE = re.compile(r"^(?:(?P<c>\d+)c\.)?(?P<g>\d+)g\.(?P<gb>\d+)gb(?P<attr>\+me)?$")


def parse_mig_device_name(text):
    """Split a mig-parted device name ('1c.2g.20gb', '3g.40gb', '1g.10gb+me').

    Returns (gi_profile_name, compute_slices or None) or raises ValueError.
    """
    m = _MIG_DEVICE_RE.match(text.strip().lower())
    if not m:
        raise ValueError("%r is not a MIG device name of the form [<C>c.]<G>g.<GB>gb[+me]" % text)
    gi_name = "%sg.%sgb%s" % (m.group("g"), m.group("gb"), m.group("attr") or "")
    c = int(m.group("c")) if m.group("c") else None
    return gi_name, c
