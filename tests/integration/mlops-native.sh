#!/usr/bin/env bash
# The ML workflow end to end on this machine, with the real components on loopback (no VMs): a
# throwaway PostgreSQL 15 cluster, MLflow's tracking server on it (artifacts served by MLflow), the
# training job with two local torch DDP ranks (gloo), the registry script, KServe's model server and
# the verification client -- the programs the roles install in the VMs, run from this checkout.
#
#   train (2 ranks) -> register -> promote (gate accepts) -> serve models:/digits-cnn@champion -> verify
#   (API accuracy == job accuracy, P95, requests/s, cold start, malformed requests get 4xx)
#   -> rollback drill: train a bad model (--max-steps 1 --min-accuracy 0) -> register -> promote
#   refused by the gate -> promote --force -> restart the server -> verify fails (accuracy) -> rollback
#   -> restart -> verify passes again.
# Also: register/promote again are changed false; the job's own gate (exit 3, run FAILED in MLflow);
# the MNIST idx path (synthetic idx files, 28x28) trains and logs a 784-pixel model; clear errors
# (exit 2) for an unknown model, an unreachable server, a rollback with nothing to roll back to; the training in
# the container image's view of the venv (tests/integration/container_image_view.py).
#
# Root (the PostgreSQL cluster runs as the postgres user); Debian packages postgresql-15, util-linux,
# python3-venv. Creates .venv-mlops (the cloud image's lock, --no-deps) when missing; installs nothing
# else. Every process is stopped by PID at exit, pass or fail. KEEP=1 keeps the scratch directory
# (also kept on failure). About 4 minutes on 2 shared cores, once the venv exists.
set -euo pipefail
MLOPS_TAG=mlops-native
# shellcheck source=tests/integration/mlops-native-lib.sh
source "$(dirname "$0")/mlops-native-lib.sh"
MODEL=digits-cnn
T_START=$EPOCHREALTIME

mlops_init
phase "venv .venv-mlops (images/defs/cloud-base/python.lock)"
mlops_venv

phase "PostgreSQL 15 (throwaway cluster, scram-sha-256)"
mlops_start_postgres

phase "MLflow tracking server (backend PostgreSQL, --serve-artifacts)"
mlops_start_mlflow

phase "train: 2 ranks, gloo"
mlops_train good 2 --data-dir "$S/data" --experiment digits --epochs "${EPOCHS:-20}"
[ "$TRAIN_RC" = 0 ] || mlops_fail "training exited $TRAIN_RC: $S/train-good-r0.log"
GOOD=$S/result-good.json
mlops_expect "$GOOD" 'r["world_size"] == 2 and r["backend"] == "gloo" and r["test_accuracy"] >= 0.95 and r["gate_passed"]' \
  "the 2-rank job reaches test_accuracy >= 0.95 with gloo"
GOOD_ACC=$(mlops_json "$GOOD" test_accuracy)
GOOD_RUN=$(mlops_json "$GOOD" run_id)
[ "$(mlops_run_status "$GOOD_RUN")" = FINISHED ] || mlops_fail "run $GOOD_RUN is not FINISHED in MLflow"
[ -f "$S/data/digits.npz" ] || mlops_fail "rank 0 did not write $S/data/digits.npz"
for r in 0 1; do
  grep -q 'GLOO_SOCKET_IFNAME=lo (127.0.0.1, the route to 127.0.0.1)' "$S/train-good-r$r.log" \
    || mlops_fail "rank $r did not pick the loopback interface for gloo: $S/train-good-r$r.log"
done
mlops_log "job: test_accuracy $GOOD_ACC, $(mlops_json "$GOOD" steps) steps, $(mlops_json "$GOOD" seconds) s (run $GOOD_RUN)"

# roles/container_runtime's image leaves packages out of the venv (container_runtime_image_exclude): the
# training must still log its model in that view (a SciPy exclusion once broke it only inside the image).
phase "train in the container image's view of the venv (its exclusions)"
mkdir -p "$S/image-view"
"$MLOPS_PY" "$MLOPS_REPO/tests/integration/container_image_view.py" --venv "$MLOPS_VENV" --work "$S/image-view" \
  >"$S/image-view.log" 2>&1 || mlops_fail "training in the container image's view failed: $S/image-view.log"
mlops_log "$(tail -n 1 "$S/image-view.log")"

