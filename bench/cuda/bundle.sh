#!/usr/bin/env bash
# Builds the CUDA stack here (nvcc) and packs what a bare GPU machine needs
# into gpu-bundle/g4-gpu.tar.xz (git-ignored; the device tool's `carry`,
# 64 MiB at most): the stripped binaries, the shared libraries they load
# beyond glibc (libzmq, protobuf-c, hwloc, ...: the machine has none of
# ours), the vocabulary and the quantized test models. cudart is linked
# statically. tests/cuda/device-check.sh unpacks and runs it there.
#   bash bench/cuda/bundle.sh            (BUILD=dir to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build-gpu}
TD=${G4_TESTDATA:-../shared/testdata}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DG4_CUDA=ON >/dev/null
grep -q "G4_HAVE_CUDA:INTERNAL=ON\|G4_HAVE_CUDA" "$B/CMakeCache.txt" || true
bins="g4 shardd schedulerd tokenizerd g4_unit g4_make_model g4_cuda_bwprobe"
cmake --build "$B" -j"$(nproc)" --target $bins >/dev/null
S=gpu-bundle/stage
rm -rf gpu-bundle && mkdir -p $S/bin $S/lib $S/models $S/vocab
for b in $bins; do cp "$B/bin/$b" $S/bin/ && strip $S/bin/$b; done
# the libraries the binaries load, glibc's and the C++ runtime left to the
# machine (a newer distribution: its own are newer and serve ours)
for b in $S/bin/*; do ldd "$b" | awk '/=> \//{print $3}'; done | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so' |
  while read -r l; do cp -L "$l" $S/lib/; done
cp "$TD/vocab/ggml-vocab-gemma-4.gguf" $S/vocab/
for m in dense-q8_0 dense-q4_0 dense-bf16 dense256-q4_k dense256-q4_k_m dense256-q6_k e-q8_0 moe-q8_0; do
  cp "$TD/models/$m.gguf" $S/models/
done
cp tests/cuda/device-check.sh $S/
tar -C $S -cJf gpu-bundle/g4-gpu.tar.xz .
rm -rf $S
ls -la gpu-bundle/
