"""Trains the digits model in the container image's view of a venv, natively, without building the image.

    VENV/bin/python tests/integration/container_image_view.py --venv VENV --work DIR

The training image (roles/container_runtime, hs-container-image) holds the node's venv and python3's standard
library minus container_runtime_image_exclude (find -path globs, roles/container_runtime/defaults/main.yml).
A package the training needs on that list breaks the training only inside the image, which the VMs show
after half an hour (it happened: SciPy, which MLflow's signature inference imports). Here the same globs,
rewritten from the guests' paths (/opt/aihow/venv/lib/python3*/site-packages, /usr/lib/python3.*) to this
venv's, prune a tree of symbolic links to the venv's site-packages and the standard library; python -S
(no site: the venv's own site-packages is not on sys.path) runs train_digits.py on that tree, one rank,
two epochs, an MLflow file store; it must log its model and write its result. Exit status 0 when it did,
1 when it did not, 2 on bad usage or an exclusion this test cannot map (so that a new kind is not passed
over silently).
"""
import argparse
import fnmatch
import json
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS = os.path.join(REPO, "roles", "container_runtime", "defaults", "main.yml")
PROGRAM_DIR = os.path.join(REPO, "roles", "mlops_pipeline", "files")
GUEST_SITE = "/opt/aihow/venv/lib/python3*/site-packages"
GUEST_STDLIB = "/usr/lib/python3.*"


def map_globs(globs, site, stdlib):
    """The image's exclusion globs on this machine's paths: {'site': [...], 'stdlib': [...]}; ValueError
    for a glob under neither root."""
    out = {"site": [], "stdlib": []}
    for glob in globs:
        for prefix, key, real in ((GUEST_SITE, "site", site), (GUEST_STDLIB, "stdlib", stdlib)):
            if glob.startswith(prefix + "/"):
                out[key].append(real + glob[len(prefix):])
                break
        else:
            raise ValueError("container_runtime_image_exclude: %r is under neither %s nor %s" % (
                glob, GUEST_SITE, GUEST_STDLIB))
    return out


def link_tree(source, dest, excluded):
    """dest mirrors source with symbolic links to its files, without the paths that match an excluded glob
    (as find -path: '*' crosses '/'). Returns the number of files linked."""
    count = 0
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatchcase(os.path.join(root, d), g) for g in excluded)]
        rel = os.path.relpath(root, source)
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        for name in files:
            path = os.path.join(root, name)
            if any(fnmatch.fnmatchcase(path, g) for g in excluded):
                continue
            os.symlink(path, os.path.join(dest, rel, name))
            count += 1
    return count


LAUNCHER = """
import runpy, sys
stdlib, site, program = sys.argv[1:4]
# python -S: stdlib, its zip and lib-dynload; the real stdlib is replaced by the image's view of it.
sys.path = [program, site] + [stdlib if p == %r else p for p in sys.path if p]
sys.argv = sys.argv[3:]
sys.argv[0] = program + '/train_digits.py'
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--venv", required=True, help="a venv with the image's packages (e.g. .venv-mlops)")
    parser.add_argument("--work", required=True, help="an empty scratch directory")
    args = parser.parse_args(argv)
    python = os.path.join(args.venv, "bin", "python")
    site_dirs, stdlib = subprocess.run(
        [python, "-c", "import site, sysconfig; print(site.getsitepackages()[0]); print(sysconfig.get_paths()['stdlib'])"],
        stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.split()
    with open(DEFAULTS) as handle:
        globs = yaml.safe_load(handle)["container_runtime_image_exclude"]
    try:
        mapped = map_globs(globs, site_dirs, stdlib)
    except ValueError as err:
        print("container-image-view: %s" % err, file=sys.stderr)
        return 2
    view_site = os.path.join(args.work, "site-packages")
    view_stdlib = os.path.join(args.work, "stdlib")
    linked = link_tree(site_dirs, view_site, mapped["site"]) + link_tree(stdlib, view_stdlib, mapped["stdlib"])
    print("container-image-view: %d files in the view, %d exclusions (%s)" % (linked, len(globs), DEFAULTS))
    # The data set is made outside the image, with the whole venv (scikit-learn), as hpc_verify.yml does.
    data = os.path.join(args.work, "data")
    subprocess.run([python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import train_digits as t; "
                    "t.prepare_data(t.parse_args(['--data-dir', sys.argv[2], '--tracking-uri', 'file:///nonexistent']), 0)",
                    PROGRAM_DIR, data], check=True, timeout=300)
    result = os.path.join(args.work, "result.json")
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true", OMP_NUM_THREADS="1", RANK="0", WORLD_SIZE="1")
    for var in ("PYTHONPATH", "PYTHONHOME", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(var, None)
    done = subprocess.run(
        [python, "-S", "-c", LAUNCHER % stdlib, view_stdlib, view_site, PROGRAM_DIR,
         "--data-dir", data, "--epochs", "2", "--min-accuracy", "0",
         "--experiment", "image-view", "--tracking-uri", "file://" + os.path.join(args.work, "mlruns"),
         "--result-file", result],
        cwd=args.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        check=False, timeout=600)
    summary = {}
    if os.path.exists(result):
        with open(result) as handle:
            summary = json.load(handle)
    if done.returncode != 0 or not summary.get("model_uri") or "test_accuracy" not in summary:
        print(done.stdout[-4000:], file=sys.stderr)
        print("container-image-view: FAILED: the training in the image's view exited %d, result %s" % (
            done.returncode, json.dumps(summary, sort_keys=True)), file=sys.stderr)
        return 1
    print("container-image-view: passed: model %s logged, test_accuracy %.4f after %d epochs" % (
        summary["model_uri"], summary["test_accuracy"], summary["epochs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
