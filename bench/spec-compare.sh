#!/usr/bin/env bash
# Speculative decoding, g4 against llama.cpp on the same target + draft pair, in one run:
#   bench/spec-compare.sh TARGET.gguf DRAFT.gguf [DRAFT_MAX=4] [N_GEN=128] [THREADS=2] [SHARDS=1]
# g4: `g4 bench` on the default stack (SHARDS shards; the last one drafts), plain and with
# --draft-model; llama.cpp: bench/spec-llama.mjs (node-llama-cpp's draft-sequence predictor),
# plain and with the draft. Greedy; decode tok/s medians of 3; acceptance as each measures it.
# Prints one JSON line per run and the ratios.
set -euo pipefail
T=$1; D=$2; K=${3:-4}; N=${4:-128}; TH=${5:-2}; S=${6:-1}
HERE=$(dirname "$0")
G4=${G4:-$HERE/../build/bin/g4}
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
g4b() { "$G4" bench -m "$T" -p 64 -n "$N" --reps 3 --threads "$TH" --shards "$S" --json "$@"; }
g4b > "$R/g4_plain.json"
g4b --draft-model "$D" --draft-max "$K" > "$R/g4_spec.json"
node "$HERE/spec-llama.mjs" --model "$T" --threads "$TH" --n-gen "$N" --reps 3 > "$R/ll_plain.json"
node "$HERE/spec-llama.mjs" --model "$T" --draft "$D" --draft-max "$K" --threads "$TH" --n-gen "$N" --reps 3 > "$R/ll_spec.json"
python3 - "$R" <<'PY'
import json, sys
r = sys.argv[1]
def ld(n):
    return json.load(open("%s/%s.json" % (r, n)))
gp, gs, lp, ls = ld("g4_plain"), ld("g4_spec"), ld("ll_plain"), ld("ll_spec")
def g4tps(j):
    return j["decode_tps"]
out = {"g4_plain": g4tps(gp), "g4_spec": g4tps(gs), "g4_acceptance": gs.get("draft_acceptance"),
       "llama_plain": lp["decode_tok_s"], "llama_spec": ls["decode_tok_s"], "llama_acceptance": ls["acceptance"]}
out["g4_spec_over_plain"] = round(out["g4_spec"] / out["g4_plain"], 3) if out["g4_plain"] else None
out["llama_spec_over_plain"] = round(out["llama_spec"] / out["llama_plain"], 3) if out["llama_plain"] else None
out["g4_spec_over_llama_spec"] = round(out["g4_spec"] / out["llama_spec"], 3) if out["llama_spec"] else None
print(json.dumps(out))
PY
