#!/usr/bin/env bash
# Multi-host on one machine: the scheduler and tokenizer in this network
# namespace, each shard in its own (ip netns + veth on a bridge), all over
# tcp://. Greedy ids equal --in-process. Needs root and ip(8); skips otherwise.
# With CURVE on (G4_CURVE_SECRET for every process), the same works, and a
# client with another key gets nothing.
# Usage: test_netns.sh BIN_DIR TESTDATA_DIR
set -u
BIN=$1
TD=${G4_TESTDATA:-$2}
M=$TD/models/dense-q8_0.gguf
[ -f "$M" ] || { echo "SKIP: reference data not found at $TD (set G4_TESTDATA)"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: ip(8) not installed"; exit 77; }
TAG=g4t$$
if ! ip netns add ${TAG}a 2>/dev/null; then echo "SKIP: cannot create network namespaces (needs root / CAP_NET_ADMIN)"; exit 77; fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  ip netns del ${TAG}a 2>/dev/null; ip netns del ${TAG}b 2>/dev/null
  ip link del ${TAG}br 2>/dev/null; ip link del ${TAG}va 2>/dev/null; ip link del ${TAG}vb 2>/dev/null
  rm -rf "$LOGS"
}
LOGS=$(mktemp -d)
trap cleanup EXIT
ip netns add ${TAG}b
ip link add ${TAG}br type bridge && ip addr add 10.231.0.1/24 dev ${TAG}br && ip link set ${TAG}br up || { echo "SKIP: cannot create a bridge"; exit 77; }
i=2
for ns in a b; do
  ip link add ${TAG}v$ns type veth peer name ${TAG}p$ns
  ip link set ${TAG}p$ns netns ${TAG}$ns
  ip link set ${TAG}v$ns master ${TAG}br up
  ip netns exec ${TAG}$ns ip addr add 10.231.0.$i/24 dev ${TAG}p$ns
  ip netns exec ${TAG}$ns ip link set ${TAG}p$ns up
  ip netns exec ${TAG}$ns ip link set lo up
  i=$((i + 1))
done
IDS=2,2791,588,3324,496,990,12309,528
want=$("$BIN/g4" run --in-process -m "$M" --prompt-ids $IDS -n 32 --temp 0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
"$BIN/g4" keygen --out "$LOGS/cluster" >/dev/null && "$BIN/g4" keygen --out "$LOGS/intruder" >/dev/null
pass=0; fail=0
for mode in plain curve; do
  # plain: open tcp:// off loopback needs --insecure (G4_INSECURE=1)
  if [ $mode = curve ]; then export G4_CURVE_SECRET=$LOGS/cluster.key; unset G4_INSECURE; P=7320; else unset G4_CURVE_SECRET; export G4_INSECURE=1; P=7300; fi
  S=tcp://10.231.0.1:$((P+1))
  "$BIN/schedulerd" --listen $S --results tcp://10.231.0.1:$((P+2)) >"$LOGS/sched-$mode.log" 2>&1 & PIDS+=($!)
  "$BIN/tokenizerd" --model "$M" --listen tcp://10.231.0.1:$((P+3)) --scheduler $S >"$LOGS/tok-$mode.log" 2>&1 & PIDS+=($!)
  ip netns exec ${TAG}a env ${G4_CURVE_SECRET:+G4_CURVE_SECRET=$G4_CURVE_SECRET} "$BIN/shardd" --model "$M" --layers 0-2 \
    --listen tcp://10.231.0.2:$((P+4)) --scheduler $S --name netns-a >"$LOGS/a-$mode.log" 2>&1 & PIDS+=($!)
  ip netns exec ${TAG}b env ${G4_CURVE_SECRET:+G4_CURVE_SECRET=$G4_CURVE_SECRET} "$BIN/shardd" --model "$M" --layers 2-end \
    --listen tcp://10.231.0.3:$((P+5)) --scheduler $S --name netns-b >"$LOGS/b-$mode.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 100); do
    "$BIN/g4" status --scheduler $S --json 2>/dev/null | grep -q '"ready":true' && break
    sleep 0.1
  done
  "$BIN/g4" status --scheduler $S
  got=$("$BIN/g4" run --scheduler $S --prompt-ids $IDS -n 32 --temp 0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
  # the shards really are in other namespaces: each sees only its own address
  hosts=$(ip netns exec ${TAG}a ip -4 -o addr show | grep -c 10.231.0.2)
  if [ "$got" = "$want" ] && [ -n "$want" ] && [ "$hosts" = 1 ]; then
    echo "ok ($mode): greedy ids over tcp:// across network namespaces equal --in-process"; pass=$((pass+1))
  else
    echo "FAIL ($mode): over tcp:// $got, in-process $want"; tail -5 "$LOGS"/*-$mode.log; fail=$((fail+1))
  fi
  if [ $mode = curve ]; then
    # another key pair: refused (no answer); no key at all: refused too
    if G4_CURVE_SECRET=$LOGS/intruder.key G4_CURVE_SERVER=$LOGS/cluster.pub "$BIN/g4" status --scheduler $S >/dev/null 2>&1 ||
       env -u G4_CURVE_SECRET "$BIN/g4" status --scheduler $S >/dev/null 2>&1; then
      echo "FAIL: a client without the cluster key got an answer"; fail=$((fail+1))
    else
      grep -q "refused a peer" "$LOGS/sched-curve.log" && echo "ok: clients without the key get nothing" && pass=$((pass+1)) ||
        { echo "FAIL: no refusal logged"; fail=$((fail+1)); }
    fi
  fi
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
exit