phase "register + promote (gate accepts), again: changed false"
mlops_registry "$S/reg-good.json" register --name "$MODEL" --result-file "$GOOD"
mlops_expect "$S/reg-good.json" 'r["changed"] is True and r["version"] == "1"' "register creates version 1"
mlops_registry "$S/reg-good-again.json" register --name "$MODEL" --run-id "$GOOD_RUN"
mlops_expect "$S/reg-good-again.json" 'r["changed"] is False and r["version"] == "1"' "register again is changed false"
mlops_registry "$S/promote-1.json" promote --name "$MODEL" --version 1 --alias champion --min-accuracy 0.95
mlops_expect "$S/promote-1.json" 'r["changed"] is True and r["previous_version"] is None' "promote version 1 is accepted"
mlops_registry "$S/promote-1-again.json" promote --name "$MODEL" --version 1 --alias champion --min-accuracy 0.95
mlops_expect "$S/promote-1-again.json" 'r["changed"] is False' "promote version 1 again is changed false"
mlops_registry "$S/show-1.json" show --name "$MODEL" --alias champion
mlops_expect "$S/show-1.json" "r['version'] == '1' and r['run_id'] == '$GOOD_RUN' and abs(r['test_accuracy'] - $GOOD_ACC) < 1e-12" \
  "show names version 1 with the job's run and accuracy"

phase "serve models:/$MODEL@champion (KServe) + verify"
mlops_start_server "$MODEL" "models:/$MODEL@champion"
COLD_1=$COLD_START
mlops_log "cold start ${COLD_START}s (launch -> ready, measured here; the server says ${SERVER_OWN_COLD_START:-?}s)"
mlops_verify "$S/verify-good.json" --model "$MODEL" --data "$S/data/digits.npz" --expect-accuracy "$GOOD_ACC" \
  --expect-version 1 --requests 200 --concurrency 4 --duration 5 --throughput-requests 1500
[ "$VERIFY_RC" = 0 ] || mlops_fail "verify failed against version 1 (exit $VERIFY_RC): $S/verify-good.json"
mlops_expect "$S/verify-good.json" 'r["accuracy"]["correct"] == r["accuracy"]["expected_correct"] and r["model_version"] == "1" and all(c["ok"] for c in r["malformed"]) and r["ready_after"]' \
  "verify: API accuracy equals the job's, malformed requests get 4xx, the server stays ready"
if grep -q Traceback "$MLOPS_SERVER_LOG"; then
  mlops_fail "the model server logged a traceback (a bad request deserves one line): $MLOPS_SERVER_LOG"
fi
grep -q "WARNING.* 400 POST /v2/models/$MODEL/infer: input 'pixels': shape \[1, 63\]" "$MLOPS_SERVER_LOG" \
  || mlops_fail "the model server did not log the bad request in one line: $MLOPS_SERVER_LOG"

