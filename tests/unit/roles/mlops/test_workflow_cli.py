"""workflow_cli.py, the argument helpers train_digits.py, model_registry.py and verify_inference.py share.

Each type accepts what the programs accepted before and rejects the rest with the same message; the
programs find the module beside them when run by path, and every deployment that copies a program
copies the module too.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO

PIPELINE_FILES = os.path.join(REPO, "roles", "mlops_pipeline", "files")
PROGRAMS = ("train_digits.py", "model_registry.py", "verify_inference.py")


def rejects(check, text):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        check(text)
    return str(err.value)


@pytest.mark.parametrize("text, value", [("1", 1), ("7", 7), (" 3 ", 3), ("+2", 2)])
def test_positive_int_accepts(cli, text, value):
    assert cli.positive_int(text) == value


@pytest.mark.parametrize("text, message", [
    ("0", "0 must be at least 1"),
    ("-4", "-4 must be at least 1"),
    ("x", "'x' is not an integer"),
    ("1.5", "'1.5' is not an integer"),
    ("", "'' is not an integer"),
])
def test_positive_int_rejects(cli, text, message):
    assert rejects(cli.positive_int, text) == message


@pytest.mark.parametrize("text, value", [("0", 0), ("5", 5), ("2000", 2000)])
def test_non_negative_int_accepts(cli, text, value):
    assert cli.non_negative_int(text) == value


@pytest.mark.parametrize("text, message", [
    ("-1", "-1 must be 0 or more"),
    ("-3", "-3 must be 0 or more"),
    ("two", "'two' is not an integer"),
])
def test_non_negative_int_rejects(cli, text, message):
    assert rejects(cli.non_negative_int, text) == message


def test_int_at_least_other_minimums(cli):
    assert cli.int_at_least(5)("5") == 5
    assert rejects(cli.int_at_least(5), "4") == "4 must be at least 5"
    assert cli.int_at_least(-2)("-2") == -2
    assert rejects(cli.int_at_least(-2), "-3") == "-3 must be at least -2"


@pytest.mark.parametrize("text, value", [("0.002", 0.002), ("10", 10.0), ("1e-3", 0.001), ("500", 500.0)])
def test_positive_float_accepts(cli, text, value):
    assert cli.positive_float(text) == value


@pytest.mark.parametrize("text, message", [
    ("0", "0 must be a number above 0"),
    ("-1", "-1 must be a number above 0"),
    ("nan", "nan must be a number above 0"),
    ("inf", "inf must be a number above 0"),
    ("fast", "'fast' is not a number"),
])
def test_positive_float_rejects(cli, text, message):
    assert rejects(cli.positive_float, text) == message


@pytest.mark.parametrize("noun", ["a fraction", "an accuracy"])
@pytest.mark.parametrize("text, value", [("0", 0.0), ("1", 1.0), ("0.95", 0.95), ("0.9777", 0.9777)])
def test_fraction_accepts(cli, noun, text, value):
    assert cli.fraction(noun)(text) == value


@pytest.mark.parametrize("noun", ["a fraction", "an accuracy"])
@pytest.mark.parametrize("text, message", [
    ("1.5", "1.5 is not %s between 0 and 1"),
    ("2", "2 is not %s between 0 and 1"),
    ("-0.1", "-0.1 is not %s between 0 and 1"),
    ("nan", "nan is not %s between 0 and 1"),
    ("high", "'high' is not a number"),
])
def test_fraction_rejects_naming_its_noun(cli, noun, text, message):
    assert rejects(cli.fraction(noun), text) == (message % noun if "%s" in message else message)


@pytest.mark.parametrize("text, value", [("1", 1), ("29500", 29500), ("65535", 65535)])
def test_port_accepts(cli, text, value):
    assert cli.port(text) == value


@pytest.mark.parametrize("text, message", [
    ("0", "0 is not a port (1-65535)"),
    ("70000", "70000 is not a port (1-65535)"),
    ("http", "'http' is not a port number"),
])
def test_port_rejects(cli, text, message):
    assert rejects(cli.port, text) == message


class Oops(Exception):
    pass


def test_raising_parser_raises_the_programs_error(cli):
    class Parser(cli.RaisingParser):
        error_class = Oops

    parser = Parser(prog="p")
    parser.add_argument("--n", type=cli.positive_int)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("sub").add_argument("--m", type=cli.port)
    assert parser.parse_args(["--n", "3"]).n == 3
    with pytest.raises(Oops, match="^argument --n: 0 must be at least 1$"):
        parser.parse_args(["--n", "0"])
    with pytest.raises(Oops, match="unrecognized arguments: --bogus"):
        parser.parse_args(["--bogus"])
    with pytest.raises(Oops, match=r"^argument --m: 0 is not a port \(1-65535\)$"):  # a sub-parser raises it too
        parser.parse_args(["sub", "--m", "0"])


def test_read_json_argument(cli, tmp_path):
    good = tmp_path / "result.json"
    good.write_text(json.dumps({"run_id": "x", "test_accuracy": 0.5}))
    assert cli.read_json_argument(str(good), "--result-file", Oops) == {"run_id": "x", "test_accuracy": 0.5}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Oops, match=r"^argument --result-file: .*bad\.json is not JSON: Expecting property name"):
        cli.read_json_argument(str(bad), "--result-file", Oops)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(Oops) as err:
        cli.read_json_argument(missing, "--other", Oops)
    assert str(err.value) == "argument --other: cannot read %s: No such file or directory" % missing


def test_tracking_uri(cli):
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert cli.tracking_uri("http://given:1", env, Oops) == "http://given:1"
    assert cli.tracking_uri(None, env, Oops) == "http://env:5000"
    with pytest.raises(Oops) as err:
        cli.tracking_uri(None, {"MLFLOW_TRACKING_URI": ""}, Oops)
    assert str(err.value) == ("no MLflow tracking URI: set MLFLOW_TRACKING_URI or pass --tracking-uri "
                              "(e.g. http://127.0.0.1:5000)")


def test_check_tracking_server(cli, closed_port):
    uri = "http://127.0.0.1:%d" % closed_port
    with pytest.raises(Oops) as err:
        cli.check_tracking_server(uri, Oops, timeout=5)
    assert str(err.value).startswith("MLflow tracking server %s unreachable: " % uri) and "\n" not in str(err.value)
    cli.check_tracking_server("file:///tmp/mlruns", Oops)  # not HTTP: nothing to check


def test_check_tracking_server_takes_any_answer_as_reachable(cli):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  http.server's name
            self.send_response(404 if self.path == "/prefix/health" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = "http://127.0.0.1:%d" % server.server_address[1]
        cli.check_tracking_server(base + "/", Oops, timeout=5)
        cli.check_tracking_server(base + "/prefix", Oops, timeout=5)  # an HTTP error is an answer
    finally:
        server.shutdown()
        server.server_close()


def test_the_module_is_a_plain_standard_library_file():
    path = os.path.join(PIPELINE_FILES, "workflow_cli.py")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert not text.startswith("#!") and text.startswith('"""')
    assert not os.stat(path).st_mode & 0o111
    imported = set(re.findall(r"^(?:import|from) (\w+)", text, re.M))
    assert imported <= set(sys.stdlib_module_names), imported


