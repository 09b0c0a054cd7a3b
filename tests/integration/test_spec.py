#!/usr/bin/env python3
"""Speculative decoding in process (g4 run --in-process --draft-model):

  * greedy ids with speculation are exactly plain decoding's, over 600
    generated positions (the cache past 512 cells: split-KV decode steps,
    the sliding cache wrapped many times), on every variant of the shared
    test models: dense (31B-like, Q8_0 and K-quants), MoE (26B-like), E
    (KV sharing), each with a separate draft model of the same vocabulary
    (acceptance high: many passes keep several rows) and with a synthetic
    gemma4-assistant from g4_make_model --assistant-for (acceptance near 0:
    nearly every pass rewinds), at --draft-max 1, 4 and 8;
  * the counts add up: accepted <= drafted, drafted <= passes x draft-max;
  * with temperature the run completes with the same counts' sanity (the
    rejection rule keeps the distribution; ids differ from plain sampling
    by construction);
  * --draft-model is refused without --in-process, a draft of another
    vocabulary or a non-Gemma file is refused with a message.
Usage: test_spec.py G4_BINARY TESTDATA_DIR G4_MAKE_MODEL"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, start  # noqa: E402

g4, td = start("models")
make = sys.argv[3]
mdir = os.path.join(td, "models")
sc = Scratch("g4-spec-", g4)
PROMPT = "The capital of France is"
N = 600


def run(model, *extra):
    r = subprocess.run([g4, "run", "--in-process", "-m", model, "--raw", "-p", PROMPT, "-n", str(N), "--ignore-eos",
                        "--json"] + list(extra), capture_output=True, text=True, timeout=600, env=sc.env)
    if r.returncode:
        return None, r.stderr.strip()
    return json.loads(r.stdout), r.stderr


def assistant(target):
    out = sc.path(os.path.basename(target) + ".assistant.gguf")
    if not os.path.exists(out):
        subprocess.run([make, "--assistant-for", target, "--type", "F32", "--n-embd", "64", "--n-ff", "128",
                        "--threads", "1", "-o", out], check=True, capture_output=True, timeout=120)
    return out


cases = [  # target, its separate draft model
    ("dense-q8_0", "dense-f16"),
    ("dense256-q4_k_m", "dense256-q6_k"),
    ("moe-q8_0", "moe-f32"),
    ("e-q8_0", "e-f32"),
]
for target, draft in cases:
    tpath, dpath = os.path.join(mdir, target + ".gguf"), os.path.join(mdir, draft + ".gguf")
    plain, err = run(tpath, "--temp", "0")
    check(plain is not None and len(plain["ids"]) == N, "%s plain: %s" % (target, err))
    if plain is None:
        continue
    for kind, path in (("draft model", dpath), ("assistant", assistant(tpath))):
        for dmax in (1, 4, 8):
            got, err = run(tpath, "--temp", "0", "--draft-model", path, "--draft-max", str(dmax))
            if got is None:
                check(False, "%s + %s, draft-max %d: %s" % (target, kind, dmax, err))
                continue
            diff = [i for i, (a, b) in enumerate(zip(plain["ids"], got["ids"])) if a != b]
            check(got["ids"] == plain["ids"],
                  "%s + %s, draft-max %d: ids differ from plain decoding first at %s" % (target, kind, dmax, diff[:1]))
            t = got["timings"]
            check(0 <= t["draft_n_accepted"] <= t["draft_n"] <= t["draft_passes"] * dmax and t["draft_passes"] > 0,
                  "%s + %s, draft-max %d: counts %s" % (target, kind, dmax, t))
            print("%-16s %-12s draft-max %d: identical, acceptance %.2f in %d passes" %
                  (target, kind, dmax, t["draft_acceptance"], t["draft_passes"]))

# temperature: the rejection-sampling path runs to the end, counts sane
dq = os.path.join(mdir, "dense-q8_0.gguf")
for path in (os.path.join(mdir, "dense-f16.gguf"), assistant(dq)):
    got, err = run(dq, "--temp", "0.8", "--seed", "7", "--draft-model", path, "--draft-max", "4")
    check(got is not None and len(got["ids"]) == N and got["timings"]["draft_n_accepted"] <= got["timings"]["draft_n"],
          "temperature with %s: %s" % (os.path.basename(path), err if got is None else got["timings"]))

# refusals
r = subprocess.run([g4, "run", "-m", dq, "-p", "x", "--draft-model", dq], capture_output=True, text=True, env=sc.env)
check(r.returncode == 2 and "--in-process" in r.stderr, "--draft-model without --in-process: %s" % r.stderr.strip())
vocab = os.path.join(td, "vocab", "ggml-vocab-gemma-4.gguf")
r = subprocess.run([g4, "run", "--in-process", "-m", dq, "--raw", "-p", "x", "-n", "2", "--draft-model", vocab],
                   capture_output=True, text=True, env=sc.env)
check(r.returncode != 0 and "error" in r.stderr, "a vocabulary file as draft: %s" % r.stderr.strip())
finish()
