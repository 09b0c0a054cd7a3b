#!/usr/bin/env bash
# Decode (and prefill) tokens/s at long KV depths, g4 against llama.cpp on the
# same GGUF and threads, one depth after the other (bench/compare-llama.sh per
# depth: load once, one untimed warm-up run, REPS timed runs, medians), plus
# g4's peak RSS against `g4 plan`'s estimate for one sequence of that depth.
#   bench/long-context.sh MODEL.gguf [DEPTHS="8192 32768"] [N_GEN=32] [THREADS=2] [REPS=1]
set -euo pipefail
M=$1; DEPTHS=${2:-"8192 32768"}; NG=${3:-32}; TH=${4:-2}; REPS=${5:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G4=${G4:-$ROOT/build/bin/g4}
for d in $DEPTHS; do
  cmp=$(G4=$G4 "$ROOT/bench/compare-llama.sh" "$M" "$d" "$NG" "$TH" "$REPS")
  plan=$("$G4" plan -m "$M" --ctx $((d + NG + 1)) --slots 1 --json)
  python3 - "$cmp" "$plan" "$d" <<'PY'
import json, sys
c, p, d = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
est = sum(s["total_bytes"] for s in p["shards"]) / 2**20
print(json.dumps({"depth": d, "g4_decode_tps": round(c["g4"]["decode_tps"], 2),
                  "llama_decode_tps": round(c["llama_cpp"]["decode_tps"], 2), "ratio_decode": round(c["ratio_decode"], 3),
                  "g4_prefill_tps": round(c["g4"]["prefill_tps"], 1), "llama_prefill_tps": round(c["llama_cpp"]["prefill_tps"], 1),
                  "ratio_prefill": round(c["ratio_prefill"], 3), "g4_peak_rss_mb": c["g4"]["peak_rss_mb"],
                  "plan_estimate_mb": round(est), "rss_over_plan": round(c["g4"]["peak_rss_mb"] / est, 3)}))
PY
done
