#!/usr/bin/env bash
# Inference benchmark of the lab's model server, natively on loopback (no VMs): one model trained
# with two local DDP ranks and registered in MLflow (PostgreSQL backend, as tests/integration/
# mlops-native.sh sets it up), then RUNS times: start KServe's server on models:/digits-cnn@champion
# (cold start: launch -> model ready), verify_inference.py (accuracy == the job's, latency of single-image
# requests one after the other, requests/s with 4 and 8 concurrent clients), stop it. Prints the
# medians, the machine's load (uptime) before and after, and writes them as JSON to $BENCH_OUT.
#   benchmarks/inference_native.sh               RUNS=5, 200 latency requests, 10 s / 3000 requests per level
#   RUNS=3 DURATION=5 benchmarks/inference_native.sh
#   MLSERVER_VENV=/tmp/mlserver-venv benchmarks/inference_native.sh   also MLServer, the same way (see below)
# Root and Debian's postgresql-15 (see tests/integration/mlops-native-lib.sh); about 4 minutes with RUNS=5.
set -euo pipefail
MLOPS_TAG=inference-native
# shellcheck source=tests/integration/mlops-native-lib.sh
source "$(dirname "$0")/../tests/integration/mlops-native-lib.sh"
RUNS=${RUNS:-5}
REQUESTS=${REQUESTS:-200}
DURATION=${DURATION:-10}
THROUGHPUT_REQUESTS=${THROUGHPUT_REQUESTS:-3000}
CONCURRENCY=${CONCURRENCY:-4,8}
MODEL=digits-cnn

LOAD_BEFORE=$(uptime)
echo "load before: $LOAD_BEFORE"
mlops_init
BENCH_OUT=${BENCH_OUT:-$S/inference-native.json}
phase "setup: venv, PostgreSQL, MLflow, train (2 ranks), register, promote"
mlops_venv
mlops_start_postgres
mlops_start_mlflow
mlops_train good 2 --data-dir "$S/data" --experiment digits --epochs "${EPOCHS:-20}"
[ "$TRAIN_RC" = 0 ] || mlops_fail "training exited $TRAIN_RC: $S/train-good-r0.log"
ACC=$(mlops_json "$S/result-good.json" test_accuracy)
mlops_registry "$S/reg.json" register --name "$MODEL" --result-file "$S/result-good.json"
mlops_registry "$S/promote.json" promote --name "$MODEL" --version "$(mlops_json "$S/reg.json" version)" \
  --alias champion --min-accuracy 0.95
[ "$REG_RC" = 0 ] || mlops_fail "promote failed: $(cat "$S/promote.json.err")"

SERVER_ARGS=(--no-request-log)   # a log line per request is the journal's cost, not the server's
COLD=()
for ((i = 1; i <= RUNS; i++)); do
  phase "run $i/$RUNS: cold start + verify"
  mlops_start_server "$MODEL" "models:/$MODEL@champion"
  COLD+=("$COLD_START")
  echo "cold start ${COLD_START}s (the server's own count: ${SERVER_OWN_COLD_START:-?}s)"
  mlops_verify "$S/verify-$i.json" --model "$MODEL" --data "$S/data/digits.npz" --expect-accuracy "$ACC" \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --throughput-requests "$THROUGHPUT_REQUESTS" --no-malformed
  [ "$VERIFY_RC" = 0 ] || mlops_fail "verify failed in run $i: $S/verify-$i.json"
  mlops_stop_server
done

