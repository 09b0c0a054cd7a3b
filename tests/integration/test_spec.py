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
  * a draft of another vocabulary or a non-Gemma file is refused with a message;
  * the stack (the default): the last shard drafts, every stage verifies and
    rewinds. Split 1, 2 and 3 ways, with a draft model and with an assistant,
    on dense, E and MoE targets: greedy ids equal plain decoding, and with
    temperature (seeded) the ids and the counts equal the in-process
    speculative run's (the same random streams); `g4 up --draft-model` with 8
    clients at once, speculating and not (--draft-max 0), greedy and seeded,
    each equal to its in-process run; a kill -9 of the drafting shard in the
    middle of a long generation: the output is still plain decoding's; the
    shards' draft counters in `g4 status --json`.
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
        # (the synthetic assistant agrees with nothing: every pass rewinds, whatever draft-max; two of them)
        for dmax in ((1, 4, 8) if kind == "draft model" else (1, 8)):
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
vocab = os.path.join(td, "vocab", "ggml-vocab-gemma-4.gguf")
r = subprocess.run([g4, "run", "--in-process", "-m", dq, "--raw", "-p", "x", "-n", "2", "--draft-model", vocab],
                   capture_output=True, text=True, env=sc.env)
check(r.returncode != 0 and "error" in r.stderr, "a vocabulary file as draft: %s" % r.stderr.strip())

# ---- the stack -------------------------------------------------------------------------
NS = 200


def g4json(args, env=None, timeout=600):
    r = subprocess.run([g4] + args, capture_output=True, text=True, timeout=timeout, env=env or sc.env)
    return (json.loads(r.stdout), r.stderr) if r.returncode == 0 else (None, r.stderr.strip()[-400:])


def gen(prompt, n, *extra):
    return ["run", "--raw", "-p", prompt, "-n", str(n), "--ignore-eos", "--json"] + list(extra)


def counts(t):
    return {k: t.get(k) for k in ("draft_n", "draft_n_accepted", "draft_passes")}


stack_cases = [("dense-q8_0", "dense-f16", True), ("dense-q8_0", None, False), ("e-q8_0", None, True),
               ("e-q8_0", "e-f32", False), ("moe-q8_0", "moe-f32", True)]
for target, draft, with_temp in stack_cases:
    tpath = os.path.join(mdir, target + ".gguf")
    dpath = os.path.join(mdir, draft + ".gguf") if draft else assistant(tpath)
    kind = "draft model" if draft else "assistant"
    plain, err = g4json(gen(PROMPT, NS, "--in-process", "-m", tpath, "--temp", "0"))
    ip_g, err_g = g4json(gen(PROMPT, NS, "--in-process", "-m", tpath, "--temp", "0", "--draft-model", dpath, "--draft-max", "4"))
    ip_t, err_t = g4json(gen(PROMPT, NS, "--in-process", "-m", tpath, "--temp", "0.8", "--seed", "11", "--draft-model", dpath,
                             "--draft-max", "4")) if with_temp else (None, "")
    check(plain is not None and ip_g is not None and (ip_t is not None or not with_temp),
          "%s: the in-process references: %s %s %s" % (target, err, err_g, err_t))
    if plain is None or ip_g is None:
        continue
    for shards in (1, 2, 3):
        got, err = g4json(gen(PROMPT, NS, "-m", tpath, "--shards", str(shards), "--temp", "0", "--draft-model", dpath,
                              "--draft-max", "4"))
        ok = got is not None and got["ids"] == plain["ids"] and counts(got["timings"]) == counts(ip_g["timings"])
        check(ok, "stack, %d shard(s), %s + %s, greedy: %s" % (shards, target, kind,
                                                                err if got is None else (got["ids"] == plain["ids"], got["timings"])))
        line = "stack %d shard(s) %-11s + %-11s greedy %s (acceptance %.2f)" % (
            shards, target, kind, "= plain" if ok else "DIFFERENT", got["timings"]["draft_acceptance"] if got else 0)
        if with_temp and ip_t is not None:
            got_t, err = g4json(gen(PROMPT, NS, "-m", tpath, "--shards", str(shards), "--temp", "0.8", "--seed", "11",
                                    "--draft-model", dpath, "--draft-max", "4"))
            ok_t = got_t is not None and got_t["ids"] == ip_t["ids"] and counts(got_t["timings"]) == counts(ip_t["timings"])
            check(ok_t, "stack, %d shard(s), %s + %s, temperature: %s" % (
                shards, target, kind, err if got_t is None else counts(got_t["timings"])))
            line += ", temperature %s" % ("= in-process" if ok_t else "DIFFERENT")
        print(line)

