# shellcheck shell=bash disable=SC2034  # it sets variables (TRAIN_RC, REG_RC, ...) for the scripts that source it
# The ML workflow's real components on loopback, shared by tests/integration/mlops-native.sh and
# benchmarks/inference_native.sh (sourced, not run): the venv .venv-mlops from the cloud image's lock,
# a throwaway PostgreSQL 15 cluster (run as the postgres user, scram-sha-256 password for an mlflow
# role), an MLflow tracking server on it, the training job, the registry script and the KServe model
# server. Everything listens on 127.0.0.1 on free ports, lives under one scratch directory and is
# stopped by PID (process group) in mlops_cleanup, which the callers trap on EXIT.
# Needs root (the PostgreSQL cluster runs as the postgres user) and Debian's postgresql-15.

MLOPS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MLOPS_VENV=${MLOPS_VENV:-$MLOPS_REPO/.venv-mlops}
MLOPS_LOCK=$MLOPS_REPO/images/defs/cloud-base/python.lock
MLOPS_PY=$MLOPS_VENV/bin/python
MLOPS_FILES=$MLOPS_REPO/roles/mlops_pipeline/files
MLOPS_SERVER_PY=$MLOPS_REPO/roles/model_server/files/hyperscaler_model_server.py
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
MLOPS_PIDS=()          # process group leaders to stop, in start order
MLOPS_PG_DATA=""
MLOPS_SERVER_PID=""
SERVER_ARGS=()         # more model server arguments
MLOPS_TAG=${MLOPS_TAG:-mlops-native}

mlops_log() { printf '%s: %s\n' "$MLOPS_TAG" "$*" >&2; }
mlops_fail() { printf '%s: FAIL: %s\n' "$MLOPS_TAG" "$*" >&2; exit 1; }

# Seconds since $1 (an EPOCHREALTIME value), one decimal.
mlops_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# phase NAME: closes the previous phase (prints its time) and opens NAME; phase_end closes the last one.
MLOPS_PHASE=""
MLOPS_PHASE_T=""
MLOPS_TIMINGS=()
phase() {
  phase_end
  MLOPS_PHASE=$1
  MLOPS_PHASE_T=$EPOCHREALTIME
  printf '\n=== %s: %s\n' "$MLOPS_TAG" "$MLOPS_PHASE"
}
phase_end() {
  if [ -n "$MLOPS_PHASE" ]; then
    local took
    took=$(mlops_since "$MLOPS_PHASE_T")
    MLOPS_TIMINGS+=("$(printf '%7ss  %s' "$took" "$MLOPS_PHASE")")
    printf -- '--- %s: %s took %ss\n' "$MLOPS_TAG" "$MLOPS_PHASE" "$took"
    MLOPS_PHASE=""
  fi
}
mlops_print_timings() {
  phase_end
  printf '\n%s: timings per phase\n' "$MLOPS_TAG"
  printf '  %s\n' "${MLOPS_TIMINGS[@]}"
}

# mlops_init: checks, the scratch directory $S, the trap.
mlops_init() {
  [ "$(id -u)" = 0 ] || mlops_fail "run as root (the throwaway PostgreSQL cluster runs as the postgres user)"
  local tool
  for tool in initdb pg_ctl psql; do
    [ -x "$PGBIN/$tool" ] || mlops_fail "PostgreSQL 15 is missing ($PGBIN/$tool): apt-get install postgresql-15"
  done
  id postgres >/dev/null 2>&1 || mlops_fail "no postgres user (Debian's postgresql-15 creates it)"
  for tool in runuser setsid; do
    command -v "$tool" >/dev/null || mlops_fail "$tool is missing (Debian: util-linux)"
  done
  S=$(mktemp -d "${TMPDIR:-/tmp}/$MLOPS_TAG.XXXXXX")
  chmod 711 "$S"   # the postgres user reaches its own subdirectory, nothing else
  trap mlops_cleanup EXIT
  trap 'exit 130' INT TERM
  unset GLOO_SOCKET_IFNAME       # train_digits.py picks the interface of its route to 127.0.0.1: lo
  export PYTHONDONTWRITEBYTECODE=1
  unset MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
}

