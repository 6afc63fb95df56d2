#!/usr/bin/env bash
# Installs what mosaic builds and tests with, from Debian's packages (and a few pip packages into
# a virtual environment at .venv/: the tests' independent oracles, and OpenAI's client, which
# the server's tests drive it with). clang with
# its sanitizer and libFuzzer runtimes (libclang-rt-dev) and OpenMP (libomp-dev) serve the
# sanitizer build of the tests (tools/sanitize.sh) and the fuzz targets (tools/fuzz.sh); tmux
# gives the chat's test a real terminal.
# Safe to re-run: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config git nlohmann-json3-dev libcli11-dev libfmt-dev
          libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libpcre2-dev libcpp-httplib-dev
          python3 python3-venv python3-pip clang libclang-rt-dev libomp-dev tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ "${MOSAIC_SKIP_PY:-0}" != 1 ] && ! .venv/bin/python -c "import tokenizers, safetensors, numpy, openai" 2>/dev/null; then
  echo "deps: creating .venv with tokenizers, safetensors, numpy (test oracles), openai (the server's client)" >&2
  [ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check tokenizers safetensors numpy openai
fi
