"""model_registry.py's decisions: arguments, which version a run has, the promotion gate, rollback."""
import json

import pytest

ENV = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
RUN = "0123456789abcdef0123456789abcdef"


def test_commands_parse(registry):
    args = registry.parse_args(["register", "--name", "digits-cnn", "--run-id", RUN], ENV)
    assert (args.command, args.name, args.run_id, args.tracking_uri) == ("register", "digits-cnn", RUN, ENV["MLFLOW_TRACKING_URI"])
    args = registry.parse_args(["promote", "--name", "m", "--version", "3", "--min-accuracy", "0.95"], ENV)
    assert (args.version, args.alias, args.min_accuracy, args.force) == ("3", "champion", 0.95, False)
    args = registry.parse_args(["promote", "--name", "m", "--version", "3", "--force"], ENV)
    assert args.force and args.min_accuracy is None
    args = registry.parse_args(["show", "--name", "m", "--tracking-uri", "http://h:1"], {})
    assert args.tracking_uri == "http://h:1" and args.alias == "champion"
    assert registry.parse_args(["--tracking-uri", "http://h:2", "rollback", "--name", "m"], {}).tracking_uri == "http://h:2"


@pytest.mark.parametrize("argv, fragment", [
    ([], "the following arguments are required: {register,promote,rollback,show}"),
    (["register", "--name", "m"], "one of the arguments --run-id --result-file is required"),
    (["register", "--name", "m", "--run-id", "xyz"], "argument --run-id: 'xyz' is not an MLflow run ID (32 hex digits)"),
    (["register", "--name", "bad/name", "--run-id", RUN], "argument --name: 'bad/name' is not a model name"),
    (["register", "--name", "-m", "--run-id", RUN], "argument --name"),
    (["promote", "--name", "m", "--version", "0", "--force"], "argument --version: '0' is not a model version"),
    (["promote", "--name", "m", "--version", "1"], "--min-accuracy is required unless --force is given"),
    (["promote", "--name", "m", "--version", "1", "--min-accuracy", "95"], "95 is not an accuracy between 0 and 1"),
    (["promote", "--name", "m", "--version", "1", "--alias", "latest", "--force"], "reserved by MLflow"),
    (["promote", "--name", "m", "--version", "1", "--alias", "v2", "--force"], "reserved by MLflow"),
    (["show", "--name", "m", "--alias", "a b"], "is not an alias"),
    (["explode"], "invalid choice: 'explode'"),
])
def test_bad_arguments(registry, argv, fragment):
    with pytest.raises(registry.RegistryError) as err:
        registry.parse_args(argv, ENV)
    assert fragment in str(err.value)


def test_a_tracking_uri_is_required(registry):
    with pytest.raises(registry.RegistryError, match="set MLFLOW_TRACKING_URI or pass --tracking-uri"):
        registry.parse_args(["show", "--name", "m"], {})


def test_result_file(registry, tmp_path):
    good = tmp_path / "result.json"
    good.write_text(json.dumps({"run_id": RUN, "test_accuracy": 0.97}))
    assert registry.read_result_file(str(good)) == RUN
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(registry.RegistryError, match="is not JSON"):
        registry.read_result_file(str(bad))
    bad.write_text(json.dumps({"run_id": "nope"}))
    with pytest.raises(registry.RegistryError, match="has no run_id of 32 hex digits"):
        registry.read_result_file(str(bad))
    with pytest.raises(registry.RegistryError, match="cannot read .*missing.json: No such file"):
        registry.read_result_file(str(tmp_path / "missing.json"))


def test_accuracy_from_the_tag_else_the_run(registry):
    assert registry.version_accuracy({"test_accuracy": "0.9777"}, {"test_accuracy": 0.5}) == 0.9777
    assert registry.version_accuracy({}, {"test_accuracy": 0.5}) == 0.5
    assert registry.version_accuracy({"test_accuracy": "garbage"}, {}) is None
    assert registry.version_accuracy(None, None) is None
    for bad in ("nan", "inf", "1.5", "-0.1", True):
        assert registry.parse_accuracy(bad) is None


