"""Register, promote, roll back and show MLflow model versions, for Ansible.

    model_registry.py register --name digits-cnn --run-id RUN | --result-file result.json
    model_registry.py promote  --name digits-cnn --version 3 --alias champion --min-accuracy 0.95 [--force]
    model_registry.py rollback --name digits-cnn --alias champion
    model_registry.py show     --name digits-cnn --alias champion

Every command prints one JSON object on stdout with "changed" (true/false), so a task can report
idempotently (changed_when: (stdout | from_json).changed). The tracking server is MLFLOW_TRACKING_URI
(or --tracking-uri), with MLFLOW_TRACKING_USERNAME/PASSWORD when it needs them.

register  creates a version of NAME from the run's logged model ("model"), tagged with the run's
          test_accuracy; when a version of NAME from that run exists, it is returned, changed false.
promote   moves ALIAS to VERSION only when the version's test_accuracy >= --min-accuracy (else exit 3,
          "refused: ..."); the version that held ALIAS keeps ALIAS-previous, for a rollback. Promoting
          the holder again is changed false. --force skips the accuracy gate (the rollback drill).
rollback  moves ALIAS back to the ALIAS-previous version; ALIAS-previous is removed and the demoted
          version gets ALIAS-rolled-back.
show      the version ALIAS names: version, run_id, test_accuracy.

Exit status: 0 done; 3 promotion refused by the gate; 2 anything else (bad arguments, server
unreachable, unknown model, version, run or alias) with one line on stderr "model_registry: error: ..."
and {"changed": false, "failed": true, "msg": ...} on stdout. No traceback.

The decisions (argument checks, which version, whether the alias moves) are pure functions, tested
without MLflow in tests/unit/roles/mlops; MLflow is imported only to talk to the server.
"""
import argparse
import json
import math
import os
import re
import sys

import workflow_cli  # the argument helpers shared with train_digits.py and verify_inference.py (beside this file)

PROG = "model_registry"
EXIT_ERROR = 2
EXIT_REFUSED = 3
ARTIFACT_PATH = "model"
ACCURACY_TAG = "test_accuracy"
PREVIOUS_SUFFIX = "-previous"
ROLLED_BACK_SUFFIX = "-rolled-back"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class RegistryError(Exception):
    """A one-line error: exit 2."""


