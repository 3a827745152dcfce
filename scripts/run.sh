#!/usr/bin/env bash
# Runs coursegen end to end on its embedded defaults: a private PostgreSQL
# cluster under .coursegen/pg (made with this machine's PostgreSQL binaries,
# installed first if missing), the offline generator, no RabbitMQ.
#
# It starts `coursegen serve`, requests a demo course, shows its progress and
# history, then keeps the service running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/services.sh postgres-binaries
unset DATABASE_URL AMQP_URL OPENAI_API_KEY LLM_PROVIDER

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/coursegen"
$bin migrate

$bin serve "$@" &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve 2>/dev/null || true' EXIT INT TERM

user=00000000-0000-4000-8000-000000000001
course=$($bin submit --user "$user" --topic "Photosynthesis" --grade "Grade 8" --lessons 4 --wait)
echo
echo "course $course, its history:"
$bin events "$course"
echo
echo "coursegen serve is running (pid $serve); press Ctrl-C to stop it."
wait $serve
