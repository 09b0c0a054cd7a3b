#!/usr/bin/env python3
"""The prefix cache end to end, on the default stack: every answer of a stack
with the cache (ids and top log-probabilities, to the last bit) equals the
answer of a stack without it (--no-prefix-cache), while the second turn of a
conversation, a prompt sharing part of an earlier one and the same prompt
again start from cached chunks (g4 status counts them).

  1. text, --prompt-ids: a 2-turn conversation (turn 2 = turn 1 + its reply +
     new ids), a prompt that parts from it inside a ubatch, the same prompt
     again, a penalised and a sampled request; dense 2 shards, E (KV sharing)
     2 shards, MoE 1 shard;
  2. an image in turn 1 (the chat template), turn 2 with more text;
  3. 8 clients at once sharing a system prompt: the prompt tokens computed
     are at most the shared part once, the 8 private parts and a block each;
     then a live swap of a stage (the cache starts empty, answers the same);
  4. soak: a small --cache-mb and a random workload (shared bases cut at
     random places, concurrent clients): every answer equals the cold
     stack's, the bytes kept never exceed the budget, chunks are evicted.
Usage: test_prefix.py G4_BINARY TESTDATA_DIR"""
import json, os, random, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, start

g4, td = start("models/dense-f32.gguf")
scr = Scratch("g4-prefix-", g4)
here = os.path.dirname(os.path.abspath(__file__))


