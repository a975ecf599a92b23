#!/usr/bin/env bash
# Installs the TimescaleDB extension for one PostgreSQL major on Debian.
#
#   deploy/timescale/install-debian.sh [PG_MAJOR]
#
# Uses Debian's binary package (postgresql-NN-timescaledb) where the configured
# releases have one; otherwise builds Debian's `timescaledb` source package (from
# the release that carries it) against the installed server headers. Both are the
# Apache edition. Idempotent: does nothing when the extension is already there.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

pg_major="${1:-}"
if [ -z "$pg_major" ]; then
  pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
fi
if [ -z "$pg_major" ]; then
  echo "install-debian: no PostgreSQL server under /usr/lib/postgresql" >&2
  exit 1
fi

sharedir=/usr/share/postgresql/$pg_major/extension
if ls "$sharedir"/timescaledb.control >/dev/null 2>&1; then
  echo "TimescaleDB is already installed for PostgreSQL $pg_major"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
binary="postgresql-$pg_major-timescaledb"
if apt-cache policy "$binary" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  echo "Installing $binary from Debian"
  $SUDO apt-get install -y -q "$binary"
  exit 0
fi

# No binary package for this major: build the source package. Its source comes
# from a newer Debian release, read through a private apt state so that the
# machine's own sources and package lists stay exactly as they were.
source_suite="${TIMESCALEDB_SOURCE_SUITE:-trixie}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
echo "No $binary in the configured releases; building Debian's timescaledb source package ($source_suite)"
$SUDO apt-get install -y -q cmake dpkg-dev gcc make "postgresql-server-dev-$pg_major" libssl-dev

work=$(mktemp -d /tmp/timescaledb-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
cat >"$work/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $source_suite main
EOF
apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache::Archives=$work/archives"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" update -q
(cd "$work" && apt-get "${apt_opts[@]}" source -q timescaledb)
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n 1)

# The same flags as the Debian package's own build (debian/rules).
cmake -S "$src" -B "$src/build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" \
  -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
  -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF
make -C "$src/build" -j"$(nproc)"
$SUDO make -C "$src/build" install
echo "TimescaleDB $(basename "$src") installed for PostgreSQL $pg_major"
