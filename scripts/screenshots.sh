#!/usr/bin/env bash
# Takes the README's screenshots of the web app (docs/screenshots/*.png):
# the library, a course being generated and a lesson. Runs `coursegen serve`
# with the offline generator slowed down, so that a course is caught while
# it is being written, and headless Chromium for the pictures.
#
#   DATABASE_URL=... scripts/screenshots.sh   # best: a throwaway database
#
# Without DATABASE_URL the embedded private cluster is used (and gets the
# example courses). Needs chromium (scripts/services.sh chromium), curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${SCREENSHOT_PORT:-18099}"
out=docs/screenshots
mkdir -p "$out"
cargo build --quiet
chromium_bin=$(command -v chromium || command -v chromium-browser) || {
  echo "chromium not found: run scripts/services.sh chromium" >&2; exit 1; }
profile=$(mktemp -d)
env -u AUTH_JWT_SECRET HTTP_ADDR="127.0.0.1:$port" LLM_PROVIDER=offline OFFLINE_LATENCY_MS=1500 \
  RUST_LOG=warn target/debug/coursegen serve >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$profile"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 60); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.5; done

shoot() { # url file [more chromium flags]
  local url=$1 file=$2; shift 2
  "$chromium_bin" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --disable-background-networking --disable-component-update --disable-sync --disable-quic \
    --no-first-run --user-data-dir="$profile" --hide-scrollbars --window-size=1200,900 \
    "$@" --screenshot="$file" "$url" >/dev/null 2>&1
  echo "wrote $file"
}
request() { # topic lessons
  curl -fs "$base/api/v1/courses/generate" -H 'content-type: application/json' \
    -d "{\"topic\": \"$1\", \"num_lessons\": $2, \"grade_level\": \"Grade 8\"}" | jq -r .course_id
}
status() { curl -fs "$base/api/v1/courses/$1" | jq -r "$2"; }

ready=$(request "Photosynthesis" 3)
request "Volcanoes" 2 >/dev/null
until [ "$(status "$ready" .status)" = READY ]; do sleep 0.5; done
live=$(request "The water cycle" 6)
until [ "$(status "$live" .lessons_generated)" -ge 2 ]; do sleep 0.3; done
# As the server renders it mid-way (the page's live updates would finish it).
shoot "$base/courses/$live" "$out/course-generating.png"
until [ "$(curl -fs "$base/api/v1/courses?status=READY" | jq .total)" -ge 2 ]; do sleep 0.5; done
shoot "$base/" "$out/library.png" --virtual-time-budget=1000
shoot "$base/courses/$ready/lessons/1" "$out/lesson.png" --virtual-time-budget=1000
# REVIEW_DIR=dir: also the whole lesson and every page at a phone's width,
# to look at (not for the README).
if [ -n "${REVIEW_DIR:-}" ]; then
  mkdir -p "$REVIEW_DIR"
  shoot "$base/courses/$ready/lessons/1" "$REVIEW_DIR/lesson-full.png" --virtual-time-budget=1000 --window-size=1200,6000
  for page in "/" "/courses/new" "/courses/$ready" "/courses/$ready/lessons/1"; do
    name=$(echo "$page" | tr -c 'a-z0-9\n' '-')
    shoot "$base$page" "$REVIEW_DIR/phone$name.png" --virtual-time-budget=1000 --window-size=390,5000
  done
fi
