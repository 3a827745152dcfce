#!/usr/bin/env bash
# Runs coursegen end to end on its embedded defaults: a private PostgreSQL
# cluster under .coursegen/pg (made with this machine's PostgreSQL binaries,
# installed first if missing), the offline generator, no RabbitMQ.
#
# It starts `coursegen serve` in the background (its log goes to
# .coursegen/serve.log), requests a demo course, shows its progress and
# history, says how to look at it, then keeps the service running until
# Ctrl-C. Arguments are passed to `coursegen serve`; HTTP_ADDR sets its
# address (default 127.0.0.1:8080).
#
# Every coursegen process using .coursegen/pg holds the private cluster
# while it runs; the last one to exit stops it. After Ctrl-C, nothing of
# coursegen or of its cluster is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/services.sh postgres-binaries
unset DATABASE_URL COURSEGEN_DATA_DIR AMQP_URL OPENAI_API_KEY LLM_PROVIDER LOG_FILE

echo "==> building coursegen (cargo build --release)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/coursegen"
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
api="http://$HTTP_ADDR/api/v1"
log=.coursegen/serve.log
mkdir -p .coursegen

echo "==> starting coursegen serve on $api (its log: $log)"
if [ -e .coursegen/pg/PG_VERSION ]; then
  echo "    its database: the private PostgreSQL cluster in .coursegen/pg, reused"
else
  echo "    its database: a private PostgreSQL cluster, made now in .coursegen/pg"
fi
"$bin" serve --log-file "$log" "$@" &
serve=$!
stop_serve() {
  if kill -0 "$serve" 2>/dev/null; then
    echo
    echo "==> stopping coursegen serve (the private PostgreSQL cluster stops with its last user)"
    kill -TERM "$serve" 2>/dev/null || true
  fi
  wait "$serve" 2>/dev/null || true
}
trap stop_serve EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait until the API answers (or serve gives up, e.g. on a port in use).
for _ in $(seq 1 150); do
  if ! kill -0 "$serve" 2>/dev/null; then
    echo "coursegen serve exited; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null "$api/health" 2>/dev/null && break
  else
    (exec 3<>"/dev/tcp/${HTTP_ADDR%:*}/${HTTP_ADDR##*:}") 2>/dev/null && break
  fi
  sleep 0.2
done

user=00000000-0000-4000-8000-000000000001
echo "==> requesting a demo course: coursegen submit --topic Photosynthesis --lessons 4 --wait"
course=$("$bin" submit --user "$user" --topic "Photosynthesis" --grade "Grade 8" --lessons 4 --wait)
echo
echo "==> its history: coursegen events $course"
"$bin" events "$course"
cat <<EOF

==> coursegen serve is running (pid $serve); the API is on $api
    the web app:     http://$HTTP_ADDR/  (the course: http://$HTTP_ADDR/courses/$course)
    the course:      curl $api/courses/$course
    its lesson 1:    curl $api/courses/$course/lessons/1
    its history:     $bin events $course
    another course:  $bin submit --user $user --topic "Volcanoes" --wait
    your documents:  $bin sources add ~/notes --prefix notes/ --user $user
                     (then: $bin submit --user $user --topic "..." --source-filter notes/ --wait)
    the service log: tail -f $log
    stop:            press Ctrl-C (serve stops, then the private PostgreSQL cluster
                     unless another coursegen process still uses it)
EOF
wait "$serve"
