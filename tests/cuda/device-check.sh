#!/usr/bin/env bash
# The GPU checks, run on a machine with a CUDA device from the bundle that
# bench/cuda/bundle.sh makes (it carries this script too). Steps (STEPS=...,
# default all):
#   unit   g4_unit: cuda_none cuda_quant cuda_mm cuda_ops (each kernel against
#          its CPU twin), cuda_model (every bundled model: GPU ids = CPU ids,
#          splits GPU+CPU, CPU+GPU, GPU+GPU equal one context; fork, prefix cache)
#   probe  the device's memory bandwidth (g4_cuda_bwprobe) and the matmul
#          kernels' speed at the 31B's shapes (G4_CUDA_MM_BENCH=1 cuda_mm)
#   memcheck  compute-sanitizer over the kernel tests (not in the default set:
#          minutes, and refused on some machines)
#   big    a 31B-shaped Q4_K_M model of 60 layers made here (about 19 GB):
#          g4 bench --in-process on cuda:0 (prefill 512, decode 128), then the
#          default stack with one shard on cuda:0 and two (--devices cuda:0,cuda:0)
# Results: $OUT (or ./gpu-out): unit.log, probe.json, bench-*.json, big.log.
#   tar -xJf gpu-bundle/g4-gpu.tar.xz -C /tmp/g4gpu && bash /tmp/g4gpu/device-check.sh
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-$PWD/gpu-out}
mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv | tee "$O/gpu.txt"
export LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" G4_BIN_DIR="$HERE/bin" PATH="$HERE/bin:$PATH"
export G4_TESTDATA="$HERE" G4_RUN_DIR=$(mktemp -d)
STEPS=${STEPS:-unit probe big}
BIG=${BIG:-/tmp/g4-31b-60.gguf}
trap 'g4 down >/dev/null 2>&1; rm -rf "$G4_RUN_DIR"' EXIT
rc=0
for s in $STEPS; do
  case $s in
  unit)
    # the GPU's kernels compute the CPU's reference arithmetic (the _ref twins,
    # G4_ISA=scalar): there the greedy ids must be the CPU's exactly; against
    # the CPU's SIMD kernels (an ulp apart on some types) the run is reported
    for t in cuda_none cuda_quant cuda_mm cuda_ops; do
      timeout 300 "$HERE/bin/g4_unit" --test $t 2>&1 | tee -a "$O/unit.log" | tail -25
      r=${PIPESTATUS[0]}; [ "$r" = 0 ] || [ "$r" = 77 ] || rc=1
    done
    G4_ISA=scalar G4_CUDA_STRICT=1 timeout 400 "$HERE/bin/g4_unit" --test cuda_model 2>&1 | tee -a "$O/unit.log" | tail -60
    r=${PIPESTATUS[0]}; [ "$r" = 0 ] || rc=1
    echo "== against the CPU's SIMD kernels (reported) ==" | tee -a "$O/unit.log"
    timeout 300 "$HERE/bin/g4_unit" --test cuda_model 2>&1 | tee -a "$O/unit.log" | tail -60
    G4_CUDA_MM=fast G4_CUDA_ATTN=fast timeout 300 "$HERE/bin/g4_unit" --test cuda_model 2>&1 | tee -a "$O/unit-fast.log" | tail -8 ;;
  probe)
    "$HERE/bin/g4_cuda_bwprobe" 8 | tee "$O/probe.json"
    G4_CUDA_MM_BENCH=1 timeout 300 "$HERE/bin/g4_unit" --test cuda_mm 2>&1 | tee "$O/mm-bench.log" | tail -20 ;;
  memcheck)
    for t in cuda_mm cuda_ops; do
      timeout 500 compute-sanitizer --tool memcheck --error-exitcode 9 "$HERE/bin/g4_unit" --test $t 2>&1 | tee -a "$O/memcheck.log" | tail -8
    done ;;
  big)
    if [ ! -s "$BIG" ]; then
      /usr/bin/time -f "made in %e s" "$HERE/bin/g4_make_model" --preset 31b --n-layer 60 --type Q4_K_M \
        --vocab "$HERE/vocab/ggml-vocab-gemma-4.gguf" --threads "$(nproc)" -o "$BIG" 2>&1 | tail -2 | tee -a "$O/big.log"
    fi
    g4 bench -m "$BIG" --in-process --devices cuda:0 -p 512 -n 128 --reps 3 --json 2>>"$O/big.log" | tee "$O/bench-inproc.json"
    G4_CUDA_MM=fast G4_CUDA_ATTN=fast g4 bench -m "$BIG" --in-process --devices cuda:0 -p 512 -n 128 --reps 3 --json 2>>"$O/big.log" | tee "$O/bench-inproc-fast.json"
    G4_CUDA_GRAPHS=0 g4 bench -m "$BIG" --in-process --devices cuda:0 -p 512 -n 128 --reps 3 --json 2>>"$O/big.log" | tee "$O/bench-inproc-nographs.json"
    g4 bench -m "$BIG" --devices cuda:0 -p 512 -n 128 --reps 3 --json 2>>"$O/big.log" | tee "$O/bench-1shard.json"
    g4 bench -m "$BIG" --devices cuda:0,cuda:0 -p 512 -n 128 --reps 3 --json 2>>"$O/big.log" | tee "$O/bench-2shards.json"
    tail -5 "$O/big.log" ;;
  esac
done
exit $rc
