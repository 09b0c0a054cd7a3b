#!/usr/bin/env python3
"""Tokenizer properties beyond llama.cpp's vectors:
  * streaming detokenization (g4 detokenize --stream) of random id sequences,
    byte-fallback tokens and special tokens included, concatenates to exactly
    the whole detokenization, and no chunk is invalid UTF-8;
  * UTF-8 text survives tokenize -> detokenize unchanged;
  * a 1 MB text tokenizes in well under a second.
Usage: test_tokenizer.py G4_BINARY TESTDATA_DIR"""
import json, os, random, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import check, finish, start  # noqa: E402

g4, td = start("vocab/ggml-vocab-gemma-4.gguf")
vocab = os.path.join(td, "vocab", "ggml-vocab-gemma-4.gguf")

def run(*args):
    r = subprocess.run([g4] + list(args), capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode()

sanitized = os.environ.get("G4_SANITIZED") == "1"  # ASan/UBSan build: slower, fewer trials
rng = random.Random(int(os.environ.get("G4_TEST_SEED", "7")))
for trial in range(12 if sanitized else 60):
    ids = []
    for _ in range(rng.randint(1, 40)):
        r = rng.random()
        if r < 0.45:
            ids.append(rng.randint(238, 493))           # byte tokens: split code points, invalid bytes
        elif r < 0.55:
            ids.append(rng.choice([0, 1, 2, 3, 105, 106, 100, 101]))  # control / special
        else:
            ids.append(rng.randint(0, 262143))
    for special in ([], ["--special"]):
        rc, out, err = run("detokenize", "-m", vocab, "--stream", "--json", *special, ",".join(map(str, ids)))
        rc2, out2, err2 = run("detokenize", "-m", vocab, "--json", *special, ",".join(map(str, ids)))
        if rc or rc2:
            check(False, "detokenize failed: %s %s" % (err, err2))
            continue
        s, w = json.loads(out), json.loads(out2)
        check("".join(s["chunks"]) == w["text"] == s["text"],
              "stream != whole for %s: %r vs %r" % (ids, "".join(s["chunks"]), w["text"]))

texts = ["héllo wörld", "日本語のテキスト", "emoji 👍🏽👨‍👩‍👧 flags 🇫🇷", "tabs\tand\n\nnewlines  ", "<|turn>user\nhi<turn|>",
         "mixed ελληνικά русский עברית العربية", "code: def f(x):\n    return x ** 2\n", "\u00a0nbsp\u3000ideographic"]
for t in texts:
    rc, out, err = run("tokenize", "-m", vocab, "--no-bos", "-p", t)
    ids = json.loads(out) if rc == 0 else []
    rc, out, err = run("detokenize", "-m", vocab, "--special", *map(str, ids))
    check(rc == 0 and out.decode("utf-8")[:-1] == t, "round trip %r -> %r" % (t, out[:-1]))

with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
    words = ["the", "quick", "brown", "fox", "naïve", "日本", "Привет", "👍", "jumps", "over", "lazy", "dog", "\n", "  "]
    rng2 = random.Random(1)
    n = 0
    while n < 1 << 20:
        w = rng2.choice(words) + " "
        f.write(w)
        n += len(w.encode())
    path = f.name
t0 = time.time()
rc, out, err = run("tokenize", "-m", vocab, "-f", path)
dt = time.time() - t0
os.unlink(path)
n_ids = len(json.loads(out)) if rc == 0 else 0
print("1 MiB text: %d ids in %.2f s (g4 tokenize, vocabulary load included)" % (n_ids, dt))
check(rc == 0 and dt < (15.0 if sanitized else 2.0), "1 MiB tokenize took %.2f s" % dt)
finish()