# g4 up with a drafter: 8 clients at once, speculating or not, greedy or seeded
import threading, signal, time  # noqa: E402
dq, df = os.path.join(mdir, "dense-q8_0.gguf"), os.path.join(mdir, "dense-f16.gguf")
rc = subprocess.run([g4, "up", "-m", dq, "--shards", "2", "--draft-model", df, "--draft-max", "4"], capture_output=True,
                    text=True, timeout=120, env=sc.env)
check(rc.returncode == 0, "g4 up --draft-model: %s" % rc.stderr.strip())
prompts = ["The capital of France is", "Once upon a time", "def fib(n):", "In a small village"]
cl = []
for k in range(8):
    samp = ["--temp", "0"] if k % 3 == 0 else ["--temp", "0.9", "--seed", str(k)]
    cl.append((prompts[k % 4], samp, k % 4 == 3))  # (every 4th asks for no drafts)
got_c = {}


def client(k):
    p, samp, plain_ = cl[k]
    got_c[k] = g4json(gen(p, 150, *samp, *(["--draft-max", "0"] if plain_ else [])))


th = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in th:
    t.start()
for t in th:
    t.join()
same = 0
for k, (p, samp, plain_) in enumerate(cl):
    ref, _ = g4json(gen(p, 150, "--in-process", "-m", dq, *samp,
                        *([] if plain_ else ["--draft-model", df, "--draft-max", "4"])))
    g, err = got_c[k]
    ok = g is not None and ref is not None and g["ids"] == ref["ids"]
    same += ok
    check(ok, "g4 up, client %d (%s, %s): %s" % (k, " ".join(samp), "plain" if plain_ else "drafting", err))
    if not plain_ and g is not None:
        check(g["timings"].get("draft_passes", 0) > 0, "client %d: no verification passes %s" % (k, g["timings"]))
print("g4 up --draft-model: 8 clients at once (6 drafting, 2 with --draft-max 0; greedy and seeded): %d of 8 equal to "
      "their in-process runs" % same)
st, _ = g4json(["status", "--json"])
dr = sum(d.get("counters", {}).get("draft_tokens", 0) for d in (st or {}).get("daemons", []))
check(dr > 0, "g4 status: no shard counts drafted ids: %s" % str(st)[:300])

# kill -9 of the drafting shard in the middle of a long greedy generation
ref, _ = g4json(gen("Once upon a time", 1500, "--in-process", "-m", dq, "--temp", "0"))
p = subprocess.Popen([g4] + gen("Once upon a time", 1500, "--temp", "0"), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, env=sc.env)
time.sleep(1.5)
v = [d["pid"] for d in (g4json(["status", "--json"])[0] or {}).get("daemons", []) if d["name"] == "shard-1"]
if v:
    os.kill(v[0], signal.SIGKILL)
out, err = p.communicate(timeout=300)
g = json.loads(out) if p.returncode == 0 else None
check(v and g is not None and ref is not None and g["ids"] == ref["ids"],
      "kill -9 of the drafting shard mid-generation: %s" % (err.strip()[-300:] if g is None else "ids differ"))
print("kill -9 of the drafting shard after 1.5 s of a 1500-token generation: %s (acceptance %.2f)" % (
    "plain decoding's ids" if g and ref and g["ids"] == ref["ids"] else "DIFFERENT",
    g["timings"]["draft_acceptance"] if g else 0))
subprocess.run([g4, "down"], capture_output=True, timeout=120, env=sc.env)
finish()
