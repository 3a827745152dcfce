#!/usr/bin/env bash
# Coverage-guided fuzzing of coursegen's parsers of untrusted input with
# cargo-fuzz (libFuzzer), each target for SECONDS (default 60), starting
# from the seeds committed under fuzz/corpus/<target>/:
#
#   amqp_request  the AMQP request body parser
#   http_body     JSON bodies: the edge's NUL scan against serde, the request rules
#   http_query    GET /courses and /jobs query strings, decoded as actix does
#   stored_event  the event upcaster, fed stored payloads of every version
#   extract_html      an HTML page through ingest's preparation (main text, chunks)
#   extract_markdown  a Markdown file, and the same bytes as plain text
#   extract_pdf       a PDF through pdftotext in its child process (5 s limit)
#   extract_docx      a DOCX through ingest's preparation, and text as its document.xml
#
# Stable toolchain only: built with `-s none` (no sanitizer; libFuzzer's
# coverage instrumentation only). Safe Rust needs no AddressSanitizer to
# find panics, which is what the targets assert on.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# A crash is saved under fuzz/artifacts/<target>/ and fails the script;
# turn it into a regression test (see fuzz/README.md) before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(amqp_request http_body http_query stored_event extract_html extract_markdown extract_pdf extract_docx)
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
echo "==> building the fuzz targets (cargo fuzz build -s none)"
cargo fuzz build -s none

status=0
for target in "${targets[@]}"; do
  # libFuzzer adds what it finds to a scratch copy, never to the seeds.
  work="target/corpus/$target"
  mkdir -p "$work" "artifacts/$target"
  cp -n corpus/"$target"/seed-* "$work"/ 2>/dev/null || true
  log="target/fuzz-$target.log"
  echo "==> $target for ${seconds}s"
  if ! cargo fuzz run -s none "$target" "$work" -- \
      -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
      -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "!! $target crashed; see $log and fuzz/artifacts/$target/" >&2
    status=1
  fi
  # The last status line: executions, their rate, coverage (cov: edges, ft: features).
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  last=$(grep -E '#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov:' "$log" | tail -1)
  cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
  ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
  corpus=$(sed -E 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/' <<<"$last")
  printf '    %-13s %10s execs  %7s execs/s  cov %6s edges  ft %6s  corpus %s\n' \
    "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}"
done
exit "$status"
