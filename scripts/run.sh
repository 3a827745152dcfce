#!/usr/bin/env bash
# Runs coursegen end to end on its embedded defaults: a private PostgreSQL
# cluster under .coursegen/pg (made with this machine's PostgreSQL binaries,
# installed first if missing), the offline generator, no RabbitMQ.
# Extra arguments go to `coursegen serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/services.sh postgres-binaries
unset DATABASE_URL AMQP_URL OPENAI_API_KEY

cargo build --release --quiet
bin=target/release/coursegen
$bin migrate
user=00000000-0000-4000-8000-000000000001
course=$($bin submit --user "$user" --topic "Photosynthesis" --grade "Grade 8" --lessons 4)
echo "course id: $course"
$bin events "$course"