phase "rollback drill: train a bad model (1 step) + the job's own gate (exit 3) + MNIST idx path, in parallel"
mlops_stop_server   # the CPUs go to the three jobs; the server restarts below anyway
mkdir -p "$S/mnist"
"$MLOPS_PY" - "$S/mnist" <<'PY'
# Synthetic MNIST-format files: the digits upscaled to 28x28 (3x, padded), pixels 0..255; the training
# files gzipped, the test files plain, as both occur.
import gzip, struct, sys
import numpy as np
from sklearn.datasets import load_digits
d = load_digits()
images = np.pad(np.kron(d.images, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
images = (images * 15).astype(np.uint8)  # 0..240
labels = d.target.astype(np.uint8)
def idx(path, array, opener):
    with opener(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">%dI" % array.ndim, *array.shape))
        f.write(array.tobytes())
out = sys.argv[1]
idx(out + "/train-images-idx3-ubyte.gz", images[:1500], gzip.open)
idx(out + "/train-labels-idx1-ubyte.gz", labels[:1500], gzip.open)
idx(out + "/t10k-images-idx3-ubyte", images[1500:], open)
idx(out + "/t10k-labels-idx1-ubyte", labels[1500:], open)
PY
mlops_train_start bad 1 --data-dir "$S/data" --experiment digits --max-steps 1 --min-accuracy 0
mlops_train_start gate 1 --data-dir "$S/data" --experiment digits-gate-check --max-steps 1
mlops_train_start mnist 1 --data-dir "$S/data-mnist" --mnist-dir "$S/mnist" --experiment digits-mnist-check \
  --epochs 1 --max-steps 5 --min-accuracy 0
mlops_train_wait bad
BAD_RC=$TRAIN_RC
mlops_train_wait gate
GATE_RC=$TRAIN_RC
mlops_train_wait mnist
MNIST_RC=$TRAIN_RC
[ "$BAD_RC" = 0 ] || mlops_fail "bad-model training (--min-accuracy 0) exited $BAD_RC: $S/train-bad-r0.log"
BAD=$S/result-bad.json
BAD_ACC=$(mlops_json "$BAD" test_accuracy)
mlops_expect "$BAD" 'r["steps"] == 1 and r["test_accuracy"] < 0.95 and r["world_size"] == 1' "the bad model made 1 step and is below 0.95"
[ "$GATE_RC" = 3 ] || mlops_fail "the job's gate: --max-steps 1 with --min-accuracy 0.95 exited $GATE_RC, expected 3"
grep -q 'train_digits: FAILED: test_accuracy .* < 0.9500 (--min-accuracy)' "$S/train-gate-r0.log" \
  || mlops_fail "the job's gate did not print its one line: $S/train-gate-r0.log"
[ "$(mlops_run_status "$(mlops_json "$S/result-gate.json" run_id)")" = FAILED ] || mlops_fail "the gated run is not FAILED in MLflow"
[ "$MNIST_RC" = 0 ] || mlops_fail "MNIST training exited $MNIST_RC: $S/train-mnist-r0.log"
mlops_expect "$S/result-mnist.json" 'r["data_source"] == "mnist" and r["test_size"] == 297' "MNIST files are used (297 test images)"
"$MLOPS_PY" - "$S/data-mnist/mnist.npz" "$(mlops_json "$S/result-mnist.json" model_uri)" <<'PY' || mlops_fail "the MNIST data or model is wrong"
import sys
import numpy as np, mlflow
data = np.load(sys.argv[1])
assert data["X_train"].shape == (1500, 784) and data["X_test"].shape == (297, 784), data["X_train"].shape
assert data["X_train"].dtype == np.float32 and data["X_train"].max() == 240.0 and str(data["source"]) == "mnist"
model = mlflow.pyfunc.load_model(sys.argv[2])
shape = model.metadata.get_input_schema().inputs[0].shape
assert shape == (-1, 784), shape
assert model.predict(data["X_test"][:3]).shape == (3, 10)
PY
mlops_log "bad model: test_accuracy $BAD_ACC after 1 step; job gate: exit 3, run FAILED; MNIST: 784-pixel model logged"

phase "rollback drill: register, promote refused, promote --force, restart, verify fails"
mlops_registry "$S/reg-bad.json" register --name "$MODEL" --result-file "$BAD"
mlops_expect "$S/reg-bad.json" 'r["changed"] is True and r["version"] == "2"' "register the bad model as version 2"
mlops_registry "$S/promote-2.json" promote --name "$MODEL" --version 2 --alias champion --min-accuracy 0.95
[ "$REG_RC" = 3 ] || mlops_fail "promote of the bad version exited $REG_RC, expected 3 (refused)"
grep -q '^model_registry: refused: version 2 test_accuracy .* < 0.95 (mlops.promotion.min_accuracy)$' "$S/promote-2.json.err" \
  || mlops_fail "the refusal line is not as documented: $(cat "$S/promote-2.json.err")"
mlops_expect "$S/promote-2.json" 'r["changed"] is False and r["refused"] is True' "a refused promotion is changed false"
mlops_registry "$S/show-after-refused.json" show --name "$MODEL" --alias champion
mlops_expect "$S/show-after-refused.json" 'r["version"] == "1"' "champion stays on version 1 after the refusal"
mlops_registry "$S/promote-2-force.json" promote --name "$MODEL" --version 2 --alias champion --force
mlops_expect "$S/promote-2-force.json" 'r["changed"] is True and r["forced"] is True and r["previous_version"] == "1" and "skipped" in r["msg"]' \
  "promote --force moves champion to 2 and says the gate was skipped"
mlops_start_server "$MODEL" "models:/$MODEL@champion"
COLD_2=$COLD_START
mlops_verify "$S/verify-bad.json" --model "$MODEL" --data "$S/data/digits.npz" --expect-accuracy "$GOOD_ACC" \
  --requests 20 --throughput-requests 0 --no-malformed
[ "$VERIFY_RC" = 1 ] || mlops_fail "verify against the bad version exited $VERIFY_RC, expected 1 (accuracy)"
mlops_expect "$S/verify-bad.json" 'r["failed_checks"] == ["accuracy"] and r["model_version"] == "2"' \
  "verify fails on accuracy (only) with version 2 served"
# As the role runs it: the served version's own job accuracy (show), and the promotion gate as a floor.
mlops_verify "$S/verify-bad-gate.json" --model "$MODEL" --data "$S/data/digits.npz" --expect-accuracy "$BAD_ACC" \
  --min-accuracy 0.95 --requests 0 --throughput-requests 0 --no-malformed
[ "$VERIFY_RC" = 1 ] || mlops_fail "verify with --min-accuracy 0.95 against the bad version exited $VERIFY_RC, expected 1"
mlops_expect "$S/verify-bad-gate.json" 'r["failed_checks"] == ["min_accuracy"] and r["accuracy"]["correct"] == r["accuracy"]["expected_correct"]' \
  "verify: the bad version is served as trained (accuracy equal) but below --min-accuracy"
mlops_stop_server

phase "rollback, restart, verify passes again"
mlops_registry "$S/rollback.json" rollback --name "$MODEL" --alias champion
mlops_expect "$S/rollback.json" 'r["changed"] is True and r["version"] == "1" and r["rolled_back_from"] == "2"' "rollback to version 1"
mlops_registry "$S/show-after-rollback.json" show --name "$MODEL" --alias champion
mlops_expect "$S/show-after-rollback.json" 'r["version"] == "1" and r["aliases"].get("champion-rolled-back") == "2" and "champion-previous" not in r["aliases"]' \
  "after the rollback: champion=1, champion-rolled-back=2, no champion-previous"
mlops_start_server "$MODEL" "models:/$MODEL@champion"
COLD_3=$COLD_START
mlops_verify "$S/verify-rolled-back.json" --model "$MODEL" --data "$S/data/digits.npz" --expect-accuracy "$GOOD_ACC" \
  --expect-version 1 --min-accuracy 0.95 --requests 100 --throughput-requests 0
[ "$VERIFY_RC" = 0 ] || mlops_fail "verify after the rollback exited $VERIFY_RC: $S/verify-rolled-back.json"

phase "errors: one line, exit 2"
mlops_registry "$S/err-rollback.json" rollback --name "$MODEL" --alias champion
if [ "$REG_RC" != 2 ] || ! grep -q '^model_registry: error: rollback: no alias champion-previous' "$S/err-rollback.json.err"; then
  mlops_fail "a second rollback: exit $REG_RC, $(cat "$S/err-rollback.json.err")"
fi
mlops_registry "$S/err-model.json" show --name no-such-model
if [ "$REG_RC" != 2 ] || ! grep -q "^model_registry: error: unknown registered model 'no-such-model'" "$S/err-model.json.err"; then
  mlops_fail "unknown model: exit $REG_RC, $(cat "$S/err-model.json.err")"
fi
mlops_registry "$S/err-version.json" promote --name "$MODEL" --version 99 --min-accuracy 0.95
if [ "$REG_RC" != 2 ] || ! grep -q "^model_registry: error: unknown version 99 of model 'digits-cnn' (existing: 1, 2)" "$S/err-version.json.err"; then
  mlops_fail "unknown version: exit $REG_RC, $(cat "$S/err-version.json.err")"
fi
DEAD_PORT=$(mlops_free_port)
mlops_registry "$S/err-unreachable.json" --tracking-uri "http://127.0.0.1:$DEAD_PORT" show --name "$MODEL"
if [ "$REG_RC" != 2 ] || ! grep -q "^model_registry: error: MLflow tracking server http://127.0.0.1:$DEAD_PORT unreachable" "$S/err-unreachable.json.err"; then
  mlops_fail "unreachable server: exit $REG_RC, $(cat "$S/err-unreachable.json.err")"
fi
for f in "$S"/err-*.json.err; do
  [ "$(wc -l <"$f")" = 1 ] || mlops_fail "$f is not one line: $(cat "$f")"
done
mlops_stop_server
mlops_print_timings

"$MLOPS_PY" - "$S" "$COLD_1" "$COLD_2" "$COLD_3" "$(mlops_since "$T_START")" <<'PY'
import json, sys
s = sys.argv[1]
good, bad = (json.load(open("%s/result-%s.json" % (s, n))) for n in ("good", "bad"))
v = json.load(open(s + "/verify-good.json"))
rb = json.load(open(s + "/verify-rolled-back.json"))
vb = json.load(open(s + "/verify-bad.json"))
print("\nmlops-native: PASS in %.0f s" % float(sys.argv[5]))
print("  training (2 ranks, gloo): test_accuracy %.4f (%d/%d), %d epochs, %d steps, %.1f s in the job"
      % (good["test_accuracy"], good["test_correct"], good["test_size"], good["epochs"], good["steps"], good["seconds"]))
print("  bad model (1 step): test_accuracy %.4f; over the API with it served: %.4f (verify failed: %s)"
      % (bad["test_accuracy"], vb["accuracy"]["accuracy_api"], ", ".join(vb["failed_checks"])))
print("  API accuracy %.4f == job %.4f; after the rollback %.4f" % (
    v["accuracy"]["accuracy_api"], v["accuracy"]["accuracy_job"], rb["accuracy"]["accuracy_api"]))
lat, tp = v["latency"], v["throughput"][0]
print("  latency (single image, sequential, %d requests): p50 %.1f ms, p95 %.1f ms; %.0f requests/s with %d clients"
      % (lat["requests"], lat["p50_ms"], lat["p95_ms"], tp["rps"], tp["concurrency"]))
print("  cold start (launch -> model ready): %s s, %s s, %s s" % tuple(sys.argv[2:5]))
print("  malformed requests: %d cases, all 4xx with a message; server ready after" % len(v["malformed"]))
PY
