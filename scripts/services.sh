#!/usr/bin/env bash
# Brings up what TrainWatch stores into and queues through, idempotently:
#   - PostgreSQL with the TimescaleDB extension installed, preloaded and created
#     in the database named by DATABASE_URL;
#   - Redis at CELERY_BROKER_URL.
# Local URLs (127.0.0.1, localhost) are installed and started as needed; remote
# ones are only checked. Prints the URLs it uses.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
: "${DATABASE_URL:=postgres://trainwatch:trainwatch@127.0.0.1:5432/trainwatch}"
: "${CELERY_BROKER_URL:=redis://127.0.0.1:6379/0}"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

# host port user password dbname, one per line ("-" for empty)
parse_url() {
  python3 - "$1" <<'PY'
import sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
print(u.scheme)
print(u.hostname or "127.0.0.1")
print(u.port or {"redis": 6379}.get(u.scheme, 5432))
print(unquote(u.username or "") or "-")
print(unquote(u.password or "") or "-")
print(u.path.lstrip("/") or "-")
PY
}

is_local() { case "$1" in 127.0.0.1|localhost|::1) return 0 ;; *) return 1 ;; esac; }

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

apt_install() {
  if [ -z "${_apt_updated:-}" ]; then $SUDO apt-get update -q >/dev/null; _apt_updated=1; fi
  $SUDO apt-get install -y -q "$@" >/dev/null
}

# --- PostgreSQL + TimescaleDB -------------------------------------------------
mapfile -t db < <(parse_url "$DATABASE_URL")
case "${db[0]}" in postgres|postgresql) ;; *) die "DATABASE_URL must start with postgres://" ;; esac
db_host=${db[1]} db_port=${db[2]} db_user=${db[3]} db_pass=${db[4]} db_name=${db[5]}
[ "$db_user" != "-" ] || db_user=postgres
[ "$db_name" != "-" ] || die "DATABASE_URL names no database"

psql_local() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$db_port" -tA "$@"; }

ensure_local_postgres() {
  command -v pg_lsclusters >/dev/null || { say "installing PostgreSQL"; apt_install postgresql; }
  local line major cluster
  line=$(pg_lsclusters -h | awk -v p="$db_port" '$3 == p {print; exit}')
  if [ -z "$line" ]; then
    major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    say "creating a PostgreSQL $major cluster on port $db_port"
    $SUDO pg_createcluster "$major" "trainwatch$db_port" --port "$db_port" >/dev/null
    line=$(pg_lsclusters -h | awk -v p="$db_port" '$3 == p {print; exit}')
  fi
  read -r major cluster _ <<<"$line"

  "$root/deploy/timescale/install-debian.sh" "$major"

  local conf_dir=/etc/postgresql/$major/$cluster/conf.d
  local conf=$conf_dir/trainwatch.conf
  if ! cmp -s "$root/deploy/timescale/local.conf" "$conf"; then
    say "installing $conf (preloads timescaledb)"
    $SUDO mkdir -p "$conf_dir"
    $SUDO cp "$root/deploy/timescale/local.conf" "$conf"
    $SUDO chmod 644 "$conf"
    if pg_lsclusters -h | awk -v p="$db_port" '$3 == p && $4 == "online" {f=1} END {exit !f}'; then
      say "restarting PostgreSQL $major/$cluster to load timescaledb"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$major" "$cluster" restart
    fi
  fi
  if ! pg_lsclusters -h | awk -v p="$db_port" '$3 == p && $4 == "online" {f=1} END {exit !f}'; then
    say "starting PostgreSQL $major/$cluster"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$major" "$cluster" start
  fi
  for _ in $(seq 1 60); do pg_isready -q -h "$db_host" -p "$db_port" && break; sleep 0.5; done
  pg_isready -q -h "$db_host" -p "$db_port" || die "PostgreSQL on port $db_port does not answer"

  # The application's role: a superuser, because CREATE EXTENSION timescaledb and
  # the test suite's database creation need one. Local development only.
  if [ "$db_user" != postgres ] && [ -z "$(psql_local -c "SELECT 1 FROM pg_roles WHERE rolname = '$db_user'")" ]; then
    say "creating role $db_user"
    psql_local -c "CREATE ROLE \"$db_user\" LOGIN SUPERUSER"
  fi
  if [ "$db_pass" != "-" ]; then
    psql_local -c "ALTER ROLE \"$db_user\" PASSWORD '${db_pass//\'/\'\'}'"
  fi
  if [ -z "$(psql_local -c "SELECT 1 FROM pg_database WHERE datname = '$db_name'")" ]; then
    say "creating database $db_name"
    psql_local -c "CREATE DATABASE \"$db_name\" OWNER \"$db_user\""
  fi
  as_postgres psql -X -q -p "$db_port" -d "$db_name" -c "CREATE EXTENSION IF NOT EXISTS timescaledb" 2>&1 \
    | grep -v '^NOTICE' || true
}

check_remote_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client
  psql -X "$DATABASE_URL" -tAc "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'" 2>/dev/null \
    | grep -q 1 || die "cannot reach $db_host:$db_port, or TimescaleDB is not available there"
}

if is_local "$db_host"; then ensure_local_postgres; else check_remote_postgres; fi

# --- Redis -------------------------------------------------------------------
mapfile -t rd < <(parse_url "$CELERY_BROKER_URL")
case "${rd[0]}" in redis|rediss) ;; *) die "CELERY_BROKER_URL must start with redis://" ;; esac
redis_host=${rd[1]} redis_port=${rd[2]}

redis_answers() {
  local reply=""
  exec 3<>"/dev/tcp/$redis_host/$redis_port" 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 reply <&3 || true
  exec 3>&- 3<&-
  [[ "$reply" == +PONG* || "$reply" == -NOAUTH* ]]
}

if ! redis_answers; then
  is_local "$redis_host" || die "Redis at $redis_host:$redis_port does not answer"
  command -v redis-server >/dev/null || { say "installing Redis"; apt_install redis-server; }
  say "starting Redis on port $redis_port"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
    --appendonly no --dir /var/lib/redis --logfile "/var/log/redis/trainwatch-$redis_port.log"
  for _ in $(seq 1 40); do redis_answers && break; sleep 0.25; done
  redis_answers || die "Redis did not come up on port $redis_port"
fi

say "DATABASE_URL=$(sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$DATABASE_URL")"
say "CELERY_BROKER_URL=$CELERY_BROKER_URL"
