#!/usr/bin/env bash
# Installs g4's build and runtime dependencies from Debian 12 packages (as root).
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config clang        # C11 toolchain; clang for the fuzz targets
  libzmq3-dev libsodium-dev                     # ZeroMQ (CURVE security through libsodium)
  libprotobuf-c-dev protobuf-c-compiler         # protobuf-c runtime and protoc-c
  libhwloc-dev hwloc                            # topology, NUMA placement
  libcjson-dev                                  # JSON (CLI output, HTTP gateway)
  libmicrohttpd-dev                             # HTTP gateway
  libstb-dev libmpg123-dev                      # image (stb_image) and MP3 decoding (encoderd)
  libclang-rt-14-dev                            # sanitizer runtimes for clang
  python3                                       # fixture scripts, integration tests
  python3-matplotlib                            # bench/plot-prefill.sh: the tokens/s plot (PNG)
  curl iproute2                                 # tests: HTTP client, network namespaces
  libedit-dev                                   # g4 chat: line editing and history
  chromium                                      # tests: the chat page of g4 serve in a headless browser
  systemd                                       # tests: systemd-analyze verify of deploy/systemd
)
# Node.js and npm (the openai npm client in the gateway test, the llama.cpp oracle) may come
# from elsewhere (NodeSource, nvm): check for the commands, install Debian's only when absent.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
  echo "install-deps: installed ${missing[*]}"
else
  echo "install-deps: everything was already installed"
fi