class Refused(Exception):
    """The promotion gate said no: exit 3."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class _Parser(workflow_cli.RaisingParser):
    error_class = RegistryError


def _name(text):
    if not NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            "%r is not a model name (1-64 letters, digits, _ and -, starting with a letter or digit)" % text)
    return text


def _alias(text):
    if not ALIAS_RE.match(text):
        raise argparse.ArgumentTypeError("%r is not an alias (1-64 letters, digits, _ and -)" % text)
    if text.lower() == "latest" or re.match(r"^[vV]\d+$", text):
        raise argparse.ArgumentTypeError("%r is reserved by MLflow (latest, v<digits>); pick another alias" % text)
    return text


def _version(text):
    if not re.match(r"^[1-9][0-9]{0,9}$", text):
        raise argparse.ArgumentTypeError("%r is not a model version (a number from 1)" % text)
    return text


def _run_id(text):
    if not RUN_ID_RE.match(text):
        raise argparse.ArgumentTypeError("%r is not an MLflow run ID (32 hex digits)" % text)
    return text


_fraction = workflow_cli.fraction("an accuracy")


def build_parser():
    parser = _Parser(prog=PROG, description="MLflow model registry steps of the lab's ML workflow.")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    commands = parser.add_subparsers(dest="command", metavar="{register,promote,rollback,show}")
    commands.required = True
    register = commands.add_parser("register", help="create a model version from a training run")
    register.add_argument("--name", required=True, type=_name)
    source = register.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", type=_run_id)
    source.add_argument("--result-file", help="the training job's --result-file (JSON with run_id)")
    promote = commands.add_parser("promote", help="move an alias to a version that passes the gate")
    promote.add_argument("--name", required=True, type=_name)
    promote.add_argument("--version", required=True, type=_version)
    promote.add_argument("--alias", default="champion", type=_alias)
    promote.add_argument("--min-accuracy", type=_fraction, help="the gate (mlops.promotion.min_accuracy)")
    promote.add_argument("--force", action="store_true", help="skip the accuracy gate")
    rollback = commands.add_parser("rollback", help="move the alias back to <alias>-previous")
    rollback.add_argument("--name", required=True, type=_name)
    rollback.add_argument("--alias", default="champion", type=_alias)
    show = commands.add_parser("show", help="the version an alias names")
    show.add_argument("--name", required=True, type=_name)
    show.add_argument("--alias", default="champion", type=_alias)
    for sub in (register, promote, rollback, show):
        sub.add_argument("--tracking-uri", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def parse_args(argv, env=None):
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    if args.command == "promote":
        if args.min_accuracy is None and not args.force:
            raise RegistryError("promote: --min-accuracy is required unless --force is given")
    if args.command in ("promote", "rollback", "show") and len(args.alias) + len(PREVIOUS_SUFFIX) > 256:
        raise RegistryError("argument --alias: too long")
    args.tracking_uri = workflow_cli.tracking_uri(getattr(args, "tracking_uri", None), env, RegistryError)
    return args


def read_result_file(path):
    """The run_id of a training result file."""
    result = workflow_cli.read_json_argument(path, "--result-file", RegistryError)
    run_id = result.get("run_id") if isinstance(result, dict) else None
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise RegistryError("argument --result-file: %s has no run_id of 32 hex digits (a train_digits.py "
                            "--result-file has one)" % path)
    return run_id


def parse_accuracy(value):
    """A test accuracy from a tag (text) or metric (number); None when absent or not a fraction."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and 0 <= number <= 1 else None


def version_accuracy(tags, run_metrics=None):
    """A version's test_accuracy: its tag, else its run's metric."""
    accuracy = parse_accuracy((tags or {}).get(ACCURACY_TAG))
    if accuracy is None:
        accuracy = parse_accuracy((run_metrics or {}).get(ACCURACY_TAG))
    return accuracy


def version_of_run(versions, run_id):
    """The lowest version (as text) among [{version, run_id}, ...] made from run_id, else None."""
    mine = [int(v["version"]) for v in versions if v.get("run_id") == run_id]
    return str(min(mine)) if mine else None


def plan_promotion(aliases, alias, version, accuracy, min_accuracy, force):
    """What promote does, from the model's {alias: version}: a dict with action noop, refuse or move."""
    holder = aliases.get(alias)
    plan = {"alias": alias, "version": version, "previous_version": holder, "test_accuracy": accuracy,
            "min_accuracy": min_accuracy, "forced": bool(force)}
    if holder == version:
        plan.update(action="noop", previous_version=aliases.get(alias + PREVIOUS_SUFFIX),
                    msg="version %s already holds alias %s" % (version, alias))
        return plan
    if not force:
        if accuracy is None:
            plan.update(action="refuse", msg="refused: version %s has no %s (tag or run metric); "
                                             "--force skips the gate" % (version, ACCURACY_TAG))
            return plan
        if accuracy < min_accuracy:
            plan.update(action="refuse", msg="refused: version %s test_accuracy %s < %s "
                                             "(mlops.promotion.min_accuracy)" % (
                                                 version, _fmt(accuracy), _fmt(min_accuracy)))
            return plan
        gate = "test_accuracy %s >= %s" % (_fmt(accuracy), _fmt(min_accuracy))
    else:
        gate = "accuracy gate skipped (--force; test_accuracy %s)" % (
            "unknown" if accuracy is None else _fmt(accuracy))
    moves = {alias: version}
    if holder is not None:
        moves[alias + PREVIOUS_SUFFIX] = holder
    plan.update(action="move", set=moves, msg="alias %s -> version %s (%s)%s" % (
        alias, version, gate, "; %s%s -> version %s" % (alias, PREVIOUS_SUFFIX, holder) if holder else ""))
    return plan


