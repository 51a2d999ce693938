"""verify_inference.py: its arithmetic and checks, and the whole client against a stand-in server.

The stand-in speaks the v2/v1 subset the real one does (validating with the model server's own
functions) over real HTTP on 127.0.0.1; the real KServe server is tests/integration/mlops-native.sh's.
"""
import http.server
import json
import threading
from types import SimpleNamespace

import pytest

FEATURES = 4


def test_urls_and_levels(verify):
    assert verify.parse_url("http://127.0.0.1:8080") == ("127.0.0.1", 8080, "")
    assert verify.parse_url("http://host:9/prefix/") == ("host", 9, "/prefix")
    assert verify.parse_concurrency("4,8") == [4, 8]
    for bad in ("https://h:1", "127.0.0.1:8080", "http://:80"):
        with pytest.raises(Exception, match="is not an http://HOST:PORT URL"):
            verify.parse_url(bad)
    for bad in ("0", "a,b", "", "4,999"):
        with pytest.raises(Exception, match="client counts"):
            verify.parse_concurrency(bad)


def test_arguments(verify, tmp_path):
    base = ["--url", "http://127.0.0.1:1", "--model", "m", "--data", "d.npz"]
    args = verify.parse_args(base + ["--expect-accuracy", "0.9777"])
    assert args.expect_accuracy == 0.9777 and args.concurrency == [4] and args.p95_max_ms is None
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"test_accuracy": 0.5}))
    assert verify.parse_args(base + ["--result-file", str(result)]).expect_accuracy == 0.5
    result.write_text(json.dumps({"test_accuracy": "high"}))
    with pytest.raises(verify.UsageError, match="has no test_accuracy between 0 and 1"):
        verify.parse_args(base + ["--result-file", str(result)])
    with pytest.raises(verify.UsageError, match="one of the arguments --expect-accuracy --result-file is required"):
        verify.parse_args(base)
    with pytest.raises(verify.UsageError, match="--expect-accuracy: 2 is not an accuracy"):
        verify.parse_args(base + ["--expect-accuracy", "2"])


def test_expected_correct(verify):
    assert verify.expected_correct(351 / 359, 359) == 351
    assert verify.expected_correct(1.0, 359) == 359
    assert verify.expected_correct(0.0, 359) == 0
    assert verify.expected_correct(0.5, 359) is None  # not k/359: another data file's accuracy
    assert verify.expected_correct(0.5, 0) is None


def test_percentile_is_numpys_linear(verify):
    assert verify.percentile([4, 1, 3, 2], 50) == 2.5
    assert verify.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert verify.percentile([7], 95) == 7
    assert verify.percentile(list(range(101)), 95) == 95
    assert verify.percentile([], 50) is None


