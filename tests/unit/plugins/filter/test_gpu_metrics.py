"""Filters gpu_assignment_textfile, dcgm_counters_csv, dcgm_exporter_env (plugins/filter/gpu_metrics.py)."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aihow.hyperscaler.plugins.filter import gpu_metrics

REAL = [{"kind": "whole", "gpu_id": "GPU-1", "pci_address": "0000:66:00.0", "model": "NVIDIA H100 80GB HBM3",
         "simulated": False, "device_file": "/dev/nvidia0"}]


def test_filters_are_registered():
    assert set(gpu_metrics.FilterModule().filters()) == {"gpu_assignment_textfile", "dcgm_counters_csv",
                                                         "dcgm_exporter_env"}


def test_textfile_and_dcgm():
    assert 'kind="whole"' in gpu_metrics.gpu_assignment_textfile(REAL, "lab", "n1", "lab-n1")
    assert "DCGM_FI_DEV_GPU_UTIL, gauge," in gpu_metrics.dcgm_counters_csv(REAL)
    assert 'DCGM_EXPORTER_LISTEN=":9400"' in gpu_metrics.dcgm_exporter_env(REAL, ":9400", "/x.csv")
    assert gpu_metrics.gpu_assignment_textfile(None, "lab", "n1", "lab-n1").endswith(" 0\n")


@pytest.mark.parametrize("bad", ["GPU-0", [1], {"kind": "mig"}])
def test_bad_input_is_a_filter_error(bad):
    with pytest.raises(AnsibleFilterError):
        gpu_metrics.gpu_assignment_textfile(bad, "lab", "n1", "lab-n1")


def test_unknown_kind_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="kind"):
        gpu_metrics.gpu_assignment_textfile([{"kind": "vgpu"}], "lab", "n1", "lab-n1")
