"""tests/integration/container_image_view.py's view of a venv: the image's exclusion globs mapped to this
machine's paths, and a tree of links without what they match (the training itself runs in mlops-native)."""
import os

import pytest

from helpers import load_script, load_yaml

view = load_script("container_image_view", "tests", "integration", "container_image_view.py")


def test_every_exclusion_of_the_role_maps_to_the_venv_or_the_standard_library():
    globs = load_yaml("roles", "container_runtime", "defaults", "main.yml")["container_runtime_image_exclude"]
    mapped = view.map_globs(globs, "/v/lib/python3.11/site-packages", "/std/lib/python3.11")
    assert len(mapped["site"]) + len(mapped["stdlib"]) == len(globs)
    assert "/v/lib/python3.11/site-packages/sklearn" in mapped["site"]
    assert "/std/lib/python3.11/test" in mapped["stdlib"]
    # SciPy stays in the image: MLflow's signature inference imports scipy.sparse.
    assert not any("scipy" in g for g in globs)


def test_an_exclusion_under_another_root_is_refused():
    with pytest.raises(ValueError, match="'/etc/ssl' is under neither"):
        view.map_globs(["/etc/ssl"], "/v/site", "/std")


def test_the_tree_links_every_file_but_the_excluded_ones(tmp_path):
    src = tmp_path / "site"
    for rel in ("torch/__init__.py", "torch/include/a.h", "torch/lib/x.so", "sklearn/__init__.py",
                "scikit_learn-1.dist-info/METADATA", "mlflow/models/utils.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    dest = tmp_path / "view"
    excluded = [str(src / "torch/include"), str(src / "sklearn"), str(src) + "/scikit_learn*"]
    assert view.link_tree(str(src), str(dest), excluded) == 3
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "mlflow/models/utils.py", "torch/__init__.py", "torch/lib/x.so"]
    assert os.readlink(dest / "torch/lib/x.so") == str(src / "torch/lib/x.so")
