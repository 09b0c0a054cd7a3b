#!/usr/bin/env bash
# g4 inspect end to end:
#  1. every hostile file in tests/data/hostile is refused: exit 1, one line
#     "error: FILE: offset N: …" on stderr, under a second; good.gguf exits 0;
#  2. the text dump of shared test models equals llama.cpp's gguf-dump output
#     (committed in tests/data/inspect), and --json is one JSON object;
#  3. --tensor NAME --values N equals gguf-py's dequantization (committed).
set -u
G4=$1
DATA=$2
TD=${G4_TESTDATA:-${G4_SOURCE_DIR:-$DATA/../..}/../shared/testdata}
fail=0; n=0
err() { echo "FAIL: $*"; fail=$((fail+1)); }

for f in "$DATA"/hostile/*.gguf; do
  n=$((n+1))
  name=$(basename "$f")
  start=$(date +%s%N)
  stderr=$(timeout 5 "$G4" inspect "$f" 2>&1 >/dev/null); rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms" -lt 1000 ] || err "$name took ${ms} ms"
  if [ "$name" = good.gguf ]; then
    [ $rc -eq 0 ] || err "$name: exit $rc: $stderr"
    continue
  fi
  [ $rc -eq 1 ] || err "$name: exit code $rc (want 1)"
  [ "$(printf '%s\n' "$stderr" | wc -l)" -eq 1 ] || err "$name: stderr is not one line: $stderr"
  case "$stderr" in
    "error: $f: offset "*) ;;
    *) err "$name: unexpected message: $stderr" ;;
  esac
done
echo "hostile corpus: $n files checked"

"$G4" inspect /nonexistent.gguf 2>/dev/null; [ $? -eq 1 ] || err "missing file must exit 1"
"$G4" inspect 2>/dev/null; [ $? -eq 2 ] || err "no file must exit 2 (usage)"

if [ ! -d "$TD/models" ]; then
  echo "SKIP: reference data not found at $TD (set G4_TESTDATA); hostile checks ran"
  [ $fail -eq 0 ] && exit 77 || exit 1
fi
for m in dense-q8_0 vocab-subset; do
  want="$DATA/inspect/$m.gguf-dump.txt"
  got=$("$G4" inspect "$TD/models/$m.gguf" | head -n "$(wc -l < "$want")")
  [ "$got" = "$(cat "$want")" ] || { err "$m: dump differs from gguf-dump"; diff <(echo "$got") "$want" | head -5; }
  j=$("$G4" inspect --json "$TD/models/$m.gguf")
  case "$j" in '{"filename":'*'"tensors":{'*'}') ;; *) err "$m: --json is not one object" ;; esac
done
for v in "$DATA"/inspect/*.values.txt; do
  b=$(basename "$v" .values.txt); model=${b%%.*}; tensor=${b#*.}
  cnt=$(wc -l < "$v")
  got=$("$G4" inspect "$TD/models/$model.gguf" --tensor "$tensor" --values "$cnt")
  [ "$got" = "$(cat "$v")" ] || err "$model $tensor: values differ from gguf-py"
done
"$G4" inspect "$TD/models/dense-q8_0.gguf" --tensor no.such.tensor --values 3 2>/dev/null; [ $? -eq 1 ] || err "unknown tensor must exit 1"

echo "$((n - fail > 0 ? n - fail : 0)) passed, $fail failed"
[ $fail -eq 0 ]
