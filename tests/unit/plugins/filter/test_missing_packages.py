"""The dpkg-query gate of the HPC roles: which listed packages still need apt."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aihow.hyperscaler.plugins.filter.missing_packages import FilterModule, missing_packages

DPKG = ["munge ii ", "libmunge2 ii ", "slurmd rc ", "slurm-client iU "]


def test_installed_packages_are_not_missing():
    assert missing_packages(["munge", "libmunge2"], DPKG) == []


def test_removed_half_installed_and_unknown_packages_are_missing_in_order():
    assert missing_packages(["slurm-client", "munge", "slurmd", "nfs-common"], DPKG) == [
        "slurm-client", "slurmd", "nfs-common"]


def test_a_name_with_a_version_or_architecture_always_goes_to_apt():
    assert missing_packages(["munge=0.5.15-2", "munge:amd64"], DPKG) == ["munge=0.5.15-2", "munge:amd64"]


def test_no_dpkg_output_means_everything_is_missing():
    assert missing_packages(["munge"], None) == ["munge"]
    assert missing_packages(["munge"], []) == ["munge"]


def test_a_string_instead_of_a_list_is_refused():
    with pytest.raises(AnsibleFilterError, match="list of package names"):
        missing_packages("munge", DPKG)


def test_registered_under_its_name():
    assert FilterModule().filters()["missing_packages"] is missing_packages