def plan_rollback(aliases, alias):
    """What rollback does: set {alias: previous, alias-rolled-back: current}, delete alias-previous."""
    previous = aliases.get(alias + PREVIOUS_SUFFIX)
    current = aliases.get(alias)
    if previous is None:
        raise RegistryError("rollback: no alias %s%s to roll back to (aliases: %s)" % (
            alias, PREVIOUS_SUFFIX, _aliases_text(aliases)))
    moves = {alias: previous}
    if current is not None and current != previous:
        moves[alias + ROLLED_BACK_SUFFIX] = current
    return {"action": "move", "set": moves, "delete": [alias + PREVIOUS_SUFFIX], "alias": alias,
            "version": previous, "rolled_back_from": current,
            "msg": "alias %s -> version %s (rolled back from %s)" % (alias, previous, current)}


def _fmt(number):
    return ("%.4f" % number).rstrip("0").rstrip(".") if number not in (0, 1) else str(int(number))


def _aliases_text(aliases):
    return ", ".join("%s=%s" % item for item in sorted(aliases.items())) or "none"


def one_line(text):
    return " ".join(str(text).split())


# --- talking to MLflow ------------------------------------------------------------------------

class Registry:
    def __init__(self, tracking_uri):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        workflow_cli.check_tracking_server(tracking_uri, RegistryError)
        import logging
        import mlflow
        from mlflow.tracking import MlflowClient
        # register_model warns that a run's model lives in the logged model (MLflow 3's layout): expected.
        logging.getLogger("mlflow.tracking._model_registry.fluent").setLevel(logging.ERROR)
        mlflow.set_tracking_uri(tracking_uri)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def model(self, name):
        try:
            return self.client.get_registered_model(name)
        except self.mlflow.exceptions.MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError("unknown registered model %r (register a version first)" % name) from None
            raise

    def versions(self, name):
        return [{"version": v.version, "run_id": v.run_id, "tags": dict(v.tags or {}), "status": v.status}
                for v in self.client.search_model_versions("name = '%s'" % name)]

    def version(self, name, version):
        try:
            return self.client.get_model_version(name, version)
        except self.mlflow.exceptions.MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                existing = sorted(int(v["version"]) for v in self.versions(name))
                raise RegistryError("unknown version %s of model %r (existing: %s)" % (
                    version, name, ", ".join(map(str, existing)) or "none")) from None
            raise

    def run(self, run_id):
        try:
            return self.client.get_run(run_id)
        except self.mlflow.exceptions.MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError("unknown run %s on %s" % (run_id, self.mlflow.get_tracking_uri())) from None
            raise

    def run_metrics(self, run_id):
        try:
            return dict(self.client.get_run(run_id).data.metrics) if run_id else {}
        except self.mlflow.exceptions.MlflowException:
            return {}


def describe(version, accuracy):
    return {"version": version.version, "run_id": version.run_id, "test_accuracy": accuracy,
            "source": version.source, "status": version.status}


def cmd_register(registry, args):
    run_id = args.run_id or read_result_file(args.result_file)
    run = registry.run(run_id)
    accuracy = parse_accuracy(run.data.metrics.get(ACCURACY_TAG))
    if accuracy is None:
        raise RegistryError("run %s has no %s metric (is it a train_digits.py run that finished?)" % (
            run_id, ACCURACY_TAG))
    try:
        registry.model(args.name)
        existing = version_of_run(registry.versions(args.name), run_id)
    except RegistryError:
        existing = None
    if existing is not None:
        version = registry.version(args.name, existing)
        result = describe(version, version_accuracy(version.tags, run.data.metrics))
        result.update(changed=False, name=args.name, msg="version %s of %s is from run %s already" % (
            existing, args.name, run_id))
        return result
    version = registry.mlflow.register_model("runs:/%s/%s" % (run_id, ARTIFACT_PATH), args.name,
                                             tags={ACCURACY_TAG: repr(accuracy)})
    registry.client.set_model_version_tag(args.name, version.version, ACCURACY_TAG, repr(accuracy))
    result = describe(version, accuracy)
    result.update(changed=True, name=args.name, run_status=run.info.status,
                  msg="registered version %s of %s from run %s (test_accuracy %s)" % (
                      version.version, args.name, run_id, _fmt(accuracy)))
    return result