def test_batches_and_bodies(verify):
    assert verify.batches(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert verify.batches(0, 2) == []
    body = verify.v2_body([[1, 2], [3, 4]], 2)
    assert body == {"inputs": [{"name": "pixels", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def test_v2_predictions(verify):
    good = {"outputs": [{"name": "logits"}, {"name": "predictions", "datatype": "INT64", "shape": [2], "data": [3, 1]}]}
    assert verify.v2_predictions(good, 2) == [3, 1]
    with pytest.raises(ValueError, match=r"predictions output is INT64 \[2\], expected INT64 \[3\]"):
        verify.v2_predictions(good, 3)
    with pytest.raises(ValueError, match="no 'predictions' output"):
        verify.v2_predictions({"outputs": [{"name": "logits"}]}, 1)
    with pytest.raises(ValueError, match="no outputs list"):
        verify.v2_predictions({"error": "x"}, 1)
    bad = {"outputs": [{"name": "predictions", "datatype": "INT64", "shape": [1], "data": [1.5]}]}
    with pytest.raises(ValueError, match="not 1 integer labels"):
        verify.v2_predictions(bad, 1)


def test_the_malformed_requests_are_refused_by_the_servers_own_checks(verify, server):
    """Each v2/v1 case the client sends must be one the model server's validation refuses."""
    refused_by_kserve = {"not_json", "missing_inputs", "unknown_model", "v1_not_json"}
    cases = verify.malformed_cases("m", 64, max_batch=1024)
    assert len({c[0] for c in cases}) == len(cases) >= 10
    for name, path, body, _ctype in cases:
        if name in refused_by_kserve:
            continue
        payload = json.loads(body)
        with pytest.raises(server.PayloadError):
            if path.endswith(":predict"):
                server.check_v1_request(payload, 64, 1024)
            else:
                inputs = [(i["name"], i["datatype"], i["shape"], i["data"]) for i in payload["inputs"]]
                item_name, rows = server.check_v2_request(inputs, 64, 1024)
                server.check_v2_data(item_name, payload["inputs"][0]["data"], rows, 64)


def test_error_messages(verify):
    assert verify.error_message(b'{"error": "bad shape"}') == "bad shape"
    assert verify.error_message(b'{"detail": [{"msg": "Field required"}]}') == '[{"msg": "Field required"}]'
    assert verify.error_message(b"plain text\n") == "plain text"
    assert verify.error_message(b"{}") == ""


def args_for(**kw):
    base = {"expect_version": None, "p95_max_ms": None, "min_rps": None, "min_accuracy": None}
    base.update(kw)
    return SimpleNamespace(**base)


def passing_summary():
    return {"ready": True, "model_version": "3",
            "accuracy": {"accuracy_api": 0.5, "accuracy_job": 0.5, "correct": 2, "total": 4, "expected_correct": 2},
            "v1": {"ok": True}, "latency": {"requests": 10, "errors": 0, "p95_ms": 40.0},
            "throughput": [{"concurrency": 4, "errors": 0, "rps": 20.0}],
            "malformed": [{"case": "x", "ok": True, "status": 400, "message": "m"}], "ready_after": True}


def test_evaluate(verify):
    assert verify.evaluate(passing_summary(), args_for()) == []
    # thresholds count only when given
    assert [f[0] for f in verify.evaluate(passing_summary(), args_for(p95_max_ms=30, min_rps=50))] == ["p95", "rps"]
    assert verify.evaluate(passing_summary(), args_for(p95_max_ms=50, min_rps=10, expect_version="3")) == []
    summary = passing_summary()
    summary["accuracy"].update(correct=1, accuracy_api=0.25)
    assert verify.evaluate(summary, args_for()) == [("accuracy", "API 0.250000 (1/4) != job 0.500000 (2/4)")]
    assert verify.evaluate(passing_summary(), args_for(min_accuracy=0.5)) == []
    assert verify.evaluate(passing_summary(), args_for(min_accuracy=0.95)) == [
        ("min_accuracy", "API accuracy 0.500000 < 0.95 (--min-accuracy)")]
    summary = passing_summary()
    summary["malformed"][0].update(ok=False, status=500)
    summary["ready_after"] = False
    assert [f[0] for f in verify.evaluate(summary, args_for(expect_version="4"))] == ["version", "malformed", "ready_after"]
    assert verify.evaluate({"ready": False, "ready_error": "server unreachable: x"}, args_for()) == [
        ("ready", "server unreachable: x")]


class StandIn(http.server.BaseHTTPRequestHandler):
    """A v2/v1 model server whose 'model' predicts the first pixel, validated like the real one."""

    server_module = None
    wrong = False

    def log_message(self, *_args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path in ("/v2/health/ready", "/v2/models/m/ready"):
            return self.reply(200, {"ready": True})
        if self.path == "/v2/models/m":
            return self.reply(200, {"name": "m", "versions": ["3"], "platform": "",
                                    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, FEATURES]}]})
        return self.reply(404, {"error": "no route"})

    def do_POST(self):  # noqa: N802
        srv = self.server_module
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            payload = json.loads(raw)
        except ValueError:
            return self.reply(422, {"detail": "JSON decode error"})
        try:
            if self.path == "/v2/models/m/infer":
                if "inputs" not in payload:
                    return self.reply(422, {"detail": "inputs: Field required"})
                inputs = [(i["name"], i["datatype"], i["shape"], i["data"]) for i in payload["inputs"]]
                name, rows = srv.check_v2_request(inputs, FEATURES, 1024)
                flat = srv.check_v2_data(name, payload["inputs"][0]["data"], rows, FEATURES)
                labels = [int(flat[r * FEATURES]) + (1 if self.wrong else 0) for r in range(rows)]
                return self.reply(200, {"outputs": [{"name": "predictions", "datatype": "INT64", "shape": [rows],
                                                     "data": labels}]})
            if self.path == "/v1/models/m:predict":
                rows = srv.check_v1_request(payload, FEATURES, 1024)
                return self.reply(200, {"predictions": [int(r[0]) for r in rows]})
        except srv.PayloadError as exc:
            return self.reply(400, {"error": str(exc)})
        return self.reply(404, {"error": "Model with name %s does not exist." % self.path})


@pytest.fixture
def stand_in(server):
    handler = type("Handler", (StandIn,), {"server_module": server})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def run_verify(verify, monkeypatch, capsys, port, expect, *extra):
    # Ten test images whose label is their first pixel; one is labelled wrong, so 9/10 are right.
    X = [[float(i % 10), 0.0, 1.0, 2.0] for i in range(10)]
    y = [i % 10 for i in range(10)]
    y[3] = 9
    monkeypatch.setattr(verify, "load_test_set", lambda path: (X, y, FEATURES))
    code = verify.main(["--url", "http://127.0.0.1:%d" % port, "--model", "m", "--data", "unused.npz",
                        "--expect-accuracy", expect, "--batch-size", "4", "--requests", "20", "--concurrency", "2,3",
                        "--duration", "2", "--throughput-requests", "30"] + list(extra))
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_verify_passes_against_a_correct_server(verify, monkeypatch, capsys, stand_in):
    httpd = stand_in[0]
    code, summary, err = run_verify(verify, monkeypatch, capsys, httpd.server_address[1], "0.9", "--expect-version", "3")
    assert code == 0, err
    assert summary["passed"] and summary["failed_checks"] == []
    assert summary["accuracy"]["correct"] == 9 and summary["accuracy"]["accuracy_api"] == 0.9
    assert summary["model_version"] == "3" and summary["v1"]["ok"]
    assert summary["latency"]["requests"] == 20 and summary["latency"]["errors"] == 0
    assert [t["concurrency"] for t in summary["throughput"]] == [2, 3]
    assert all(t["requests"] == 30 and t["errors"] == 0 for t in summary["throughput"])
    assert all(case["ok"] for case in summary["malformed"]) and summary["ready_after"]
    assert "accuracy over the API 0.900000 (9/10), training job 0.900000" in err


def test_verify_fails_on_another_accuracy_and_names_it(verify, monkeypatch, capsys, stand_in):
    httpd = stand_in[0]
    code, summary, err = run_verify(verify, monkeypatch, capsys, httpd.server_address[1], "1.0", "--no-malformed",
                                    "--expect-version", "4")
    assert code == 1 and summary["failed_checks"] == ["version", "accuracy"]
    assert "verify_inference: FAILED: accuracy: API 0.900000 (9/10) != job 1.000000 (10/10)" in err
    assert "verify_inference: FAILED: version: the server serves version 3, expected 4" in err


def test_verify_fails_when_the_model_is_wrong(verify, monkeypatch, capsys, stand_in):
    """v2 answers off by one (v1 does not): the accuracy check fails, and v1 disagrees with v2."""
    httpd, handler = stand_in
    handler.wrong = True
    code, summary = run_verify(verify, monkeypatch, capsys, httpd.server_address[1], "0.9", "--no-malformed")[:2]
    assert code == 1 and summary["failed_checks"] == ["accuracy", "v1"]
    assert summary["accuracy"]["correct"] == 0


def test_thresholds_fail_only_when_given(verify, monkeypatch, capsys, stand_in):
    httpd = stand_in[0]
    code, summary, err = run_verify(verify, monkeypatch, capsys, httpd.server_address[1], "0.9", "--no-malformed",
                                    "--p95-max-ms", "0.0001", "--min-rps", "1000000")
    assert code == 1 and summary["failed_checks"] == ["p95", "rps", "rps"]
    assert "(--p95-max-ms)" in err and "(--min-rps)" in err


def test_unreachable_server(verify, monkeypatch, capsys, closed_port):
    code, summary, err = run_verify(verify, monkeypatch, capsys, closed_port, "0.9")
    assert code == 1 and summary["failed_checks"] == ["ready"]
    assert "verify_inference: FAILED: ready: server unreachable" in err


def test_help(verify, capsys):
    with pytest.raises(SystemExit) as done:
        verify.build_parser().parse_args(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out
