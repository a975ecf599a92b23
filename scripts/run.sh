#!/usr/bin/env bash
# `make run`: the whole system on this machine, in the foreground. Ctrl-C stops everything it started.
#   web (gunicorn), Celery worker and beat, and the agent sampling this machine; with DEMO=1 also
#   the demo fleet's feeder, which posts their samples live (DEMO_DAYS: days of history first, 30).
# Expects `make venv frontend services` to have run (the Makefile does that first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PORT=${PORT:-8000}
RUN_DIR=${TRAINWATCH_RUN_DIR:-$root/.run}
PY=$root/.venv/bin/python
MANAGE=("$PY" "$root/backend/manage.py")
# The local sign-in uses allauth's password form.
export MONITORING_PASSWORD_LOGIN=${MONITORING_PASSWORD_LOGIN:-1}

mkdir -p "$RUN_DIR/logs" "$RUN_DIR/spool"
chmod 700 "$RUN_DIR"
: >"$RUN_DIR/pids"

"${MANAGE[@]}" migrate --no-input -v0
# Alert rules to start from, the first time (MONITORING_ALERT_RULES names another file).
"${MANAGE[@]}" alerts import "${MONITORING_ALERT_RULES:-$root/deploy/alerts/example.yaml}" --if-empty >/dev/null
login=$("${MANAGE[@]}" local_login --file "$RUN_DIR/login.txt")

# This machine, registered once; its token lives only in $RUN_DIR/agent-token.
host=$(hostname)
slug=$(printf '%s' "$host" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_-' '-' | sed 's/^-*//; s/-*$//' | cut -c1-64)
slug=${slug:-this-machine}
registered=$("${MANAGE[@]}" register_server "$slug" --name "$host" --hostname "$host" --enable)
if [[ "$registered" == Registered* ]] || [ ! -s "$RUN_DIR/agent-token" ]; then
  "${MANAGE[@]}" register_server "$slug" --rotate-token --token-file "$RUN_DIR/agent-token" >/dev/null
fi

if [ "${DEMO:-0}" = 1 ]; then
  # The demo fleet (backend/monitoring/demo/fleet.py): 30 days of history the first time, and a
  # token each in $RUN_DIR/demo/ for the feeder that keeps their history going (started below).
  "${MANAGE[@]}" demo seed --token-dir "$RUN_DIR/demo" ${DEMO_DAYS:+--days "$DEMO_DAYS"}
fi

pids=()
names=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping TrainWatch..."
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  echo "Stopped. Data is kept; run make run again to continue."
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

start() {  # name, command...: each in a process group of its own, logging to $RUN_DIR/logs/<name>.log
  local name=$1
  shift
  setsid "$@" >"$RUN_DIR/logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  echo "$!" >>"$RUN_DIR/pids"
}

cd "$root/backend"
start web "$root/.venv/bin/gunicorn" trainwatch.wsgi --bind "127.0.0.1:$PORT" --workers 2 --access-logfile -
start worker "$root/.venv/bin/celery" -A trainwatch worker --loglevel INFO --concurrency 2
start beat "$root/.venv/bin/celery" -A trainwatch beat --loglevel INFO --schedule "$RUN_DIR/celerybeat-schedule"
start agent "$root/.venv/bin/trainwatch-agent" --url "http://127.0.0.1:$PORT" --server "$slug" \
  --token-file "$RUN_DIR/agent-token" --spool-dir "$RUN_DIR/spool" --label "source=make-run"
if [ "${DEMO:-0}" = 1 ]; then
  start demo-feeder "${MANAGE[@]}" demo feed --url "http://127.0.0.1:$PORT" --token-dir "$RUN_DIR/demo"
fi
cd "$root"

cat <<TXT

  TrainWatch is running: http://127.0.0.1:$PORT
  $login
  This machine reports as "$slug". Logs: $RUN_DIR/logs/. Press Ctrl-C to stop.

TXT

# Wait until Ctrl-C, or until one part dies (then stop the rest and say which).
while true; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "The ${names[$i]} process exited; see $RUN_DIR/logs/${names[$i]}.log" >&2
      exit 1
    fi
  done
  sleep 1
done