def g4run(run_dir, *args, timeout=300):
    env = dict(scr.env, G4_RUN_DIR=run_dir)
    r = subprocess.run([g4] + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


def up(name, model, *args):
    d = scr.path(name)
    rc, so, se = g4run(d, "up", "-m", model, *args)
    check(rc == 0, "g4 up %s %s: %s" % (os.path.basename(model), args, se.strip()))
    return d


def down(d):
    g4run(d, "down")


def gen(d, *args):
    rc, so, se = g4run(d, "run", *args, "--json", "--logprobs", "4")
    if rc:
        check(False, "g4 run %s: %s" % (" ".join(a[:40] for a in args[:4]), se.strip()))
        return None
    return json.loads(so)


def status(d):
    rc, so, se = g4run(d, "status", "--json")
    return json.loads(so) if rc == 0 else {}


def same(a, b, what):
    ok = a is not None and b is not None and a["ids"] == b["ids"] and a.get("logprobs") == b.get("logprobs")
    check(ok, "%s: with the cache %s, without %s" % (what, a and a["ids"], b and b["ids"]))


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


rng = random.Random(int(os.environ.get("G4_TEST_SEED", "7")))

# 1. text: conversation, partial prefix, repeat, penalties, sampling
for model, shards in [("dense-f32.gguf", "2"), ("e-q8_0.gguf", "2"), ("moe-q8_0.gguf", "1")]:
    m = os.path.join(td, "models", model)
    warm, cold = up("w-" + model, m, "--shards", shards), up("c-" + model, m, "--shards", shards, "--no-prefix-cache")
    p1 = [2] + [rng.randrange(100, 3000) for _ in range(rng.randrange(560, 760))]
    r1 = gen(warm, "-m", m, "--prompt-ids", ids_arg(p1), "-n", "12")
    same(r1, gen(cold, "-m", m, "--prompt-ids", ids_arg(p1), "-n", "12"), "%s turn 1" % model)
    if r1 is None:
        continue
    p2 = p1 + r1["ids"] + [rng.randrange(100, 3000) for _ in range(rng.randrange(100, 300))]
    cut = rng.randrange(200, len(p1) - 50)
    p3 = p1[:cut] + [rng.randrange(100, 3000) for _ in range(200)]
    cases = [("turn 2", p2, ()), ("parts at %d" % cut, p3, ()), ("again", p1, ()),
             ("penalised", p2, ("--repeat-penalty", "1.3", "--presence-penalty", "0.5")),
             ("sampled", p3, ("--temp", "0.9", "--seed", "42"))]
    for what, p, extra in cases:
        a = gen(warm, "-m", m, "--prompt-ids", ids_arg(p), "-n", "12", *extra)
        b = gen(cold, "-m", m, "--prompt-ids", ids_arg(p), "-n", "12", *extra)
        same(a, b, "%s %s" % (model, what))
    pc = status(warm).get("prefix_cache", {})
    reused = len(p1) + cut + (len(p1) - 1)
    check(pc.get("enabled") and pc.get("hits", 0) >= 5 and pc.get("tokens_reused", 0) >= reused,
          "%s: prefix cache %s (want >= 5 hits, >= %d tokens reused)" % (model, pc, reused))
    check(status(cold).get("prefix_cache", {}).get("hits", 1) == 0, "--no-prefix-cache still reuses")
    if model == "dense-f32.gguf":  # a live swap: the new stage keeps nothing, the index starts empty
        rc, so, se = g4run(warm, "swap", "shard-1")
        check(rc == 0, "g4 swap shard-1: %s" % se.strip())
        before = status(warm).get("prefix_cache", {})
        a = gen(warm, "-m", m, "--prompt-ids", ids_arg(p2), "-n", "12")
        same(a, gen(cold, "-m", m, "--prompt-ids", ids_arg(p2), "-n", "12"), "turn 2 after a swap")
        after = status(warm).get("prefix_cache", {})
        check(before.get("chunks") == 0 and after.get("tokens_reused") == before.get("tokens_reused")
              and after.get("chunks", 0) > 0, "after a swap: %s then %s" % (before, after))
    down(warm), down(cold)

# 2. an image in turn 1
text_model = os.path.join(here, "..", "data", "mm-text96.gguf")
mmproj = os.path.join(td, "mm", "mmproj-gemma4-e2b-tiny-f32.gguf")
img = os.path.join(td, "mm", "media", "test-1.jpeg")
if os.path.exists(mmproj) and os.path.exists(text_model):
    warm = up("w-img", text_model, "--mmproj", mmproj, "--shards", "2")
    cold = up("c-img", text_model, "--mmproj", mmproj, "--shards", "2", "--no-prefix-cache")
    t1 = "Describe this picture. " + "word " * 200
    r1 = gen(warm, "-m", text_model, "--mmproj", mmproj, "--image", img, "-p", t1, "-n", "8")
    same(r1, gen(cold, "-m", text_model, "--mmproj", mmproj, "--image", img, "-p", t1, "-n", "8"), "image turn 1")
    t2 = t1 + "And now tell me more about the colours you see, in detail."
    a = gen(warm, "-m", text_model, "--mmproj", mmproj, "--image", img, "-p", t2, "-n", "8")
    same(a, gen(cold, "-m", text_model, "--mmproj", mmproj, "--image", img, "-p", t2, "-n", "8"), "image turn 2")
    pc = status(warm).get("prefix_cache", {})
    n_soft = r1["prompt_ids"].count(-1) if r1 else 0
    check(n_soft > 0 and pc.get("hits", 0) >= 1 and pc.get("tokens_reused", 0) > n_soft,
          "image: %d soft tokens, prefix cache %s" % (n_soft, pc))
    down(warm), down(cold)
else:
    print("note: no image model: part 2 not run")

# 3. 8 clients at once sharing a system prompt
m = os.path.join(td, "models", "dense-f32.gguf")
warm = up("w-sys", m, "--shards", "2", "--slots", "8")
system = " ".join(rng.choice("alpha beta gamma delta river stone cloud light paper music".split()) for _ in range(700))
before = status(warm).get("prefix_cache", {}).get("tokens_computed", 0)
with ThreadPoolExecutor(8) as ex:
    outs = list(ex.map(lambda i: gen(warm, "-m", m, "--system", system, "-p", "question %d: %s" % (i, "why " * (5 + i)), "-n", "4"),
                       range(8)))
pc = status(warm).get("prefix_cache", {})
if all(outs):
    ps = [o["prompt_ids"] for o in outs]
    lcp = 0
    while all(len(p) > lcp and p[lcp] == ps[0][lcp] for p in ps):
        lcp += 1
    private = sum(len(p) - lcp for p in ps)
    computed = pc.get("tokens_computed", 0) - before
    print("8 clients: %d shared + %d private prompt tokens, %d computed" % (lcp, private, computed))
    check(lcp >= 700 and computed <= lcp + private + 8 * 16,
          "8 clients: %d shared + %d private prompt tokens, %d computed" % (lcp, private, computed))
down(warm)

# 4. soak: a small budget, a random workload; every answer as without the cache
warm = up("w-soak", m, "--shards", "2", "--cache-mb", "2", "--slots", "4")
cold = up("c-soak", m, "--shards", "2", "--no-prefix-cache", "--slots", "4")
bases = [[2] + [rng.randrange(100, 3000) for _ in range(900)] for _ in range(3)]
work = []
for i in range(24):
    b = rng.choice(bases)
    work.append(b[:rng.randrange(40, len(b))] + [rng.randrange(100, 3000) for _ in range(rng.randrange(1, 120))])
def both(p):
    return gen(warm, "-m", m, "--prompt-ids", ids_arg(p), "-n", "6"), p
with ThreadPoolExecutor(3) as ex:
    got = list(ex.map(both, work))
bad = 0
for a, p in got:
    b = gen(cold, "-m", m, "--prompt-ids", ids_arg(p), "-n", "6")
    bad += not (a and b and a["ids"] == b["ids"] and a.get("logprobs") == b.get("logprobs"))
check(bad == 0, "soak: %d of %d answers differ from the stack without the cache" % (bad, len(got)))
time.sleep(1.2)  # shard counters travel with heartbeats
st = status(warm)
pc = st.get("prefix_cache", {})
kept = [d.get("counters", {}).get("prefix_cache_bytes", 0) for d in st.get("daemons", []) if d.get("role") == "shard"]
check(pc.get("budget") == 2 << 20 and pc.get("bytes", 1 << 40) <= pc.get("budget", 0) and kept and max(kept) <= 2 << 20,
      "soak: budget %s, index %s bytes, shards keep %s" % (pc.get("budget"), pc.get("bytes"), kept))
check(pc.get("evictions", 0) > 0 and pc.get("hits", 0) > 0, "soak: %s" % pc)
down(warm), down(cold)
finish()
