"""Check a model server against the training job: accuracy over the API, latency, throughput, bad requests.

    verify_inference.py --url http://HOST:8080 --model digits-cnn --data /shared/mlops/data/digits.npz \\
        --expect-accuracy 0.9777 [--expect-version 3] [--requests 200] [--concurrency 4,8] [--duration 10] \\
        [--p95-max-ms 500] [--min-rps 50]

1. ready: GET /v2/health/ready and /v2/models/NAME/ready answer 200; /v2/models/NAME names the version.
2. accuracy: every held-out test image of --data (X_test, y_test) through POST /v2/models/NAME/infer in
   batches of --batch-size; the accuracy must EQUAL --expect-accuracy (the training job's, from its
   --result-file: the same predictions give the same number of correct images). Both are printed.
   With --min-accuracy it must also reach that (a model that is served as it was trained, but bad).
3. v1: the first --v1-samples images through POST /v1/models/NAME:predict give the v2 labels.
4. latency: --requests single-image v2 requests, one after the other: p50/p95/p99 in ms.
5. throughput: for each --concurrency C, C client threads send single-image requests until
   --throughput-requests are done or --duration seconds passed: requests/s.
6. malformed: not JSON, no inputs, wrong shape, wrong datatype, too few values, a non-number, too many
   images, unknown model, a bad v1 body: each gets a 4xx with a message, and the server is ready after.

Prints one JSON summary on stdout. Exit status 0 when every check passed, 1 naming the failed checks on
stderr ("verify_inference: FAILED: accuracy: ..."), 2 for bad arguments or an unreadable --data file.
--p95-max-ms and --min-rps are checks only when given (the TCG VMs may miss the design targets).
Standard library HTTP (http.client, persistent connections) and numpy; the argument types come from
workflow_cli, the file beside this one; the checks' arithmetic is pure functions (tests/unit/roles/mlops).
"""
import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
import urllib.parse

import workflow_cli  # the argument helpers shared with train_digits.py and model_registry.py (beside this file)

PROG = "verify_inference"
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(workflow_cli.RaisingParser):
    error_class = UsageError


_fraction = workflow_cli.fraction("an accuracy")


def parse_concurrency(text):
    """'4,8' -> [4, 8]."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of client counts, e.g. 4,8" % text) from None
    if not levels or any(level < 1 or level > 256 for level in levels):
        raise argparse.ArgumentTypeError("%r: client counts are 1-256, e.g. 4,8" % text)
    return levels


def parse_url(text):
    """(host, port, path prefix) of an http:// URL."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme != "http" or not parsed.hostname:
        raise argparse.ArgumentTypeError("%r is not an http://HOST:PORT URL" % text)
    try:
        port = parsed.port or 80
    except ValueError:
        raise argparse.ArgumentTypeError("%r has an invalid port" % text) from None
    return parsed.hostname, port, parsed.path.rstrip("/")


def build_parser():
    parser = _Parser(prog=PROG, description="Verify a model server against the training job's accuracy.")
    parser.add_argument("--url", required=True, type=parse_url, help="http://HOST:PORT of the model server")
    parser.add_argument("--model", required=True, help="model name in the URLs")
    parser.add_argument("--data", required=True, help=".npz with X_test and y_test (the training job's data file)")
    expect = parser.add_mutually_exclusive_group(required=True)
    expect.add_argument("--expect-accuracy", type=_fraction, help="the training job's test_accuracy")
    expect.add_argument("--result-file", help="the training job's --result-file (its test_accuracy)")
    parser.add_argument("--expect-version", help="fail unless the server serves this model version")
    parser.add_argument("--min-accuracy", type=_fraction,
                        help="fail when the accuracy over the API is below this, too (the promotion gate)")
    parser.add_argument("--batch-size", type=workflow_cli.positive_int, default=128, help="images per accuracy request")
    parser.add_argument("--v1-samples", type=workflow_cli.non_negative_int, default=5)
    parser.add_argument("--requests", type=workflow_cli.non_negative_int, default=200, help="sequential latency requests")
    parser.add_argument("--concurrency", type=parse_concurrency, default=[4], help="client threads, e.g. 4,8")
    parser.add_argument("--duration", type=workflow_cli.positive_float, default=10.0, help="most seconds per throughput run")
    parser.add_argument("--throughput-requests", type=workflow_cli.non_negative_int, default=2000,
                        help="most requests per throughput run (0: no throughput run)")
    parser.add_argument("--p95-max-ms", type=workflow_cli.positive_float, help="fail when the latency P95 is above this")
    parser.add_argument("--min-rps", type=workflow_cli.positive_float, help="fail when a throughput run is below this")
    parser.add_argument("--timeout", type=workflow_cli.positive_float, default=30.0, help="seconds per request")
    parser.add_argument("--no-malformed", action="store_true", help="skip the malformed-request checks")
    parser.add_argument("--summary-file", help="also write the JSON summary here")
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.result_file:
        args.expect_accuracy = read_expected_accuracy(args.result_file)
    return args


