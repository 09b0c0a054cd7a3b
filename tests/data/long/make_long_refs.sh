#!/usr/bin/env bash
# Remakes tests/data/long/*.json: llama.cpp's greedy continuation and top-8
# log-probs for 2,048- and 8,192-token prompts on three small models of the
# real head shapes (31B-, E2B- and 26B-A4B-like; the vocabulary subset of the
# shared test data), through the oracle (../shared/tools/oracle, set up with
# its setup.sh). The models come from tests/tools/g4_make_model with fixed
# seeds, so test_long.py makes the same files again instead of storing them.
# Usage: make_long_refs.sh G4_MAKE_MODEL [TESTDATA_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
make_model=$1
td=${2:-$here/../../../../shared/testdata}
oracle=$(cd "$td/../tools/oracle" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/long_cases.py" models "$make_model" "$td/models/vocab-subset.gguf" "$tmp" | while read -r name args; do
  $make_model $args -o "$tmp/$name.gguf" >/dev/null
done
for n in 2048 8192; do
  python3 "$here/long_cases.py" ids $n > "$tmp/ids$n.txt"
  for m in l31 le2b l26; do
    node "$oracle/run_llama.mjs" --model "$tmp/$m.gguf" --tokens "$(cat "$tmp/ids$n.txt")" --ctx $((n + 256)) \
      --n-predict 16 --top-k 8 2>/dev/null | python3 "$here/long_cases.py" trim > "$here/$m-$n.json"
  done
done
# a Q8_0 KV cache (llama.cpp's -ctk q8_0 -ctv q8_0), 2k
for m in l31 l26; do
  node "$oracle/run_llama.mjs" --model "$tmp/$m.gguf" --tokens "$(cat "$tmp/ids2048.txt")" --ctx 2304 --kv-type Q8_0 \
    --n-predict 16 --top-k 8 2>/dev/null | python3 "$here/long_cases.py" trim > "$here/$m-2048-q8_0.json"
done