# MLServer for comparison, when MLSERVER_VENV names a venv with mlserver 1.7.1 + mlserver-mlflow 1.7.1
# (they need fastapi < 0.116, so not in the lock's venv, where kserve 0.21 has 0.165): the same model
# from the same alias, single process (parallel_workers 0, as KServe's one worker), one torch thread, on
# 127.0.0.1.
# Its v2 answer is the model's raw output (logits), so the accuracy is the argmax here; v1 is probed.
MLS_COLD=()
if [ -n "${MLSERVER_VENV:-}" ]; then
  [ -x "$MLSERVER_VENV/bin/mlserver" ] || mlops_fail "MLSERVER_VENV=$MLSERVER_VENV has no bin/mlserver"
  for ((i = 1; i <= RUNS; i++)); do
    phase "MLServer run $i/$RUNS: cold start + the same measurements"
    mls=$S/mlserver-$i
    mkdir -p "$mls"
    MLS_PORT=$(mlops_free_port)
    printf '{"host": "127.0.0.1", "http_port": %s, "grpc_port": %s, "metrics_port": %s, "parallel_workers": 0, "debug": false}\n' \
      "$MLS_PORT" "$(mlops_free_port)" "$(mlops_free_port)" >"$mls/settings.json"
    printf '{"name": "%s", "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": "models:/%s@champion"}}\n' \
      "$MODEL" "$MODEL" >"$mls/model-settings.json"
    t0=$EPOCHREALTIME
    # one torch thread, as the KServe server's default --threads 1
    OMP_NUM_THREADS=1 mlops_bg "$S/mlserver-$i.log" "$MLSERVER_VENV/bin/mlserver" start "$mls"
    MLS_PID=$MLOPS_BG_PID
    mlops_wait_http "http://127.0.0.1:$MLS_PORT/v2/models/$MODEL/ready" 240 || mlops_fail "MLServer did not come up: $S/mlserver-$i.log"
    MLS_COLD+=("$(mlops_since "$t0")")
    echo "cold start ${MLS_COLD[-1]}s"
    "$MLOPS_PY" - "$MLOPS_FILES/verify_inference.py" "$MLS_PORT" "$MODEL" "$S/data/digits.npz" "$REQUESTS" "$DURATION" \
      "$THROUGHPUT_REQUESTS" "$CONCURRENCY" "$S/mlserver-$i.json" <<'PY' || mlops_fail "measuring MLServer failed"
import importlib.util, json, os, sys, types
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # its sibling workflow_cli.py, as when it runs by path
spec = importlib.util.spec_from_file_location("verify_inference", sys.argv[1])
v = importlib.util.module_from_spec(spec)
spec.loader.exec_module(v)
port, model, data = int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = types.SimpleNamespace(model=model, requests=int(sys.argv[5]), duration=float(sys.argv[6]),
                             throughput_requests=int(sys.argv[7]), timeout=30.0)
X, y, features = v.load_test_set(data)
client = v.Client("127.0.0.1", port, "", 30.0)
correct = 0
for start, stop in v.batches(len(X), 128):
    status, body = client.json("POST", "/v2/models/%s/infer" % model, v.v2_body(X[start:stop], features))
    assert status == 200, (status, body[:300])
    out = json.loads(body)["outputs"][0]
    rows, classes = out["shape"]
    logits = out["data"]
    for r in range(rows):
        row = logits[r * classes:(r + 1) * classes]
        correct += row.index(max(row)) == y[start + r]
v1_status = client.json("POST", "/v1/models/%s:predict" % model, {"instances": X[:1]})[0]
result = {"accuracy_api": correct / len(y), "v1_status": v1_status, "v2_output": out["name"],
          "latency": v.run_latency(client, args, X, features),
          "throughput": [v.run_throughput("127.0.0.1", port, "", args, X, features, c)
                         for c in v.parse_concurrency(sys.argv[8])]}
json.dump(result, open(sys.argv[9], "w"))
PY
    mlops_stop "$MLS_PID"
  done
fi
phase_end
LOAD_AFTER=$(uptime)