def test_the_programs_use_the_shared_helpers(train, registry, verify, cli):
    for program in (train, registry, verify):
        assert program.workflow_cli is cli
        assert issubclass(program._Parser, cli.RaisingParser)
        assert not hasattr(program, "_positive_int") and not hasattr(program, "_non_negative_int")


@pytest.mark.parametrize("program, argv, line", [
    ("train_digits.py", ["--epochs", "0"], "train_digits: error: argument --epochs: 0 must be at least 1"),
    ("model_registry.py", ["promote", "--name", "m", "--version", "1", "--min-accuracy", "2"],
     "model_registry: error: argument --min-accuracy: 2 is not an accuracy between 0 and 1"),
    ("verify_inference.py", ["--url", "http://127.0.0.1:1", "--model", "m", "--data", "d", "--expect-accuracy",
                             "0.5", "--requests", "-1"],
     "verify_inference: error: argument --requests: -1 must be 0 or more"),
])
def test_a_program_run_by_path_finds_its_sibling(tmp_path, program, argv, line):
    """Run from another directory, as Slurm and Ansible run them: exit 2 and the one line, as before."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:1"
    done = subprocess.run([sys.executable, os.path.join(PIPELINE_FILES, program)] + argv, cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr.splitlines()) == (2, [line])


def test_a_program_copied_alone_says_what_is_missing(tmp_path):
    """The reason every deployment copies workflow_cli.py too."""
    shutil.copy(os.path.join(PIPELINE_FILES, "verify_inference.py"), str(tmp_path))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run([sys.executable, str(tmp_path / "verify_inference.py")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "No module named 'workflow_cli'" in done.stderr


def sibling_imports(program):
    with open(os.path.join(PIPELINE_FILES, program), encoding="utf-8") as handle:
        names = re.findall(r"^import (\w+)", handle.read(), re.M)
    return {name + ".py" for name in names if os.path.isfile(os.path.join(PIPELINE_FILES, name + ".py"))}


def copy_loops():
    """{task file: [the loop of each copy task]} of the mlops_pipeline role."""
    tasks = os.path.join(REPO, "roles", "mlops_pipeline", "tasks")
    loops = {}
    for name in sorted(os.listdir(tasks)):
        with open(os.path.join(tasks, name), encoding="utf-8") as handle:
            for task in yaml.safe_load(handle) or []:
                if "ansible.builtin.copy" in task and isinstance(task.get("loop"), list):
                    loops.setdefault(name, []).append(task["loop"])
    return loops


def test_every_deployment_copies_the_siblings_with_the_program():
    assert sibling_imports("train_digits.py") == {"workflow_cli.py"}
    loops = copy_loops()
    copied = [program for loops_of_file in loops.values() for loop in loops_of_file for program in loop]
    assert set(PROGRAMS) <= set(copied), loops
    for loops_of_file in loops.values():
        for loop in loops_of_file:
            for program in set(loop) & set(PROGRAMS):
                assert sibling_imports(program) <= set(loop), (program, loop)
    # train.yml hashes the checksums of its loop into the run key: a new workflow_cli.py is a new run
    assert "workflow_cli.py" in loops["train.yml"][0]
