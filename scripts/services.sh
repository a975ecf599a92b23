#!/usr/bin/env bash
# Brings up what TrainWatch stores into and queues through, idempotently:
#   - PostgreSQL with the TimescaleDB extension installed, preloaded and created
#     in the database named by DATABASE_URL;
#   - Redis at CELERY_BROKER_URL.
# A PostgreSQL server that already answers at DATABASE_URL is taken as it is (a
# container published on localhost, a server built by hand, a managed one): the role,
# database and extension are made through a connection where they are missing and
# that is allowed, else it says in one line what is missing. Only where nothing
# answers on a local address is a Debian cluster made (and removed again if it cannot
# start); one of Debian's clusters on that port is installed into and started.
# Redis likewise. Prints the URLs it uses.
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
sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

answers() { pg_isready -q -h "$db_host" -p "$db_port" -t 3; }
debian_cluster() { pg_lsclusters -h 2>/dev/null | awk -v p="$db_port" '$3 == p {print; exit}'; }

# The role, database and extension through a psql that can create them: $@ is that psql.
ensure_role_and_database() {
  if [ "$db_user" != postgres ] && [ -z "$("$@" -c "SELECT 1 FROM pg_roles WHERE rolname = $(sql_quote "$db_user")")" ]; then
    say "creating role $db_user"
    # A superuser, because CREATE EXTENSION timescaledb and the test suite's databases need one.
    "$@" -c "CREATE ROLE \"$db_user\" LOGIN SUPERUSER"
  fi
  if [ "$db_pass" != "-" ]; then
    "$@" -c "ALTER ROLE \"$db_user\" PASSWORD $(sql_quote "$db_pass")"
  fi
  if [ -z "$("$@" -c "SELECT 1 FROM pg_database WHERE datname = $(sql_quote "$db_name")")" ]; then
    say "creating database $db_name"
    "$@" -c "CREATE DATABASE \"$db_name\" OWNER \"$db_user\""
  fi
}

ensure_local_postgres() {
  command -v pg_lsclusters >/dev/null || { say "installing PostgreSQL"; apt_install postgresql; }
  local line major cluster
  line=$(debian_cluster)
  if [ -z "$line" ]; then
    major=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    say "creating a PostgreSQL $major cluster on port $db_port"
    $SUDO pg_createcluster "$major" "trainwatch$db_port" --port "$db_port" >/dev/null
    made_cluster="$major trainwatch$db_port"
    # A cluster this run made and could not bring up is removed, not left behind.
    trap 'if [ -n "$made_cluster" ]; then say "removing the cluster it could not start"; $SUDO pg_dropcluster --stop $made_cluster || true; fi' EXIT
    line=$(debian_cluster)
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
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
  answers || die "PostgreSQL on port $db_port does not answer"
  made_cluster=""

  ensure_role_and_database psql_local
  as_postgres psql -X -q -p "$db_port" -d "$db_name" -c "CREATE EXTENSION IF NOT EXISTS timescaledb" 2>&1 \
    | grep -v '^NOTICE' || true
}

# A server that answers and is not one of Debian's clusters here: taken as it is.
use_running_postgres() {
  local admin="" url where="$db_host:$db_port"
  if ! psql -X "$DATABASE_URL" -tAc "SELECT 1" >/dev/null 2>&1; then
    # The role or the database is missing (or the password is wrong): make them through a
    # connection that may, DATABASE_ADMIN_URL first, then the postgres role without a password.
    for url in "${DATABASE_ADMIN_URL:-}" "postgres://postgres@$db_host:$db_port/postgres"; do
      [ -n "$url" ] && psql -X "$url" -tAc "SELECT 1" >/dev/null 2>&1 && { admin=$url; break; }
    done
    [ -n "$admin" ] || die "a PostgreSQL server answers at $where, but DATABASE_URL cannot sign in to it (role $db_user or database $db_name missing, or a wrong password) and no admin connection works: create them there, or set DATABASE_ADMIN_URL"
    ensure_role_and_database psql -X -q -v ON_ERROR_STOP=1 -tA "$admin"
  fi
  local err
  if ! err=$(psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "CREATE EXTENSION IF NOT EXISTS timescaledb" 2>&1 >/dev/null); then
    err=$(grep -v '^NOTICE' <<<"$err" | sed -n 's/^.*ERROR: *//p' | head -n 1)
    die "the PostgreSQL server at $where cannot give database $db_name TimescaleDB: ${err:-unknown error} (it needs the extension installed and timescaledb in shared_preload_libraries)"
  fi
  say "using the PostgreSQL server already answering at $where: $(psql -X -tA "$DATABASE_URL" -c \
    "SELECT 'TimescaleDB ' || extversion || ', ' || current_setting('timescaledb.license', true) || ' edition' FROM pg_extension WHERE extname = 'timescaledb'")"
}

made_cluster=""
command -v pg_isready >/dev/null || apt_install postgresql-client
if is_local "$db_host" && { [ -n "$(debian_cluster)" ] || ! answers; }; then
  ensure_local_postgres
elif answers; then
  use_running_postgres
else
  die "no PostgreSQL server answers at $db_host:$db_port (DATABASE_URL)"
fi

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
