#!/usr/bin/env bash
# Time to first token of a conversation's second turn with the prefix cache
# and without it (--no-prefix-cache), on the default stack.
#   bench/prefix-ttft.sh MODEL.gguf [TURN1_TOKENS=2000] [SHARDS=2]
# Turn 1: TURN1_TOKENS random ids; turn 2: turn 1 + its 16-token reply + 100
# new ids (greedy). Prints prefill ms of turn 2 both ways and the ratio.
set -euo pipefail
M=$1; N=${2:-2000}; S=${3:-2}
G4=${G4:-$(dirname "$0")/../build/bin/g4}
T=$(mktemp -d); trap 'G4_RUN_DIR=$T/w "$G4" down >/dev/null 2>&1; G4_RUN_DIR=$T/c "$G4" down >/dev/null 2>&1; rm -rf "$T"' EXIT
G4_RUN_DIR=$T/w "$G4" up -m "$M" --shards "$S" >/dev/null
G4_RUN_DIR=$T/c "$G4" up -m "$M" --shards "$S" --no-prefix-cache >/dev/null
python3 - "$G4" "$M" "$T" "$N" <<'PY'
import json, os, random, subprocess, sys
g4, m, t, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def run(d, ids):
    r = subprocess.run([g4, "run", "-m", m, "--prompt-ids", ",".join(map(str, ids)), "-n", "16", "--temp", "0", "--json"],
                       capture_output=True, text=True, env=dict(os.environ, G4_RUN_DIR=os.path.join(t, d)), check=True)
    return json.loads(r.stdout)
rng = random.Random(1)
p1 = [2] + [rng.randrange(100, 20000) for _ in range(n - 1)]
r1 = run("w", p1)
p2 = p1 + r1["ids"] + [rng.randrange(100, 20000) for _ in range(100)]
w, c = run("w", p2), run("c", p2)
print("turn 1: %d tokens, prefill %.0f ms" % (len(p1), r1["timings"]["prefill_ms"]))
print("turn 2: %d tokens; prefill with the cache %.0f ms, without %.0f ms: %.1f %%; same ids: %s" % (
    len(p2), w["timings"]["prefill_ms"], c["timings"]["prefill_ms"],
    100.0 * w["timings"]["prefill_ms"] / c["timings"]["prefill_ms"], w["ids"] == c["ids"]))
PY
