#!/usr/bin/env bash
# Prefill and decode tokens/s of g4 (in-process) and llama.cpp on the same GGUF,
# same prompt length, generation length and threads, in one run; medians of REPS.
#   bench/compare-llama.sh MODEL.gguf [N_PROMPT=128] [N_GEN=32] [THREADS=2] [REPS=3]
# llama.cpp comes from the node-llama-cpp npm package (../shared/tools/oracle/setup.sh).
set -euo pipefail
M=$1; NP=${2:-128}; NG=${3:-32}; TH=${4:-2}; REPS=${5:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G4=${G4:-$ROOT/build/bin/g4}
ORACLE=${ORACLE:-$ROOT/../shared/tools/oracle}
ids=$(python3 -c "import random; random.seed(1); print(','.join(str(random.randrange(300, 12000)) for _ in range($NP - 1)))")
ids="2,$ids"
g4_json=$(for r in $(seq "$REPS"); do
  /usr/bin/time -f '{"peak_rss_kb":%M}' -o /tmp/g4_rss.$$ "$G4" run --in-process -m "$M" --prompt-ids "$ids" -n "$NG" --temp 0 --threads "$TH" --json |
    python3 -c "import json,sys; d=json.load(sys.stdin)['timings']; r=json.load(open('/tmp/g4_rss.$$')); d.update(r); print(json.dumps(d))"
done)
llama_json=$(node "$ORACLE/bench_llama.mjs" --model "$M" --threads "$TH" --n-prompt "$NP" --n-gen "$NG" --reps "$REPS" 2>/dev/null)
python3 - "$g4_json" "$llama_json" "$M" "$NP" "$NG" "$TH" <<'PY'
import json, statistics, sys
g = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
l = json.loads(sys.argv[2])
med = lambda k: statistics.median(x[k] for x in g)
def find(d, *keys):
    for k in keys:
        if k in d: return d[k]
    for v in d.values():
        if isinstance(v, dict):
            r = find(v, *keys)
            if r is not None: return r
    return None
lp = l["pp_tok_s"]["median"]; lt = l["tg_tok_s"]["median"]
print(json.dumps({"model": sys.argv[3], "n_prompt": int(sys.argv[4]), "n_gen": int(sys.argv[5]), "threads": int(sys.argv[6]),
                  "g4": {"prefill_tps": med("prefill_tps"), "decode_tps": med("decode_tps"), "peak_rss_mb": med("peak_rss_kb") / 1024},
                  "llama_cpp": {"prefill_tps": lp, "decode_tps": lt},
                  "ratio_decode": (med("decode_tps") / lt) if isinstance(lt, (int, float)) and lt else None,
                  "ratio_prefill": (med("prefill_tps") / lp) if isinstance(lp, (int, float)) and lp else None}, indent=1))
PY