def cmd_promote(registry, args):
    model = registry.model(args.name)
    version = registry.version(args.name, args.version)
    accuracy = version_accuracy(version.tags, registry.run_metrics(version.run_id))
    plan = plan_promotion(dict(model.aliases or {}), args.alias, args.version, accuracy, args.min_accuracy,
                          args.force)
    result = {"changed": plan["action"] == "move", "name": args.name, "alias": args.alias,
              "version": args.version, "previous_version": plan["previous_version"], "test_accuracy": accuracy,
              "min_accuracy": args.min_accuracy, "forced": bool(args.force), "run_id": version.run_id,
              "msg": plan["msg"]}
    if plan["action"] == "refuse":
        result["refused"] = True
        raise Refused(plan["msg"], result)
    for alias in (args.alias + PREVIOUS_SUFFIX, args.alias):  # previous first: never lose the old holder
        if alias in plan.get("set", {}):
            registry.client.set_registered_model_alias(args.name, alias, plan["set"][alias])
    return result


def cmd_rollback(registry, args):
    model = registry.model(args.name)
    plan = plan_rollback(dict(model.aliases or {}), args.alias)
    registry.version(args.name, plan["version"])
    for alias, version in plan["set"].items():
        registry.client.set_registered_model_alias(args.name, alias, version)
    for alias in plan["delete"]:
        registry.client.delete_registered_model_alias(args.name, alias)
    return {"changed": True, "name": args.name, "alias": args.alias, "version": plan["version"],
            "rolled_back_from": plan["rolled_back_from"], "msg": plan["msg"]}


def cmd_show(registry, args):
    model = registry.model(args.name)
    aliases = dict(model.aliases or {})
    if args.alias not in aliases:
        raise RegistryError("model %r has no alias %r (aliases: %s)" % (args.name, args.alias, _aliases_text(aliases)))
    version = registry.version(args.name, aliases[args.alias])
    result = describe(version, version_accuracy(version.tags, registry.run_metrics(version.run_id)))
    result.update(changed=False, name=args.name, alias=args.alias, aliases=aliases,
                  previous_version=aliases.get(args.alias + PREVIOUS_SUFFIX))
    return result


COMMANDS = {"register": cmd_register, "promote": cmd_promote, "rollback": cmd_rollback, "show": cmd_show}


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def fail(message, code=EXIT_ERROR, result=None):
    message = one_line(message)
    emit(result or {"changed": False, "failed": True, "msg": message})
    print("%s: %s" % (PROG, message if code == EXIT_REFUSED else "error: " + message), file=sys.stderr, flush=True)
    return code


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        registry = Registry(args.tracking_uri)
        emit(COMMANDS[args.command](registry, args))
        return 0
    except Refused as exc:
        return fail(str(exc), EXIT_REFUSED, exc.result)
    except RegistryError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted")
    except Exception as exc:  # pylint: disable=broad-except  # MLflow/requests errors: one line, no traceback
        if os.environ.get("AIHOW_DEBUG"):
            raise
        text = one_line(exc)
        if "Max retries exceeded" in text or "ConnectionError" in type(exc).__name__:
            text = "MLflow tracking server unreachable: %s" % text
        return fail("%s: %s" % (type(exc).__name__, text))


if __name__ == "__main__":
    sys.exit(main())
