#!/usr/bin/env bash
# Makes sure the services coursegen needs are installed and running.
#   scripts/services.sh postgres-binaries   PostgreSQL server binaries (initdb, pg_ctl) installed
#   scripts/services.sh postgres            PostgreSQL server installed and running on 127.0.0.1:5432
#   scripts/services.sh rabbitmq            RabbitMQ installed and running on 127.0.0.1:5672
#   scripts/services.sh chromium            headless Chromium and chromedriver (the web app's browser tests)
#   scripts/services.sh pdftotext           poppler's pdftotext installed (the PDF text layer of sources)
#   scripts/services.sh xmllint             xmllint (libxml2-utils), for the export tests' package checks
# Installs with apt-get (Debian/Ubuntu) when something is missing.
set -euo pipefail

log() { echo "[services] $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}

pg_bin_dir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"; return 0
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

ensure_postgres_binaries() {
  if [ -z "$(pg_bin_dir)" ] || [ ! -x "$(pg_bin_dir)/initdb" ]; then
    apt_install postgresql postgresql-client
  fi
}

ensure_postgres() {
  ensure_postgres_binaries
  command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -z "$version" ]; then
      apt_install postgresql
      version=$(ls /etc/postgresql | sort -V | tail -n1)
    fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 1
  done
  log "PostgreSQL did not come up on 127.0.0.1:5432"; return 1
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  if as_root rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then return 0; fi
  if as_root rabbitmqctl -q ping >/dev/null 2>&1; then
    # The node is up but its app is stopped (`rabbitmqctl stop_app`, as the
    # chaos soak's broker fault does): start the app, not a second node.
    log "starting the RabbitMQ app"
    as_root rabbitmqctl -q start_app >/dev/null 2>&1 || true
  else
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  # The node takes a moment to appear; await_startup then waits for the app.
  # Bounded: about two minutes in all.
  for _ in $(seq 1 24); do
    if as_root rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "RabbitMQ did not come up"; return 1
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  apt_install chromium chromium-driver
}

# The export tests check the package XML with xmllint.
ensure_xmllint() {
  command -v xmllint >/dev/null 2>&1 || apt_install libxml2-utils
}

case "${1:-}" in
  postgres-binaries) ensure_postgres_binaries ;;
  postgres) ensure_postgres ;;
  rabbitmq) ensure_rabbitmq ;;
  chromium) ensure_chromium ;;
  pg-bin-dir) pg_bin_dir ;;
  pdftotext) command -v pdftotext >/dev/null 2>&1 || apt_install poppler-utils ;;
  xmllint) ensure_xmllint ;;
  *) echo "usage: $0 postgres-binaries|postgres|rabbitmq|chromium|pdftotext|xmllint" >&2; exit 2 ;;
esac
