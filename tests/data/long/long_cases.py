#!/usr/bin/env python3
"""The long-context cases, shared by make_long_refs.sh and tests/scale/test_long.py:
  models            the g4_make_model arguments of each model ("NAME ARGS" lines)
  ids N             the N-token prompt (BOS + ids of the vocabulary subset, fixed seed)
  trim              a run_llama.mjs JSON on stdin -> what the test needs, on stdout"""
import json, random, sys

MODELS = {
    # 31B-like: head sizes 256 / 512, window 1024, K = V on the full layer
    "l31": "--preset 31b --n-layer 4 --n-embd 256 --n-head 4 --n-head-kv 2 --n-head-kv-full 1 --n-ff 512 --seed 7",
    # E2B-like: window 512, per-layer embeddings, a KV-sharing layer
    "le2b": "--preset e2b --n-layer 6 --n-embd 256 --n-head 4 --n-head-kv 1 --n-ff 512 --seed 8",
    # 26B-A4B-like: routed experts beside the dense FFN, window 1024
    "l26": "--preset 26b-a4b --n-layer 3 --n-embd 256 --n-head 4 --n-head-kv 2 --n-head-kv-full 1 --n-ff 256 "
           "--n-ff-exp 64 --seed 9",
}


def model_args(name, vocab):
    return MODELS[name].split() + ["--type", "F32", "--vocab", vocab]


def prompt_ids(n):
    r = random.Random({2048: 1, 8192: 2}.get(n, n))
    return [2] + [r.randrange(300, 12000) for _ in range(n - 1)]


if __name__ == "__main__":
    if sys.argv[1] == "models":
        for name in MODELS:
            print(name, " ".join(model_args(name, sys.argv[3])))
    elif sys.argv[1] == "ids":
        print(",".join(map(str, prompt_ids(int(sys.argv[2])))))
    elif sys.argv[1] == "trim":
        r = json.load(sys.stdin)
        print(json.dumps({"settings": r["settings"], "n_prompt": len(r["evaluated_tokens"]),
                          "greedy": r["greedy"]["tokens"],
                          "positions": [{"pos": p["pos"], "margin": p["margin"],
                                         "top": [{"id": t["id"], "logprob": round(t["logprob"], 6)} for t in p["top"]]}
                                        for p in r["positions"]]}))
