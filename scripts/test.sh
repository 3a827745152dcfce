#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and RabbitMQ, installing
# and starting them first when needed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/services.sh postgres
scripts/services.sh rabbitmq
scripts/services.sh chromium
scripts/services.sh pdftotext

# Tests create (and drop) one database each on this server.
url="${COURSEGEN_TEST_DATABASE_URL:-host=127.0.0.1 port=5432 user=postgres dbname=postgres}"
if ! psql "$url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  # The system server wants a password: use a private throwaway cluster instead.
  bin=$(scripts/services.sh pg-bin-dir)
  dir="$PWD/target/test-pg"
  run_as=()
  if [ "$(id -u)" -eq 0 ]; then run_as=(runuser -u postgres --); fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    "${run_as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  "${run_as[@]}" "$bin/pg_ctl" status -D "$dir" >/dev/null 2>&1 ||
    "${run_as[@]}" "$bin/pg_ctl" start -w -D "$dir" -l "$dir/server.log" \
      -o "-k $dir -c listen_addresses='' -c max_connections=300" >/dev/null
  url="host=$dir user=postgres dbname=postgres"
fi
export COURSEGEN_TEST_DATABASE_URL="$url"
export COURSEGEN_TEST_AMQP_URL="${COURSEGEN_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

cargo test --all-targets "$@"