def read_expected_accuracy(path):
    result = workflow_cli.read_json_argument(path, "--result-file", UsageError)
    value = result.get("test_accuracy") if isinstance(result, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError("argument --result-file: %s has no test_accuracy between 0 and 1" % path)
    return float(value)


def expected_correct(accuracy, total):
    """The number of correct images an accuracy over total images stands for; None when it stands for none."""
    if total < 1:
        return None
    correct = int(round(accuracy * total))
    return correct if abs(correct / total - accuracy) < 1e-9 else None


def percentile(values, pct):
    """Linear-interpolated percentile (numpy's default method) of a non-empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(math.floor(rank))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def batches(total, size):
    """[(start, stop), ...] covering range(total) in chunks of size."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def v2_body(rows, features):
    """A v2 infer request for a list of rows (each a list of features numbers)."""
    flat = [value for row in rows for value in row]
    return {"inputs": [{"name": "pixels", "shape": [len(rows), features], "datatype": "FP32", "data": flat}]}


def v2_predictions(response, count):
    """The labels of a v2 response's "predictions" output; ValueError naming what is wrong."""
    if not isinstance(response, dict) or not isinstance(response.get("outputs"), list):
        raise ValueError("v2 response has no outputs list")
    for output in response["outputs"]:
        if isinstance(output, dict) and output.get("name") == "predictions":
            if output.get("datatype") != "INT64" or output.get("shape") != [count]:
                raise ValueError("predictions output is %s %s, expected INT64 [%d]" % (
                    output.get("datatype"), output.get("shape"), count))
            data = output.get("data")
            if not isinstance(data, list) or len(data) != count or not all(
                    isinstance(label, int) and not isinstance(label, bool) for label in data):
                raise ValueError("predictions data is not %d integer labels" % count)
            return data
    raise ValueError("v2 response has no 'predictions' output (outputs: %s)" % ", ".join(
        str(o.get("name")) for o in response["outputs"] if isinstance(o, dict)))


def malformed_cases(model, features, max_batch=1024):
    """(name, path, body bytes, content type) of requests a correct server answers with a 4xx."""
    v2 = "/v2/models/%s/infer" % model
    row = [0.0] * features

    def tensor(shape, datatype="FP32", data=None):
        return json.dumps({"inputs": [{"name": "pixels", "shape": shape, "datatype": datatype,
                                       "data": row if data is None else data}]}).encode()

    return [
        ("not_json", v2, b"this is not JSON", "application/json"),
        ("missing_inputs", v2, b"{}", "application/json"),
        ("empty_inputs", v2, b'{"inputs": []}', "application/json"),
        ("wrong_shape", v2, tensor([1, features - 1], data=row[:-1]), "application/json"),
        ("wrong_datatype", v2, tensor([1, features], datatype="INT32", data=[0] * features), "application/json"),
        ("too_few_values", v2, tensor([2, features]), "application/json"),
        ("not_a_number", v2, tensor([1, features], data=["x"] * features), "application/json"),
        ("too_many_images", v2, tensor([max_batch + 1, features], data=row * (max_batch + 1)), "application/json"),
        ("unknown_model", "/v2/models/%s-does-not-exist/infer" % model, tensor([1, features]), "application/json"),
        ("v1_not_json", "/v1/models/%s:predict" % model, b"this is not JSON", "application/json"),
        ("v1_missing_instances", "/v1/models/%s:predict" % model, b'{"inputs": []}', "application/json"),
        ("v1_wrong_length", "/v1/models/%s:predict" % model, json.dumps({"instances": [row[:-1]]}).encode(),
         "application/json"),
    ]


def error_message(body):
    """The message of an error response body ({"error": ...} from KServe, {"detail": ...} from FastAPI)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    if isinstance(parsed, dict):
        for key in ("error", "detail", "message"):
            if parsed.get(key):
                value = parsed[key]
                return value if isinstance(value, str) else json.dumps(value)
    return ""


def evaluate(summary, args):
    """The failed checks of a summary: [(check, message)]."""
    failures = []
    if not summary.get("ready"):
        failures.append(("ready", summary.get("ready_error") or "the server or the model is not ready"))
        return failures
    if args.expect_version and summary.get("model_version") != args.expect_version:
        failures.append(("version", "the server serves version %s, expected %s" % (
            summary.get("model_version"), args.expect_version)))
    acc = summary.get("accuracy")
    if acc is not None:
        if acc.get("error"):
            failures.append(("accuracy", acc["error"]))
        elif acc["expected_correct"] is None:
            failures.append(("accuracy", "expected accuracy %r is not k/%d for any k: not this data file's "
                                         "test set" % (acc["accuracy_job"], acc["total"])))
        elif acc["correct"] != acc["expected_correct"]:
            failures.append(("accuracy", "API %.6f (%d/%d) != job %.6f (%d/%d)" % (
                acc["accuracy_api"], acc["correct"], acc["total"], acc["accuracy_job"], acc["expected_correct"],
                acc["total"])))
        if not acc.get("error") and args.min_accuracy is not None and acc["accuracy_api"] < args.min_accuracy:
            failures.append(("min_accuracy", "API accuracy %.6f < %s (--min-accuracy)" % (
                acc["accuracy_api"], args.min_accuracy)))
    v1 = summary.get("v1")
    if v1 is not None and not v1.get("ok"):
        failures.append(("v1", v1.get("error") or "v1 labels differ from v2: %s vs %s" % (
            v1.get("labels"), v1.get("expected"))))
    latency = summary.get("latency")
    if latency is not None:
        if latency.get("errors"):
            failures.append(("latency", "%d of %d requests failed (%s)" % (
                latency["errors"], latency["requests"], latency.get("first_error"))))
        elif args.p95_max_ms is not None and latency["p95_ms"] > args.p95_max_ms:
            failures.append(("p95", "P95 %.1f ms > %.1f ms (--p95-max-ms)" % (latency["p95_ms"], args.p95_max_ms)))
    for run in summary.get("throughput", []):
        if run.get("errors"):
            failures.append(("throughput", "concurrency %d: %d requests failed (%s)" % (
                run["concurrency"], run["errors"], run.get("first_error"))))
        elif args.min_rps is not None and run["rps"] < args.min_rps:
            failures.append(("rps", "concurrency %d: %.1f requests/s < %.1f (--min-rps)" % (
                run["concurrency"], run["rps"], args.min_rps)))
    bad = [c for c in summary.get("malformed", []) if not c["ok"]]
    if bad:
        failures.append(("malformed", "; ".join("%s: HTTP %s %s" % (c["case"], c["status"], c["message"][:120])
                                                for c in bad)))
    if summary.get("malformed") is not None and not summary.get("ready_after"):
        failures.append(("ready_after", "the server is not ready after the malformed requests"))
    return failures


# --- HTTP ---------------------------------------------------------------------------------------

class Client:
    """One persistent HTTP/1.1 connection (one per thread)."""

    def __init__(self, host, port, prefix, timeout):
        self.host, self.port, self.prefix, self.timeout = host, port, prefix, timeout
        self.conn = None

    def request(self, method, path, body=None, content_type="application/json"):
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, self.prefix + path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, obj=None):
        status, data = self.request(method, path, None if obj is None else json.dumps(obj).encode())
        return status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def check_ready(client, model):
    try:
        for path in ("/v2/health/ready", "/v2/models/%s/ready" % model):
            status, data = client.request("GET", path)
            if status != 200:
                return False, "GET %s: HTTP %d %s" % (path, status, error_message(data)[:200])
    except OSError as exc:
        return False, "server unreachable: %s" % exc
    return True, None


def run_accuracy(client, args, X, y, features):
    predicted = []
    started = time.perf_counter()
    for start, stop in batches(len(X), args.batch_size):
        status, data = client.json("POST", "/v2/models/%s/infer" % args.model, v2_body(X[start:stop], features))
        if status != 200:
            message = error_message(data)[:200]
            return {"error": "POST infer of images %d-%d: HTTP %d %s" % (start, stop - 1, status, message)}, None
        try:
            predicted.extend(v2_predictions(json.loads(data), stop - start))
        except ValueError as exc:
            return {"error": "images %d-%d: %s" % (start, stop - 1, exc)}, None
    correct = sum(1 for p, t in zip(predicted, y) if p == t)
    total = len(y)
    return {"accuracy_api": correct / total, "accuracy_job": args.expect_accuracy, "correct": correct,
            "total": total, "expected_correct": expected_correct(args.expect_accuracy, total),
            "batch_size": args.batch_size, "seconds": round(time.perf_counter() - started, 3)}, predicted


def run_v1(client, args, X, expected):
    count = min(args.v1_samples, len(X))
    status, data = client.json("POST", "/v1/models/%s:predict" % args.model, {"instances": X[:count]})
    if status != 200:
        return {"ok": False, "error": "POST :predict: HTTP %d %s" % (status, error_message(data)[:200])}
    try:
        labels = json.loads(data)["predictions"]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": "v1 response has no predictions: %s" % data[:200]}
    return {"ok": labels == expected[:count], "samples": count, "labels": labels, "expected": expected[:count]}


def single_request(client, model, row, features):
    started = time.perf_counter()
    status, data = client.json("POST", "/v2/models/%s/infer" % model, v2_body([row], features))
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError("HTTP %d %s" % (status, error_message(data)[:120]))
    return elapsed


def run_latency(client, args, X, features):
    times, errors, first_error = [], 0, None
    for index in range(args.requests):
        try:
            times.append(single_request(client, args.model, X[index % len(X)], features))
        except (RuntimeError, OSError, http.client.HTTPException) as exc:
            errors += 1
            first_error = first_error or str(exc)
    result = {"requests": args.requests, "errors": errors, "first_error": first_error}
    if times:
        result.update({"p50_ms": round(percentile(times, 50), 3), "p95_ms": round(percentile(times, 95), 3),
                       "p99_ms": round(percentile(times, 99), 3), "max_ms": round(max(times), 3),
                       "mean_ms": round(sum(times) / len(times), 3)})
    elif not errors:
        result["errors"] = 0
    return result


def run_throughput(host, port, prefix, args, X, features, concurrency):
    lock = threading.Lock()
    state = {"issued": 0, "done": 0, "errors": 0, "first_error": None, "times": []}
    deadline = time.perf_counter() + args.duration

    def worker(offset):
        client = Client(host, port, prefix, args.timeout)
        index = offset
        try:
            while time.perf_counter() < deadline:
                with lock:
                    if state["issued"] >= args.throughput_requests:
                        return
                    state["issued"] += 1
                try:
                    elapsed = single_request(client, args.model, X[index % len(X)], features)
                    with lock:
                        state["done"] += 1
                        state["times"].append(elapsed)
                except (RuntimeError, OSError, http.client.HTTPException) as exc:
                    with lock:
                        state["errors"] += 1
                        state["first_error"] = state["first_error"] or str(exc)
                index += concurrency
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + args.timeout + 5)
    elapsed = time.perf_counter() - started
    times = state["times"]
    return {"concurrency": concurrency, "requests": state["done"], "errors": state["errors"],
            "first_error": state["first_error"], "seconds": round(elapsed, 3),
            "rps": round(state["done"] / elapsed, 2) if elapsed > 0 else 0.0,
            "p95_ms": round(percentile(times, 95), 3) if times else None}


def run_malformed(client, args, features):
    results = []
    for name, path, body, content_type in malformed_cases(args.model, features):
        try:
            status, data = client.request("POST", path, body, content_type)
            message = error_message(data)
        except (OSError, http.client.HTTPException) as exc:
            status, message = None, "no answer: %s" % exc
        results.append({"case": name, "status": status, "message": message,
                        "ok": status is not None and 400 <= status < 500 and bool(message)})
    return results


def load_test_set(path):
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as data:
            X, y = data["X_test"], data["y_test"]
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError("argument --data: %s is not a data file with X_test and y_test (%s)" % (path, exc)) from None
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or not len(y):
        raise UsageError("argument --data: %s: X_test %s and y_test %s do not fit" % (path, X.shape, y.shape))
    return X.astype(np.float32).tolist(), [int(label) for label in y], X.shape[1]


def verify(args):
    host, port, prefix = args.url
    X, y, features = load_test_set(args.data)
    client = Client(host, port, prefix, args.timeout)
    summary = {"url": "http://%s:%d%s" % (host, port, prefix), "model": args.model, "data": args.data,
               "test_images": len(y)}
    summary["ready"], summary["ready_error"] = check_ready(client, args.model)
    if not summary["ready"]:
        return summary
    try:
        status, data = client.request("GET", "/v2/models/%s" % args.model)
        metadata = json.loads(data) if status == 200 else {}
        versions = metadata.get("versions") or []
        summary["model_version"] = versions[0] if versions else None
        shape = (metadata.get("inputs") or [{}])[0].get("shape")
        summary["model_input_shape"] = shape
        if shape and len(shape) == 2 and shape[1] != features:
            summary["ready"], summary["ready_error"] = False, "the model takes %d pixels, --data has %d" % (
                shape[1], features)
            return summary
        summary["accuracy"], predicted = run_accuracy(client, args, X, y, features)
        if predicted is not None and args.v1_samples:
            summary["v1"] = run_v1(client, args, X, predicted)
        if args.requests:
            summary["latency"] = run_latency(client, args, X, features)
        summary["throughput"] = []
        if args.throughput_requests:
            for level in args.concurrency:
                summary["throughput"].append(run_throughput(host, port, prefix, args, X, features, level))
        if not args.no_malformed:
            summary["malformed"] = run_malformed(client, args, features)
            summary["ready_after"] = check_ready(client, args.model)[0]
    except (OSError, http.client.HTTPException, ValueError) as exc:
        summary["ready"], summary["ready_error"] = False, "server failed during the checks: %s" % exc
    finally:
        client.close()
    return summary


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        summary = verify(args)
    except UsageError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_USAGE
    failures = evaluate(summary, args)
    summary["failed_checks"] = [failure[0] for failure in failures]
    summary["passed"] = not failures
    text = json.dumps(summary, sort_keys=True)
    print(text, flush=True)
    if args.summary_file:
        with open(args.summary_file + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(args.summary_file + ".tmp", args.summary_file)
    acc = summary.get("accuracy") or {}
    if "accuracy_api" in acc:
        print("%s: accuracy over the API %.6f (%d/%d), training job %.6f" % (
            PROG, acc["accuracy_api"], acc["correct"], acc["total"], acc["accuracy_job"]), file=sys.stderr)
    for name, message in failures:
        print("%s: FAILED: %s: %s" % (PROG, name, message), file=sys.stderr)
    return EXIT_FAILED if failures else 0


if __name__ == "__main__":
    sys.exit(main())
