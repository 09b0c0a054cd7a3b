#!/usr/bin/env bash
# Installs g4's build and runtime dependencies on Debian 12 (as root).
#
# A tool may already come from elsewhere (Node.js from NodeSource or nvm, cmake
# from Kitware, Chrome instead of Chromium): each dependency is checked by what
# g4 uses of it (a command, a pkg-config module, a header), then by its Debian
# package, and only what is missing both ways is installed. Installing Debian's
# npm beside a Node.js from elsewhere is what breaks apt ("held broken
# packages"), so it never does that.
#
#   deploy/install-deps.sh           install what is missing, say what it installed
#   deploy/install-deps.sh --check   only say what is missing; exit 1 if anything is
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
pc() { have pkg-config && pkg-config --exists "$1" 2>/dev/null; }
asan_rt() { have clang && [ -f "$(clang -print-file-name=libclang_rt.asan-x86_64.a 2>/dev/null)" ]; }

# "package|check": the Debian package, and the shell test that passes when what
# g4 needs of it is there, whoever installed it
DEPS=(
  "build-essential|have cc && have c++ && have make && [ -f /usr/include/stdio.h ]"  # C11 toolchain
  "cmake|have cmake"
  "pkg-config|have pkg-config"
  "clang|have clang"                                    # the fuzz targets
  "libclang-rt-14-dev|asan_rt"                          # sanitizer runtimes for clang
  "libzmq3-dev|pc libzmq"                               # ZeroMQ
  "libsodium-dev|pc libsodium"                          # CURVE security
  "libprotobuf-c-dev|pc libprotobuf-c"                  # protobuf-c runtime
  "protobuf-c-compiler|have protoc-c"                   # protoc-c
  "libhwloc-dev|pc hwloc"                               # topology, NUMA placement
  "hwloc|have lstopo"
  "libcjson-dev|pc libcjson"                            # JSON (CLI output, HTTP gateway)
  "libmicrohttpd-dev|pc libmicrohttpd"                  # HTTP gateway
  "libstb-dev|[ -f /usr/include/stb/stb_image.h ]"      # image decoding (encoderd)
  "libmpg123-dev|pc libmpg123"                          # MP3 decoding (encoderd)
  "libedit-dev|pc libedit"                              # g4 chat: line editing and history
  "python3|have python3"                                # fixture scripts, integration tests
  "python3-matplotlib|python3 -c 'import matplotlib' 2>/dev/null"  # bench/plot-prefill.sh
  "curl|have curl"                                      # tests: HTTP client
  "iproute2|have ip"                                    # tests: network namespaces
  "chromium|have chromium || have chromium-browser || have google-chrome"  # tests: the chat page
  "systemd|have systemd-analyze"                        # tests: systemd-analyze verify of deploy/systemd
)
# Node.js and npm (the openai npm client in the gateway test, the llama.cpp oracle):
# Debian's npm depends on Debian's nodejs, so both come from Debian or neither does
if ! have node; then
  DEPS+=("nodejs|have node")
  have npm || DEPS+=("npm|have npm")
elif ! have npm; then
  echo "install-deps: note: node ($(command -v node)) is here without npm; Debian's npm would conflict with it," \
       "so install npm the way node came (the npm client check of the gateway test is skipped without it)"
fi

deb_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

missing=() elsewhere=()
for d in "${DEPS[@]}"; do
  pkg=${d%%|*} test=${d#*|}
  if eval "$test"; then
    deb_installed "$pkg" || elsewhere+=("$pkg")
  elif ! deb_installed "$pkg"; then
    missing+=("$pkg")
  fi
done
[ ${#elsewhere[@]} -eq 0 ] || echo "install-deps: already there without their Debian package: ${elsewhere[*]}"

if [ "${1:-}" = "--check" ]; then
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "install-deps: missing: ${missing[*]}"
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything was already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing: ${missing[*]}; run this as root (or install them) first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