"$MLOPS_PY" - "$S" "$RUNS" "$BENCH_OUT" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" "${COLD[*]}" "${MLS_COLD[*]}" <<'PY'
import json, os, statistics, sys
s, runs, out, before, after, cpus = sys.argv[1:7]
cold = [float(c) for c in sys.argv[7].split()]
mls_cold = [float(c) for c in sys.argv[8].split()]
summaries = [json.load(open("%s/verify-%d.json" % (s, i))) for i in range(1, int(runs) + 1)]
levels = sorted({t["concurrency"] for v in summaries for t in v["throughput"]})
med = statistics.median
result = {
    "runs": int(runs), "cpus": int(cpus), "load_before": before.strip(), "load_after": after.strip(),
    "accuracy_api": summaries[0]["accuracy"]["accuracy_api"], "accuracy_job": summaries[0]["accuracy"]["accuracy_job"],
    "cold_start_s": {"median": round(med(cold), 2), "all": cold},
    "latency_ms": {k: {"median": round(med(v["latency"][k] for v in summaries), 2),
                       "all": [v["latency"][k] for v in summaries]} for k in ("p50_ms", "p95_ms", "p99_ms")},
    "requests_per_latency_run": summaries[0]["latency"]["requests"],
    "rps": {str(c): {"median": round(med(t["rps"] for v in summaries for t in v["throughput"] if t["concurrency"] == c), 1),
                     "all": [t["rps"] for v in summaries for t in v["throughput"] if t["concurrency"] == c],
                     "p95_ms_median": round(med(t["p95_ms"] for v in summaries for t in v["throughput"]
                                                if t["concurrency"] == c), 2)} for c in levels},
}
mls = [json.load(open("%s/mlserver-%d.json" % (s, i))) for i in range(1, int(runs) + 1)
       if os.path.exists("%s/mlserver-%d.json" % (s, i))]
if mls:
    result["mlserver"] = {
        "accuracy_api": mls[0]["accuracy_api"], "v1_status": mls[0]["v1_status"], "v2_output": mls[0]["v2_output"],
        "cold_start_s": {"median": round(med(mls_cold), 2), "all": mls_cold},
        "latency_ms": {k: {"median": round(med(m["latency"][k] for m in mls), 2), "all": [m["latency"][k] for m in mls]}
                       for k in ("p50_ms", "p95_ms", "p99_ms")},
        "rps": {str(c): {"median": round(med(t["rps"] for m in mls for t in m["throughput"] if t["concurrency"] == c), 1),
                         "all": [t["rps"] for m in mls for t in m["throughput"] if t["concurrency"] == c]} for c in levels},
    }
with open(out, "w") as handle:
    json.dump(result, handle, indent=2)
print("\ninference-native: %d runs on %s CPUs (medians)" % (result["runs"], cpus))
print("  accuracy over the API %.4f == job %.4f" % (result["accuracy_api"], result["accuracy_job"]))
print("  cold start (launch -> model ready): %.2f s   all: %s" % (result["cold_start_s"]["median"], cold))
for k in ("p50_ms", "p95_ms", "p99_ms"):
    print("  latency %s (single image, sequential, %d requests): %.2f   all: %s" % (
        k[:3], result["requests_per_latency_run"], result["latency_ms"][k]["median"], result["latency_ms"][k]["all"]))
for c in levels:
    r = result["rps"][str(c)]
    print("  %d clients: %.1f requests/s (P95 %.1f ms)   all: %s" % (c, r["median"], r["p95_ms_median"], r["all"]))
if mls:
    m = result["mlserver"]
    print("  MLServer 1.7.1 (same model and alias): accuracy %.4f (argmax of %s), v1 :predict -> HTTP %s" % (
        m["accuracy_api"], m["v2_output"], m["v1_status"]))
    print("    cold start %.2f s; latency p50 %.2f, p95 %.2f ms; %s" % (
        m["cold_start_s"]["median"], m["latency_ms"]["p50_ms"]["median"], m["latency_ms"]["p95_ms"]["median"],
        ", ".join("%s clients %.1f requests/s" % (c, r["median"]) for c, r in m["rps"].items())))
print("  load before: %s\n  load after:  %s" % (before.strip(), after.strip()))
print("  JSON: %s" % out)
PY
mlops_print_timings
if [ "$BENCH_OUT" = "$S/inference-native.json" ]; then
  cat "$BENCH_OUT"   # the scratch directory goes away at exit
fi
