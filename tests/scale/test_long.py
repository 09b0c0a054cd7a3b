#!/usr/bin/env python3
"""Long context against llama.cpp: prompts of 2,048 and 8,192 tokens on three
small models of the real head shapes (31B-, E2B- and 26B-A4B-like; F32
weights), made again here by g4_make_model from fixed seeds
(tests/data/long/long_cases.py); llama.cpp's outputs for them are in
tests/data/long/*.json (tests/data/long/make_long_refs.sh remakes them).
At these lengths llama.cpp reduces the KV of a decode step in chunks (one per
thread: the references were made with 2), walks its sliding-window cache in
its own cell order and its prefill in 64-cell tiles; g4 reproduces each.
With --kv-type q8_0 (llama.cpp's -ctk/-ctv q8_0: K, Q and V rotated by Walsh-Hadamard
transforms, K and V stored as Q8_0) at 2k on the 31B- and 26B-like models.
Checks, per model and length, `g4 run --in-process` and (8k) the default stack:
  * greedy ids equal llama.cpp's up to the first position where llama.cpp's
    own top-2 margin is under 0.02 (rounding noise for float weights);
  * top-8 log-probs within 3e-2 up to there.
And memory: an E2B-shaped model (6 layers of the real width) with an 8k-token
prompt keeps its peak RSS within 10 % of g4 plan's estimate.
Usage: test_long.py G4_BINARY TESTDATA_DIR G4_MAKE_MODEL"""
import json, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
sys.path.insert(0, os.path.join(here, "..", "data", "long"))
from g4test import Scratch, check, fail, finish, start  # noqa: E402
import long_cases  # noqa: E402

g4, td = start("models/vocab-subset.gguf")
make_model = sys.argv[3]
vocab = os.path.join(td, "models", "vocab-subset.gguf")
scratch = Scratch("g4-long-", g4)
env = dict(scratch.env, G4_ATTN_SPLITS="2", G4_NO_PROGRESS="1")
refdir = os.path.join(here, "..", "data", "long")
models = {}
for name in long_cases.MODELS:
    out = scratch.path(name + ".gguf")
    r = subprocess.run([make_model] + long_cases.model_args(name, vocab) + ["-o", out], capture_output=True, text=True,
                       timeout=300)
    check(r.returncode == 0, "g4_make_model %s: %s" % (name, r.stderr[-300:]))
    models[name] = out


def compare(label, ref, got):
    want, pos = ref["greedy"], ref["positions"]
    ids = got["ids"]
    first = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), None)
    if first is not None and pos[first]["margin"] > 0.02:
        fail("%s: id %d differs at generated position %d where llama.cpp's margin is %.3f" %
             (label, ids[first], first, pos[first]["margin"]))
        return
    last = len(ids) if first is None else first + 1
    worst, common_min = 0.0, 8
    for i in range(last):
        refp = {t["id"]: t["logprob"] for t in pos[i]["top"]}
        ours = {t["id"]: t["logprob"] for t in got["logprobs"][i]["top"]}
        common = set(refp) & set(ours)
        common_min = min(common_min, len(common))
        if common:
            worst = max(worst, max(abs(refp[k] - ours[k]) for k in common))
    if common_min < 6 or worst > 3e-2:
        fail("%s: top-8 log-probs differ by %.3g over %d positions (min %d ids in common)" %
             (label, worst, last, common_min))
        return
    check(True, "")
    print("ok %-22s %s, top-8 logprob diff %.1e" %
          (label, "all %d ids identical" % len(ids) if first is None else
           "identical for %d ids (then margin %.4f)" % (first, pos[first]["margin"]), worst))


for n, kv in ((2048, "f16"), (8192, "f16"), (2048, "q8_0")):
    ids = long_cases.prompt_ids(n)
    for name in long_cases.MODELS:
        refname = os.path.join(refdir, "%s-%d%s.json" % (name, n, "" if kv == "f16" else "-" + kv))
        if not os.path.exists(refname):
            continue
        ref = json.load(open(refname))
        check(ref["n_prompt"] == n, "%s-%d: reference of %d tokens" % (name, n, ref["n_prompt"]))
        modes = [["--in-process"]] + ([[]] if n == 8192 and name == "l31" else [])
        for mode in modes:
            label = "%s %dk %s%s" % (name, n // 1024, "in-process" if mode else "stack", "" if kv == "f16" else " kv " + kv)
            r = subprocess.run([g4, "run"] + mode + ["-m", models[name], "--prompt-ids", ",".join(map(str, ids)), "-n",
                               str(len(ref["greedy"])), "--temp", "0", "--json", "--logprobs", "8", "--ctx",
                               str(n + 256), "--kv-type", kv], capture_output=True, text=True, timeout=1200, env=env)
            if r.returncode != 0:
                fail("%s: g4 run failed: %s" % (label, r.stderr.strip()[-400:]))
                continue
            compare(label, ref, json.loads(r.stdout.strip().splitlines()[-1]))
# memory: an 8k-token prompt on an E2B-shaped model (6 layers of the real width, Q4_K_M):
# g4's peak RSS within 10 % of g4 plan's estimate for one sequence of that length
e2b = scratch.path("e2b6.gguf")
r = subprocess.run([make_model, "--preset", "e2b", "--n-layer", "6", "--type", "Q4_K_M", "--seed", "5", "-o", e2b],
                   capture_output=True, text=True, timeout=600)
check(r.returncode == 0, "g4_make_model e2b: %s" % r.stderr[-300:])
n = 8192
r = subprocess.run([g4, "bench", "--in-process", "-m", e2b, "-p", str(n), "-n", "8", "--reps", "1", "--warmup", "0",
                    "--json"], capture_output=True, text=True, timeout=1200, env=env)
b = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
r = subprocess.run([g4, "plan", "-m", e2b, "--ctx", str(n + 9), "--slots", "1", "--json"], capture_output=True,
                   text=True, env=env)
p = json.loads(r.stdout) if r.stdout.strip() else {}
est = sum(s["total_bytes"] for s in p.get("shards", [])) / 2**20
rss = b.get("peak_rss_mb", 0)
check(est > 0 and abs(rss - est) <= 0.10 * est, "E2B %d tokens: peak RSS %.0f MiB, g4 plan %.0f MiB" % (n, rss, est))
print("E2B-shaped, %d-token prompt: peak RSS %.0f MiB, g4 plan's estimate %.0f MiB (%.2f); decode %.1f tok/s" %
      (n, rss, est, rss / est if est else 0, b.get("decode_tps", 0)))
scratch.close()
finish()