# mlops_venv: .venv-mlops from the cloud image's lock (every dependency pinned, --no-deps); reused
# while the lock is unchanged.
mlops_venv() {
  local stamp
  stamp="$MLOPS_VENV/.lock-$(sha256sum "$MLOPS_LOCK" | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    mlops_log "creating $MLOPS_VENV from $MLOPS_LOCK (a few minutes)"
    [ -x "$MLOPS_PY" ] || python3 -m venv "$MLOPS_VENV" || mlops_fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$MLOPS_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$MLOPS_LOCK" \
      || mlops_fail "pip install -r $MLOPS_LOCK failed"
    rm -f "$MLOPS_VENV"/.lock-*
    touch "$stamp"
  fi
  "$MLOPS_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || mlops_fail "$MLOPS_VENV is not Python 3.11 (the VMs' /opt/aihow/venv is)"
}

mlops_free_port() {
  "$MLOPS_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# mlops_wait_http URL TIMEOUT: waits for HTTP 200; prints nothing, fails after TIMEOUT seconds.
mlops_wait_http() {
  "$MLOPS_PY" - "$1" "$2" <<'PY' || return 1
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
deadline = time.time() + limit
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("no HTTP 200 from %s within %.0f s" % (url, limit))
    time.sleep(0.1)
PY
}

# mlops_bg LOGFILE CMD...: starts CMD in its own session (process group = its PID), records the PID in
# MLOPS_BG_PID and MLOPS_PIDS.
mlops_bg() {
  local logfile=$1
  shift
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  MLOPS_BG_PID=$!
  MLOPS_PIDS+=("$MLOPS_BG_PID")
}

# mlops_stop PID: TERM to its process group, KILL after 20 s.
mlops_stop() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    mlops_log "PID $pid did not stop on TERM: KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

mlops_cleanup() {
  local rc=$? i
  trap - EXIT
  for ((i = ${#MLOPS_PIDS[@]} - 1; i >= 0; i--)); do
    mlops_stop "${MLOPS_PIDS[$i]}"
  done
  if [ -n "$MLOPS_PG_DATA" ] && [ -f "$MLOPS_PG_DATA/postmaster.pid" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$MLOPS_PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || {
      local pgpid
      pgpid=$(head -n1 "$MLOPS_PG_DATA/postmaster.pid" 2>/dev/null || true)
      [ -n "$pgpid" ] && kill -TERM "$pgpid" 2>/dev/null
    }
  fi
  if [ -n "${S:-}" ] && [ -d "$S" ]; then
    if [ "$rc" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
      mlops_log "scratch directory kept: $S (logs: $S/*.log)"
    else
      rm -rf "$S"
    fi
  fi
  exit "$rc"
}

# mlops_start_postgres: a cluster in $S/pg on 127.0.0.1:$PG_PORT, database and role mlflow with a
# generated password (scram-sha-256), in $S/pgpass (0600) for libpq; the password is never printed nor
# put on a command line.
mlops_start_postgres() {
  local pw
  PG_PORT=$(mlops_free_port)
  install -d -o postgres -g postgres -m 700 "$S/pg" "$S/pg/sock"
  MLOPS_PG_DATA=$S/pg/data
  runuser -u postgres -- "$PGBIN/initdb" -D "$MLOPS_PG_DATA" -U postgres -E UTF8 --no-locale \
    --auth-local=peer --auth-host=scram-sha-256 >"$S/initdb.log" 2>&1 || mlops_fail "initdb failed: $S/initdb.log"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$MLOPS_PG_DATA" -l "$S/pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $S/pg/sock -c password_encryption=scram-sha-256" start \
    >/dev/null || mlops_fail "PostgreSQL did not start: $S/pg/postgres.log"
  pw=$("$MLOPS_PY" -c 'import secrets; print(secrets.token_hex(24))')
  printf "CREATE ROLE mlflow LOGIN PASSWORD '%s';\nCREATE DATABASE mlflow OWNER mlflow;\n" "$pw" \
    | runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$S/pg/sock" -p "$PG_PORT" -d postgres \
    || mlops_fail "creating the mlflow role and database failed"
  (umask 077 && printf '127.0.0.1:%s:mlflow:mlflow:%s\n' "$PG_PORT" "$pw" >"$S/pgpass")
  pw=""
  # The role's password is stored as SCRAM, and TCP logins need it.
  local stored
  stored=$(runuser -u postgres -- "$PGBIN/psql" -X -A -t -h "$S/pg/sock" -p "$PG_PORT" -d postgres \
    -c "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'mlflow'")
  [ "$stored" = 'SCRAM-SHA-256$' ] || mlops_fail "the mlflow role's password is not stored as SCRAM-SHA-256"
  PGPASSFILE=/dev/null PGPASSWORD=wrong-password-on-purpose "$PGBIN/psql" -X -q -w \
    "host=127.0.0.1 port=$PG_PORT user=mlflow dbname=mlflow" -c 'SELECT 1' >/dev/null 2>&1 \
    && mlops_fail "PostgreSQL accepted a wrong password over TCP"
  PGPASSFILE=$S/pgpass "$PGBIN/psql" -X -q -w "host=127.0.0.1 port=$PG_PORT user=mlflow dbname=mlflow" \
    -c 'SELECT 1' >/dev/null || mlops_fail "the mlflow role cannot log in over TCP with its password"
  mlops_log "PostgreSQL 15 on 127.0.0.1:$PG_PORT (scram-sha-256; wrong password refused, right one accepted)"
}

# mlops_start_mlflow: mlflow server on the PostgreSQL backend store, artifacts served by the server.
# MLflow 3's job execution (GenAI evaluation, scorers: 7 huey consumer processes and a directory in
# /dev/shm it leaves behind) is off: the workflow does not use it.
mlops_start_mlflow() {
  MLFLOW_PORT=$(mlops_free_port)
  export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
  mkdir -p "$S/artifacts"
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false PGPASSFILE=$S/pgpass \
    mlops_bg "$S/mlflow.log" "$MLOPS_VENV/bin/mlflow" server \
    --backend-store-uri "postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT/mlflow" \
    --serve-artifacts --artifacts-destination "$S/artifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
  MLFLOW_PID=$MLOPS_BG_PID
  mlops_wait_http "$MLFLOW_TRACKING_URI/health" 180 || mlops_fail "MLflow did not come up: $S/mlflow.log"
  mlops_log "MLflow $("$MLOPS_VENV/bin/mlflow" --version | awk '{print $NF}') on $MLFLOW_TRACKING_URI (backend PostgreSQL, PID $MLFLOW_PID)"
}

# mlops_train_start TAG RANKS [train_digits.py args...]: RANKS local processes (RANK/WORLD_SIZE on
# 127.0.0.1), logs in $S/train-TAG-rN.log, result in $S/result-TAG.json. mlops_train_wait TAG waits
# for them and sets TRAIN_RC (rank 0's exit status; a failing other rank fails the test).
# mlops_train TAG RANKS ARGS... does both.
declare -A MLOPS_TRAIN_PIDS=()
mlops_train_start() {
  local tag=$1 ranks=$2 port r pids=""
  shift 2
  port=$(mlops_free_port)
  for ((r = 0; r < ranks; r++)); do
    RANK=$r WORLD_SIZE=$ranks LOCAL_RANK=$r LOCAL_WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      mlops_bg "$S/train-$tag-r$r.log" "$MLOPS_PY" "$MLOPS_FILES/train_digits.py" --result-file "$S/result-$tag.json" "$@"
    pids+=" $MLOPS_BG_PID"
  done
  MLOPS_TRAIN_PIDS[$tag]=$pids
}
mlops_train_wait() {
  local tag=$1 r=0 pid rc
  TRAIN_RC=0
  for pid in ${MLOPS_TRAIN_PIDS[$tag]}; do
    rc=0
    wait "$pid" || rc=$?
    if [ "$r" = 0 ]; then TRAIN_RC=$rc
    elif [ "$rc" != 0 ]; then mlops_fail "training $tag: rank $r exited $rc: $S/train-$tag-r$r.log"; fi
    r=$((r + 1))
  done
  # rank 0's milestones, with the seconds since it started: where a slow job spends its time
  awk -v tag="$tag" '
    /^\[rank 0 .*\] epoch [0-9]+\// { if (!seen++) { print "  " tag ": " $0; first = $0 } last = $0; next }
    /^\[rank 0 .*\] (rank 0 of|data:|model logged|gate:)/ {
      if (last != "" && last != first) print "  " tag ": " last
      last = ""; print "  " tag ": " $0 }
    END { if (last != "" && last != first) print "  " tag ": " last }' "$S/train-$tag-r0.log"
  grep -h '^train_digits: ' "$S/train-$tag-r0.log" | tail -n 2 | sed "s/^/  $tag: /" || true
}
mlops_train() {
  mlops_train_start "$@"
  mlops_train_wait "$1"
}

# mlops_json FILE KEY: a top-level value of a JSON file (strings bare).
mlops_json() {
  "$MLOPS_PY" - "$1" "$2" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))[sys.argv[2]]
print(value if isinstance(value, str) else json.dumps(value))
PY
}

# mlops_registry OUTFILE ARGS...: model_registry.py; stdout (JSON) in OUTFILE; sets REG_RC.
mlops_registry() {
  local out=$1
  shift
  REG_RC=0
  "$MLOPS_PY" "$MLOPS_FILES/model_registry.py" "$@" >"$out" 2>"$out.err" || REG_RC=$?
}

# mlops_start_server MODEL URI: the KServe model server on 127.0.0.1:$SERVER_PORT; waits for the model
# to be ready and sets COLD_START (s, launch -> /v2/health/ready and /v2/models/MODEL/ready answer 200).
mlops_start_server() {
  local model=$1 uri=$2 t0
  SERVER_PORT=${SERVER_PORT:-$(mlops_free_port)}
  SERVER_URL=http://127.0.0.1:$SERVER_PORT
  MLOPS_SERVER_LOG=$S/server-$((${SERVER_STARTS:-0} + 1)).log
  SERVER_STARTS=$((${SERVER_STARTS:-0} + 1))
  t0=$EPOCHREALTIME
  mlops_bg "$MLOPS_SERVER_LOG" "$MLOPS_PY" "$MLOPS_SERVER_PY" --model-name "$model" --model-uri "$uri" \
    --http-port "$SERVER_PORT" --host 127.0.0.1 "${SERVER_ARGS[@]}"
  MLOPS_SERVER_PID=$MLOPS_BG_PID
  if ! mlops_wait_http "$SERVER_URL/v2/health/ready" 240 || ! mlops_wait_http "$SERVER_URL/v2/models/$model/ready" 60; then
    mlops_fail "the model server did not become ready: $MLOPS_SERVER_LOG"
  fi
  COLD_START=$(mlops_since "$t0")
  SERVER_OWN_COLD_START=$(sed -n 's/.*cold start: \([0-9.]*\) s.*/\1/p' "$MLOPS_SERVER_LOG" | tail -n1)
}

mlops_stop_server() {
  if [ -n "$MLOPS_SERVER_PID" ]; then
    mlops_stop "$MLOPS_SERVER_PID"
    MLOPS_SERVER_PID=""
  fi
}

# mlops_verify OUTFILE ARGS...: verify_inference.py against $SERVER_URL; JSON summary in OUTFILE; sets
# VERIFY_RC.
mlops_verify() {
  local out=$1
  shift
  VERIFY_RC=0
  "$MLOPS_PY" "$MLOPS_FILES/verify_inference.py" --url "$SERVER_URL" --summary-file "$out" "$@" \
    >/dev/null 2>"$out.err" || VERIFY_RC=$?
  sed 's/^/  /' "$out.err" >&2
}

# mlops_expect FILE EXPR WHAT: fails with WHAT unless the Python expression EXPR holds for r, FILE's JSON.
mlops_expect() {
  "$MLOPS_PY" - "$1" "$2" <<'PY' || mlops_fail "$3 (got: $(head -c 600 "$1"; head -c 300 "$1.err" 2>/dev/null))"
import json, sys
with open(sys.argv[1]) as handle:
    r = json.load(handle)
sys.exit(0 if eval(sys.argv[2], {}, {"r": r}) else 1)  # pylint: disable=eval-used
PY
}

# mlops_run_status RUN_ID: the MLflow run's status (FINISHED, FAILED, ...) over the REST API.
mlops_run_status() {
  "$MLOPS_PY" - "$MLFLOW_TRACKING_URI" "$1" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen("%s/api/2.0/mlflow/runs/get?run_id=%s" % tuple(sys.argv[1:3]), timeout=30) as r:
    print(json.load(r)["run"]["info"]["status"])
PY
}
