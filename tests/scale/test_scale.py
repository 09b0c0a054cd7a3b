#!/usr/bin/env python3
"""Real shapes, long prompts, several clients, a busy machine.
  * a 31B-shaped Q4_K_M model (6 layers of the real width: 5376, 32 heads, head
    sizes 256 / 512, 262,144-token vocabulary) and a ~1,500-token prompt: the
    default `g4 run` stack and `--shards 2`, each while two CPU-burning
    processes run, give the ids of --in-process; `g4 bench` (stack mode)
    completes;
  * an E2B-shaped Q4_K_M model (PLE, KV sharing) through `g4 up --shards 2`:
    8 clients at once with ~2,000-token prompts all complete, each with the ids
    of its prompt run --in-process.
Models are generated (tests/tools/g4_make_model) into a temporary directory
that is removed at the end. Usage: test_scale.py G4_BINARY TESTDATA_DIR G4_MAKE_MODEL"""
import json, os, random, subprocess, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from g4test import Scratch, check, finish, start  # noqa: E402

g4, td = start("vocab/ggml-vocab-gemma-4.gguf")
make_model = sys.argv[3]
vocab = os.path.join(td, "vocab", "ggml-vocab-gemma-4.gguf")
scratch = Scratch("g4-scale-", g4)
env = scratch.env
WORDS = ("the of and a to in is you that it he was for on are as with his they I at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up other "
         "about out many then them these so some her would make like him into time has look two more write go see "
         "number no way could people my than first water been call who oil its now find long down day did get come "
         "made may part river stone light north music").split()


def g4run(*args, timeout=1200, env_=None):
    r = subprocess.run([g4] + list(args), capture_output=True, text=True, timeout=timeout, env=env_ or env)
    return r.returncode, r.stdout, r.stderr


def make(preset, n_layer, seed):
    out = scratch.path("%s-L%d.gguf" % (preset, n_layer))
    t0 = time.time()
    r = subprocess.run([make_model, "--preset", preset, "--n-layer", str(n_layer), "--type", "Q4_K_M", "--seed",
                        str(seed), "--vocab", vocab, "-o", out], capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, "g4_make_model %s: %s" % (preset, r.stderr[-500:]))
    print("%s x%d Q4_K_M: %.2f GB in %.1f s" % (preset, n_layer, os.path.getsize(out) / 1e9 if r.returncode == 0 else 0,
                                              time.time() - t0))
    return out


def prompt_file(name, n_words, seed):
    rnd = random.Random(seed)
    path = scratch.path(name)
    with open(path, "w") as f:
        f.write(" ".join(rnd.choice(WORDS) for _ in range(n_words)))
    return path


def ids_of(rc, out, err):
    return json.loads(out)["ids"] if rc == 0 else "rc %d: %s" % (rc, err.strip()[-300:])


# 1. 31B-shaped, 6 layers, ~1,500-token prompt
m31 = make("31b", 6, 31)
p31 = prompt_file("p31.txt", 1500, 31)
gen = ("--raw", "-f", p31, "-n", "8", "--temp", "0", "--json")
t0 = time.time()
rc, out, err = g4run("run", "--in-process", "-m", m31, *gen)
want = ids_of(rc, out, err)
check(rc == 0, "31B in-process: %s" % want)
n_prompt = len(json.loads(out)["prompt_ids"]) if rc == 0 else 0
check(n_prompt >= 1500, "the 31B prompt has %d tokens" % n_prompt)
print("31B in-process: %d prompt tokens, %.1f s, ids %s" % (n_prompt, time.time() - t0, want))
for label, extra in (("default stack", ()), ("--shards 2", ("--shards", "2"))):
    burners = scratch.burners(2)
    t0 = time.time()
    rc, out, err = g4run("run", "-m", m31, *extra, *gen)
    scratch.stop(burners)
    got = ids_of(rc, out, err)
    check(got == want, "31B %s with 2 CPU burners: %s, in-process %s" % (label, got, want))
    print("31B %s, 2 CPU burners: %.1f s, %s" % (label, time.time() - t0, "same ids" if got == want else got))
t0 = time.time()
rc, out, err = g4run("bench", "-m", m31, "-p", "256", "-n", "4", "--reps", "1", "--warmup", "0", "--json")
b = json.loads(out) if rc == 0 else {}
check(rc == 0 and b.get("mode") == "stack" and b.get("prefill_tps", 0) > 0 and b.get("decode_tps", 0) > 0,
      "31B g4 bench (stack): rc %d %s %s" % (rc, out[-300:], err[-300:]))
print("31B g4 bench (stack): %.1f s, prefill %.1f tok/s, decode %.2f tok/s" % (
    time.time() - t0, b.get("prefill_tps", 0), b.get("decode_tps", 0)))

# 2. E2B-shaped through two shards, 8 clients with ~2,000-token prompts
me2 = make("e2b", 8, 2)
prompts = [prompt_file("pe%d.txt" % k, 2050 + 37 * k, 100 + k) for k in range(8)]
ref = {}
t0 = time.time()
for k, p in enumerate(prompts):
    rc, out, err = g4run("run", "--in-process", "-m", me2, "--raw", "-f", p, "-n", "6", "--temp", "0", "--json")
    ref[k] = ids_of(rc, out, err)
    check(rc == 0 and len(json.loads(out)["prompt_ids"]) >= 2000, "E2B in-process %d: %s" % (k, ref[k]))
print("E2B in-process: 8 prompts in %.1f s" % (time.time() - t0))
rc, out, err = g4run("up", "-m", me2, "--shards", "2", "--slots", "8")
check(rc == 0, "g4 up E2B --shards 2: %s" % err)
got = {}


def client(k):
    rc, out, err = g4run("run", "--raw", "-f", prompts[k], "-n", "6", "--temp", "0", "--json")
    got[k] = ids_of(rc, out, err)


t0 = time.time()
th = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in th:
    t.start()
for t in th:
    t.join()
for k in range(8):
    check(got.get(k) == ref[k], "E2B client %d of 8 through 2 shards: %s, in-process %s" % (k, got.get(k), ref[k]))
print("E2B --shards 2: 8 clients x ~2,000 tokens in %.1f s, %d of 8 equal to in-process"
      % (time.time() - t0, sum(got.get(k) == ref[k] for k in range(8))))
g4run("down", timeout=120)
finish()
