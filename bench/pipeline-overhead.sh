#!/usr/bin/env bash
# Decode tokens/s of the daemon pipeline against --in-process on one model:
# 2 shards over ipc:// (g4 up --shards 2) and 2 shards over tcp:// (loopback),
# medians of REPS runs of N_GEN greedy tokens, ratios to in-process. Every
# side computes from the file's mapping (--mmap): a short run ends before a
# background copy of the weights would, and this measures the pipeline alone.
#   bench/pipeline-overhead.sh MODEL.gguf [N_GEN=64] [REPS=3] [THREADS=2]
set -euo pipefail
M=$(realpath "$1"); NG=${2:-64}; REPS=${3:-3}; TH=${4:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
IDS=2,2791,588,3324,496,990,12309,528,496,1944,9744,657,506,7377,529,496
export G4_RUN_DIR=$(mktemp -d)
run() { "$BIN/g4" run "$@" --prompt-ids $IDS -n "$NG" --ignore-eos --temp 0 --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["decode_tps"])'; }
med() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
inp=(); ipc=(); tcp=()
# both stacks up at once, the three ways interleaved per rep (the machine's speed drifts)
"$BIN/g4" up -m "$M" --shards 2 --threads "$TH" --slots 4 --mmap >/dev/null
P=$((7400 + RANDOM % 500)); S=tcp://127.0.0.1:$P
PIDS=()
"$BIN/schedulerd" --listen $S --results tcp://127.0.0.1:$((P+1)) 2>/dev/null & PIDS+=($!)
"$BIN/tokenizerd" --model "$M" --listen tcp://127.0.0.1:$((P+2)) --scheduler $S 2>/dev/null & PIDS+=($!)
L=$("$BIN/g4" plan -m "$M" --shards 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["shards"][0]["layers"][1])')
OMP_WAIT_POLICY=PASSIVE "$BIN/shardd" --model "$M" --layers 0-$L --listen tcp://127.0.0.1:$((P+3)) --scheduler $S --threads "$TH" --mmap 2>/dev/null & PIDS+=($!)
OMP_WAIT_POLICY=PASSIVE "$BIN/shardd" --model "$M" --layers $L-end --listen tcp://127.0.0.1:$((P+4)) --scheduler $S --threads "$TH" --mmap 2>/dev/null & PIDS+=($!)
for _ in $(seq 600); do "$BIN/g4" status --scheduler $S --json 2>/dev/null | grep -q '"ready":true' && break; sleep 0.1; done
for r in $(seq "$REPS"); do
  inp+=("$(run --in-process --mmap -m "$M" --threads "$TH")")
  ipc+=("$(run)")
  tcp+=("$(run --scheduler $S)")
done
"$BIN/g4" down >/dev/null
kill "${PIDS[@]}"; wait 2>/dev/null || true
rmdir "$G4_RUN_DIR" 2>/dev/null || true
python3 - "$M" "$NG" "$TH" "$(med "${inp[@]}")" "$(med "${ipc[@]}")" "$(med "${tcp[@]}")" <<'PY'
import json, sys
m, ng, th, a, b, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(float, sys.argv[4:])
print(json.dumps({"model": m, "n_gen": ng, "threads": th, "decode_tps": {"in_process": a, "ipc_2_shards": b, "tcp_2_shards": c},
                  "ratio_ipc": b / a, "ratio_tcp": c / a}, indent=1))
PY
