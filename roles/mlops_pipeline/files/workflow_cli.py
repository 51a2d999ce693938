"""Command-line helpers shared by the ML workflow's programs: train_digits.py, model_registry.py and
verify_inference.py.

Why it exists: the three programs handle their command line the same way (a parser whose errors become
the program's own one-line error instead of argparse's usage text and exit, the same checked number and
port types, the same reading of a JSON --result-file, the same tracking URI fallback, the same quick
check that the tracking server answers) and used to carry a copy each. This module is that one copy.
What differs between the programs is a parameter: the noun of a fraction, the smallest integer, the
option a file came from, the program's exception.

It is deployed beside the programs (roles/mlops_pipeline/tasks/train.yml and programs.yml copy it into
the same directory), and they `import workflow_cli` as a sibling: Python puts a script's directory
first on sys.path. Standard library only, as at the programs' module level.
roles/model_server/files/hyperscaler_model_server.py is deployed on its own and keeps its own copies.
"""
import argparse
import json
import math
import urllib.error
import urllib.request


class RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser whose error() raises error_class(message) instead of printing the usage and
    exiting 2, so that the program's main() prints one line and picks the exit status.

    A program subclasses it and sets error_class to its own exception; the sub-parsers that
    add_subparsers makes are of that subclass too, so they raise the same exception.
    """

    error_class = ValueError

    def error(self, message):
        raise self.error_class(message)


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None


def int_at_least(minimum):
    """An argparse type: an integer of at least minimum ("must be at least 1", "must be 0 or more")."""
    bound = "0 or more" if minimum == 0 else "at least %d" % minimum

    def checked_int(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("%s must be %s" % (value, bound))
        return value

    return checked_int


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text):
    """An argparse type: a finite number above 0."""
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("%s must be a number above 0" % text)
    return value


def fraction(noun):
    """An argparse type: a number from 0 to 1; noun names it in the error ("a fraction", "an accuracy")."""

    def checked_fraction(text):
        value = _number(text)
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError("%s is not %s between 0 and 1" % (text, noun))
        return value

    return checked_fraction


def port(text):
    """An argparse type: a TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text) from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("%s is not a port (1-65535)" % value)
    return value


def read_json_argument(path, option, error_class):
    """The JSON value of the file an option names; error_class with a one-line message when the file
    cannot be read or is not JSON. What the value must hold is the caller's check."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise error_class("argument %s: cannot read %s: %s" % (option, path, exc.strerror)) from None
    except ValueError as exc:
        raise error_class("argument %s: %s is not JSON: %s" % (option, path, exc)) from None


def tracking_uri(given, env, error_class):
    """The MLflow tracking URI: --tracking-uri, else MLFLOW_TRACKING_URI; error_class when neither is set."""
    uri = given or env.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise error_class("no MLflow tracking URI: set MLFLOW_TRACKING_URI or pass --tracking-uri "
                          "(e.g. http://127.0.0.1:5000)")
    return uri


def check_tracking_server(uri, error_class, timeout=10):
    """Fail fast with one line (error_class) when an http(s) tracking server does not answer: MLflow itself
    retries for minutes. Whatever answers, even with an HTTP error (auth or a proxy in front of /health),
    is reachable: MLflow's own calls report those. A URI that is not http(s) is not checked."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "reason", exc)).split())
        raise error_class("MLflow tracking server %s unreachable: %s" % (uri, reason)) from None
