#!/usr/bin/env bash
# The chaos soak: a private PostgreSQL cluster in a temporary directory (so
# that it can be restarted), the local RabbitMQ (a virtual host per run),
# then `coursegen bench chaos` with the cluster's restart command.
#   scripts/chaos.sh --short                 the CI mode, about 3 minutes
#   scripts/chaos.sh                         1,000 courses (see `coursegen bench chaos --help`)
#   scripts/chaos.sh --courses 300 --broker-fault stop-app
# CHAOS_PROFILE=release builds and runs the release binary (default: debug,
# which the test suite has built already). Exits non-zero when a check
# fails or a process of the soak is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh postgres-binaries
scripts/services.sh rabbitmq
bin=$(scripts/services.sh pg-bin-dir)

profile="${CHAOS_PROFILE:-debug}"
if [ "$profile" = release ]; then
  cargo build --release --bin coursegen
else
  cargo build --bin coursegen
fi
coursegen="$PWD/target/$profile/coursegen"

dir=$(mktemp -d /tmp/coursegen-chaos.XXXXXX)
pg="$dir/pg"
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  run_as=(runuser -u postgres --)
fi
"${run_as[@]}" mkdir "$pg"
"${run_as[@]}" "$bin/initdb" -D "$pg" -U postgres --auth=trust >/dev/null
"${run_as[@]}" "$bin/pg_ctl" start -w -D "$pg" -l "$dir/server.log" \
  -o "-k $pg -c listen_addresses='' -c max_connections=200" >/dev/null

cleanup() {
  # A soak ended inside a broker fault's window leaves the app stopped.
  scripts/services.sh rabbitmq || status=1
  "${run_as[@]}" "$bin/pg_ctl" stop -w -m fast -D "$pg" >/dev/null 2>&1 || true
  # Nothing of the soak may outlive it: a postgres or serve naming the directory is a failure.
  left=$(pgrep -f "$dir" || true)
  if [ -n "$left" ]; then
    echo "chaos: processes left behind: $left" >&2
    ps -o pid,args -p $left >&2 || true
    status=1
  fi
  if [ "${status:-0}" -eq 0 ]; then rm -rf "$dir"; else echo "chaos: logs kept in $dir" >&2; fi
}
trap 'status=$?; cleanup; exit $status' EXIT

restart="${run_as[*]} $bin/pg_ctl restart -w -m fast -D $pg -l $dir/server.log"
DATABASE_URL="host=$pg user=postgres dbname=postgres" \
  AMQP_URL="${AMQP_URL:-${COURSEGEN_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}}" \
  "$coursegen" bench chaos --pg-restart "$restart" --work-dir "$dir/logs" "$@"
