import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu import catalog as cat


@pytest.mark.parametrize("name,key", [
    ("NVIDIA A100 80GB", "A100-80GB"), ("A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
    ("A100 40GB", "A100-40GB"), ("NVIDIA A30", "A30"), ("NVIDIA H100 80GB HBM3", "H100-80GB"),
    ("H100-SXM5-80GB", "H100-80GB"), ("NVIDIA H100 PCIe", "H100-80GB"), ("NVIDIA H100 NVL", "H100-94GB-NVL"),
    ("NVIDIA H200", "H200-141GB"), ("NVIDIA H200 NVL", "H200-141GB"), ("NVIDIA B200", "B200"),
    ("NVIDIA RTX 6000", "QUADRO-RTX-6000"), ("Quadro RTX 6000", "QUADRO-RTX-6000"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-ADA"), ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"),
    ("NVIDIA A10", "A10"), ("Tesla T4", "T4"), ("Tesla V100-SXM2-32GB", "V100-32GB"),
    # PCI device ids in the forms lspci, sysfs and mig-parted use
    ("0x20B2", "A100-80GB"), ("10de:2330", "H100-80GB"), ("0x233010DE", "H100-80GB"), ("0x20B710DE", "A30"),
    # the bare form _pci_device_id's docstring promises, and names that look like hex stay names
    ("20b2", "A100-80GB"), ("20B7", "A30"), ("B200", "B200"), ("b200", "B200"),
    ("NVIDIA GH200 480GB", "GH200-96GB"), ("NVIDIA GH200 120GB", "GH200-96GB"), ("GH200", "GH200-96GB"),
    ("0x2342", "GH200-96GB"), ("0x234210DE", "GH200-96GB"), ("0x233B10DE", "H200-141GB"),
])
def test_resolve_model_names_and_ids(name, key):
    assert cat.resolve_model(name).key == key


def test_ambiguous_name_lists_candidates():
    with pytest.raises(cat.UnknownGpuModel) as exc:
        cat.resolve_model("NVIDIA A100")
    assert {m.key for m in exc.value.candidates} == {"A100-40GB", "A100-80GB"}
    assert "add the memory size" in str(exc.value)


@pytest.mark.parametrize("name", ["GH200 144GB", "NVIDIA A100 96GB", "0x9999", "9999", "", "Radeon MI300X"])
def test_unknown_models_are_refused(name):
    with pytest.raises(cat.UnknownGpuModel):
        cat.resolve_model(name)


# Reference tables (shared/reference/gpu-partitioning.md, section 2): name -> (real id, size, starts, max)
EIGHT_SLICE_GEOMETRY = [
    (0, 19, 1, (0, 1, 2, 3, 4, 5, 6), 7), (7, 20, 1, (0, 1, 2, 3, 4, 5, 6), 1), (9, 15, 2, (0, 2, 4, 6), 4),
    (1, 14, 2, (0, 2, 4), 3), (2, 9, 4, (0, 4), 2), (3, 5, 4, (0,), 1), (4, 0, 8, (0,), 1),
]
EIGHT_SLICE_NAMES = {
    "A100-40GB": ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
    "A100-80GB": ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H100-80GB": ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H100-94GB-NVL": ["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"],
    "H200-141GB": ["1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"],
    "B200": ["1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"],
    # MIG user guide, "H100 96GB product (H100 on GH200)"
    "GH200-96GB": ["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"],
}


@pytest.mark.parametrize("key", sorted(EIGHT_SLICE_NAMES))
def test_eight_slice_models_match_reference_tables(key):
    model = cat.MODELS_BY_KEY[key]
    assert model.memory_slices == 8 and model.mig_capable
    for name, (index, real_id, size, starts, max_count) in zip(EIGHT_SLICE_NAMES[key], EIGHT_SLICE_GEOMETRY):
        prof = model.profile(name)
        assert prof is not None, name
        assert (prof.nvml_index, prof.profile_id, prof.size, prof.starts, prof.max_count) == \
            (index, real_id, size, starts, max_count), name
    assert len(model.mig_profiles) == 7


def test_a30_matches_reference_table():
    model = cat.MODELS_BY_KEY["A30"]
    got = [(p.name, p.nvml_index, p.profile_id, p.size, p.starts, p.max_count) for p in model.mig_profiles]
    assert got == [
        ("1g.6gb", 0, 14, 1, (0, 1, 2, 3), 4), ("1g.6gb+me", 7, 21, 1, (0, 1, 2, 3), 1),
        ("2g.12gb", 1, 5, 2, (0, 2), 2), ("2g.12gb+me", 8, 6, 2, (0, 2), 1), ("4g.24gb", 3, 0, 4, (0,), 1),
    ]
    assert model.memory_slices == 4


def test_h100_values_are_the_real_lgip_values():
    model = cat.MODELS_BY_KEY["H100-80GB"]
    order = ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    assert [model.profile(n).multiprocessors for n in order] == [16, 16, 26, 32, 60, 64, 132]
    assert [model.profile(n).copy_engines for n in order] == [1, 1, 1, 2, 3, 4, 8]
    gib = [round(model.profile(n).memory_mb / 1024.0, 2) for n in order]
    assert gib == [9.75, 9.75, 19.62, 19.62, 39.5, 39.5, 79.25]


@pytest.mark.parametrize("model", [m for m in cat.GPU_MODELS if m.mig_capable], ids=lambda m: m.key)
def test_names_follow_from_memory_like_nvidia_tools_derive_them(model):
    """go-nvlib names a MIG device from NVML's memory values: our values must give our names."""
    for prof in model.mig_profiles:
        suffix = "+me" if prof.name.endswith("+me") else ""
        assert cat.mig_profile_name_from_memory(prof.compute_slices, prof.compute_slices, prof.memory_mb,
                                                model.total_memory_mb, suffix) == prof.name
        # the one-slice memory must stay within an eighth of the card (the mock's H200/B200 trap)
        assert prof.memory_mb <= model.total_memory_mb * prof.size / model.memory_slices


def test_compute_instance_shapes():
    a100 = cat.MODELS_BY_KEY["A100-40GB"]
    h100 = cat.MODELS_BY_KEY["H100-80GB"]
    assert [(c.compute_slices, c.max_count) for c in a100.ci_profiles(a100.profile("7g.40gb"))] == \
        [(1, 7), (2, 3), (3, 2), (4, 1), (7, 1)]
    assert [c.compute_slices for c in h100.ci_profiles(h100.profile("7g.80gb"))] == [1, 2, 3, 7]
    assert [(c.compute_slices, c.max_count) for c in a100.ci_profiles(a100.profile("4g.20gb"))] == \
        [(1, 4), (2, 2), (4, 1)]
    # -C on a 1g.20gb GI creates CI profile 7 (1_SLICE_REV1), observed on real hardware
    assert [c.nvml_index for c in h100.ci_profiles(h100.profile("1g.20gb"))] == [7]


@pytest.mark.parametrize("text,expected", [
    ("1c.2g.10gb", ("2g.10gb", 1)), ("3g.40gb", ("3g.40gb", None)), ("1g.10gb+me", ("1g.10gb+me", None)),
    ("7g.80gb", ("7g.80gb", None)),
])
def test_parse_mig_device_name(text, expected):
    assert cat.parse_mig_device_name(text) == expected


@pytest.mark.parametrize("text", ["1g", "g.10gb", "1x.2g.10gb", "2g.10gb+gfx"])
def test_parse_mig_device_name_rejects(text):
    with pytest.raises(ValueError):
        cat.parse_mig_device_name(text)


def test_non_mig_gpus_have_no_profiles_and_models_with_profile():
    assert not cat.MODELS_BY_KEY["L40S"].mig_capable
    assert [m.key for m in cat.models_with_profile("1g.5gb")] == ["A100-40GB"]
    assert {m.key for m in cat.models_with_profile("1g.10gb")} == {"A100-40GB", "A100-80GB", "H100-80GB"}


def test_unknown_ids_and_names_list_what_is_known():
    with pytest.raises(cat.UnknownGpuModel) as exc:
        cat.resolve_model("0x9999")
    assert "no GPU model in the catalog has PCI device id 0x9999" in str(exc.value)
    assert "0x2342 (NVIDIA GH200 480GB)" in str(exc.value) and "0x233b (NVIDIA H200 NVL)" in str(exc.value)
    with pytest.raises(cat.UnknownGpuModel) as exc:
        cat.resolve_model("9999")  # a bare hex word that is no id falls through to names, and fails there
    assert "unknown GPU model '9999'; known models: NVIDIA A100 40GB" in str(exc.value)
    with pytest.raises(cat.UnknownGpuModel) as exc:
        cat.resolve_model(None)
    assert "known models:" in str(exc.value)


def test_gh200_values_are_the_real_lgip_values():
    model = cat.MODELS_BY_KEY["GH200-96GB"]
    order = ["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"]
    # nvidia-smi mig -lgip on a GH200 480GB (driver 570): ids, GiB, SMs, copy engines
    assert [model.profile(n).profile_id for n in order] == [19, 20, 15, 14, 9, 5, 0]
    assert [round(model.profile(n).memory_mb / 1024.0, 2) for n in order] == [11.0, 11.0, 23.0, 23.0, 46.5, 46.5, 93.0]
    assert [model.profile(n).multiprocessors for n in order] == [16, 16, 26, 32, 60, 64, 132]
    assert [model.profile(n).copy_engines for n in order] == [1, 1, 1, 2, 3, 4, 8]
    assert (model.total_memory_mb, model.pci_device_ids, model.architecture) == (97871, ("0x2342",), "hopper")


@pytest.mark.parametrize("text,dev_id,name", [
    ("NVIDIA H200 NVL", "0x233b", "NVIDIA H200 NVL"), ("H200 NVL", "0x233b", "NVIDIA H200 NVL"),
    ("0x233B", "0x233b", "NVIDIA H200 NVL"), ("NVIDIA H200", "0x2335", "NVIDIA H200"),
    ("H200-141GB", "0x2335", "NVIDIA H200"), ("10de:2335", "0x2335", "NVIDIA H200"),
])
def test_variants_keep_their_own_pci_id_and_name(text, dev_id, name):
    model = cat.resolve_model(text) if text != "H200-141GB" else cat.MODELS_BY_KEY[text]
    assert model.key == "H200-141GB"
    assert cat.device_id_for(text, model) == dev_id
    assert cat.device_name(model, dev_id) == name
