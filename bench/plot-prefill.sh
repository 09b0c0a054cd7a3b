#!/usr/bin/env bash
# Prefill tokens/s against prompt length for g4 and llama.cpp on the same GGUF,
# same threads, in one run (bench/compare-llama.sh per length), written as a
# PNG plot and a JSON table.
#   bench/plot-prefill.sh MODEL.gguf [OUT_PREFIX=docs/prefill] [THREADS=2] [REPS=3] [LENGTHS="32 64 128 256 512"]
# Needs python3-matplotlib (deploy/install-deps.sh installs it).
# ROWS=FILE: plot rows measured before (compare-llama.sh / long-context.sh JSON lines)
# instead of measuring.
set -euo pipefail
M=$1; OUT=${2:-docs/prefill}; TH=${3:-2}; REPS=${4:-3}; LENS=${5:-"32 64 128 256 512"}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "${ROWS:-}" ]; then
  [ "$ROWS" = "$OUT.json" ] || cp "$ROWS" "$OUT.json"
else
  rows=()
  for n in $LENS; do
    rows+=("$(bash "$HERE/compare-llama.sh" "$M" "$n" 16 "$TH" "$REPS" | tr -d '\n')")
  done
  printf '%s\n' "${rows[@]}" > "$OUT.json"
fi
# Debian's python (matplotlib) rather than whatever python3 is first on PATH
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
"$PY" - "$OUT.json" "$OUT.png" "$M" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# long-context.sh lines: flat keys
rows = [r if "g4" in r else {"n_prompt": r["depth"], "threads": r.get("threads", 2), "ratio_prefill": r["ratio_prefill"],
        "g4": {"prefill_tps": r["g4_prefill_tps"], "decode_tps": r["g4_decode_tps"]},
        "llama_cpp": {"prefill_tps": r["llama_prefill_tps"], "decode_tps": r["llama_decode_tps"]}} for r in rows]
rows.sort(key=lambda r: r["n_prompt"])
n = [r["n_prompt"] for r in rows]
fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
ax.plot(n, [r["g4"]["prefill_tps"] for r in rows], "o-", label="g4 prefill")
ax.plot(n, [r["llama_cpp"]["prefill_tps"] for r in rows], "s--", label="llama.cpp prefill")
ax.plot(n, [r["g4"]["decode_tps"] for r in rows], "o-", alpha=0.6, label="g4 decode")
ax.plot(n, [r["llama_cpp"]["decode_tps"] for r in rows], "s--", alpha=0.6, label="llama.cpp decode")
ax.set_xscale("log", base=2)
ax.set_xticks(n, [str(x) for x in n])
ax.set_xlabel("prompt length (tokens)")
ax.set_ylabel("tokens/s (median)")
ax.set_title("%s, %d threads" % (os.path.basename(sys.argv[3]), rows[0]["threads"]))
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2])
for r in rows:
    print("%5d  g4 %7.1f  llama.cpp %7.1f  ratio %.2f" % (r["n_prompt"], r["g4"]["prefill_tps"], r["llama_cpp"]["prefill_tps"], r["ratio_prefill"]))
PY