def test_version_of_run(registry):
    versions = [{"version": "3", "run_id": "b"}, {"version": "2", "run_id": "a"}, {"version": "5", "run_id": "a"}]
    assert registry.version_of_run(versions, "a") == "2"
    assert registry.version_of_run(versions, "c") is None
    assert registry.version_of_run([], "a") is None


def test_promotion_accepted_keeps_the_previous_holder(registry):
    plan = registry.plan_promotion({"champion": "1"}, "champion", "2", 0.98, 0.95, False)
    assert plan["action"] == "move" and plan["set"] == {"champion": "2", "champion-previous": "1"}
    assert plan["previous_version"] == "1" and "test_accuracy 0.98 >= 0.95" in plan["msg"]


def test_first_promotion(registry):
    plan = registry.plan_promotion({}, "champion", "1", 0.95, 0.95, False)
    assert plan["action"] == "move" and plan["set"] == {"champion": "1"} and plan["previous_version"] is None


def test_promotion_refused_below_the_gate(registry):
    plan = registry.plan_promotion({"champion": "1"}, "champion", "2", 0.41, 0.95, False)
    assert plan["action"] == "refuse" and "set" not in plan
    assert plan["msg"] == "refused: version 2 test_accuracy 0.41 < 0.95 (mlops.promotion.min_accuracy)"


def test_promotion_refused_without_an_accuracy(registry):
    plan = registry.plan_promotion({}, "champion", "2", None, 0.95, False)
    assert plan["action"] == "refuse" and "has no test_accuracy" in plan["msg"]


def test_force_skips_the_gate_and_says_so(registry):
    plan = registry.plan_promotion({"champion": "1"}, "champion", "2", 0.1, 0.95, True)
    assert plan["action"] == "move" and plan["set"] == {"champion": "2", "champion-previous": "1"}
    assert "accuracy gate skipped (--force; test_accuracy 0.1)" in plan["msg"]


def test_promoting_the_holder_again_is_no_change(registry):
    plan = registry.plan_promotion({"champion": "2", "champion-previous": "1"}, "champion", "2", 0.1, 0.95, False)
    assert plan["action"] == "noop" and plan["previous_version"] == "1"


def test_rollback(registry):
    plan = registry.plan_rollback({"champion": "2", "champion-previous": "1"}, "champion")
    assert plan["set"] == {"champion": "1", "champion-rolled-back": "2"} and plan["delete"] == ["champion-previous"]
    assert plan["version"] == "1" and plan["rolled_back_from"] == "2"


def test_rollback_without_a_previous_version(registry):
    with pytest.raises(registry.RegistryError, match=r"no alias champion-previous to roll back to \(aliases: champion=1\)"):
        registry.plan_rollback({"champion": "1"}, "champion")


def test_numbers_in_messages(registry):
    assert [registry._fmt(x) for x in (0.41, 0.95, 1, 0, 0.97771587)] == ["0.41", "0.95", "1", "0", "0.9777"]


def test_errors_are_json_and_one_line(registry, capsys):
    assert registry.main(["promote", "--name", "m", "--version", "x"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {"changed": False, "failed": True,
                               "msg": "argument --version: 'x' is not a model version (a number from 1)"}
    assert err == "model_registry: error: argument --version: 'x' is not a model version (a number from 1)\n"


def test_unreachable_server_is_one_line(registry, capsys, closed_port):
    uri = "http://127.0.0.1:%d" % closed_port
    assert registry.main(["--tracking-uri", uri, "show", "--name", "m"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["failed"] is True
    assert err.startswith("model_registry: error: MLflow tracking server %s unreachable: " % uri)
    assert err.count("\n") == 1


def test_help(registry, capsys):
    with pytest.raises(SystemExit) as done:
        registry.build_parser().parse_args(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out
