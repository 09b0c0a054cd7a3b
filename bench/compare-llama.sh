#!/usr/bin/env bash
# Prefill and decode tokens/s of g4 (the default stack: one shard) and llama.cpp on the same GGUF,
# same prompt length, generation length and threads, in one run. Both sides do
# what llama.cpp's benchmark does: load once, one untimed warm-up run, then
# REPS timed runs (KV cache cleared each time); medians.
#   bench/compare-llama.sh MODEL.gguf [N_PROMPT=128] [N_GEN=32] [THREADS=2] [REPS=3]
# llama.cpp comes from the node-llama-cpp npm package (../shared/tools/oracle/setup.sh).
# G4_MODE picks g4's side: "--shards 1" (default: the daemons, as `g4 run` without
# options), "--shards 2", or "--in-process". WARMUP (default 1): untimed runs first
# (0 for very long prompts, on both sides).
set -euo pipefail
M=$1; NP=${2:-128}; NG=${3:-32}; TH=${4:-2}; REPS=${5:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G4=${G4:-$ROOT/build/bin/g4}
ORACLE=${ORACLE:-$ROOT/../shared/tools/oracle}
G4_MODE=${G4_MODE:---shards 1}
WARMUP=${WARMUP:-1}
# shellcheck disable=SC2086
g4_json=$("$G4" bench $G4_MODE -m "$M" -p "$NP" -n "$NG" -t "$TH" --reps "$REPS" --warmup "$WARMUP" --json)
# llama.cpp's batch as g4's: 512 rows (a batch of the whole prompt would need a
# logits buffer of n_prompt x n_vocab floats)
llama_json=$(node "$ORACLE/bench_llama.mjs" --model "$M" --threads "$TH" --n-prompt "$NP" --n-gen "$NG" --reps "$REPS" --warmup "$WARMUP" \
             --batch $((NP < 512 ? NP : 512)) 2>/dev/null)
python3 - "$g4_json" "$llama_json" "$M" "$NP" "$NG" "$TH" <<'PY'
import json, sys
g = json.loads(sys.argv[1])
l = json.loads(sys.argv[2])
lp = l["pp_tok_s"]["median"]; lt = l["tg_tok_s"]["median"]
print(json.dumps({"model": sys.argv[3].rsplit("/", 1)[-1], "g4_mode": g.get("mode"), "g4_shards": g.get("shards"), "n_prompt": int(sys.argv[4]), "n_gen": int(sys.argv[5]), "threads": int(sys.argv[6]),
                  "g4": {"prefill_tps": g["prefill_tps"], "decode_tps": g["decode_tps"], "ready_ms": g["ready_ms"], "weights_ready_ms": g.get("weights_ready_ms"),
                         "peak_rss_mb": g["peak_rss_mb"]},
                  "llama_cpp": {"prefill_tps": lp, "decode_tps": lt},
                  "ratio_decode": g["decode_tps"] / lt if lt else None,
                  "ratio_prefill": g["prefill_tps"] / lp if lp else None}, indent=1))
PY
