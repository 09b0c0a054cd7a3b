"""g4 quantize against llama.cpp's llama-quantize, on a model from g4_make_model.

  test_quantize.py G4 TESTDATA G4_MAKE_MODEL

A 6-layer 31B-shaped F32 model (narrowed: n_embd 256, n_ff 640 so ffn_down rows
fall back from K-quants) is quantized to every type. Always: each output has the
mix's types (norms / 1-D tensors F32, every KV of the input copied, file_type set)
and `g4 run --in-process` generates from it; requantizing is refused. With the
oracle installed (tools/oracle/setup.sh: libllama.so in $NLC_DIR, make_model.py):
llama_model_quantize() of the same F32 file gives the same bytes, whole file, and
llama.cpp loads and generates from our Q4_K_M, Q8_0 and Q6_K outputs.
Skips (77) without the vocabulary; the oracle part says SKIP on its own line."""
import importlib.util, json, os, struct, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import g4test
from g4test import check

# TYPE -> (llama_ftype, pure) as llama-quantize names them
TYPES = {"F32": (0, False), "F16": (1, False), "BF16": (32, False), "Q8_0": (7, False), "Q4_0": (2, False),
         "Q4_1": (3, False), "Q5_0": (8, False), "Q5_1": (9, False), "Q4_K": (15, True), "Q5_K": (17, True),
         "Q6_K": (18, False), "Q4_K_S": (14, False), "Q4_K_M": (15, False), "Q5_K_S": (16, False),
         "Q5_K_M": (17, False)}
GGML = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 12: "Q4_K", 13: "Q5_K",
        14: "Q6_K", 30: "BF16"}


def gguf_scan(path):
    """(kv {key: (type, raw bytes)}, tensors {name: (type name, ne)}) of a GGUF v3 file."""
    with open(path, "rb") as f:
        b = f.read(64 << 20)
    o = 8
    n_t, n_kv = struct.unpack_from("<QQ", b, o)
    o += 16
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def s(o):
        n = struct.unpack_from("<Q", b, o)[0]
        return b[o + 8:o + 8 + n].decode("utf-8", "replace"), o + 8 + n

    def skip(t, o):
        if t == 8:
            return s(o)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, o)
            o += 12
            if et in size:
                return o + n * size[et]
            for _ in range(n):
                o = skip(et, o)
            return o
        return o + size[t]
    kv = {}
    for _ in range(n_kv):
        k, o = s(o)
        t = struct.unpack_from("<I", b, o)[0]
        o2 = skip(t, o + 4)
        kv[k] = (t, b[o + 4:o2])
        o = o2
    ts = {}
    for _ in range(n_t):
        name, o = s(o)
        nd = struct.unpack_from("<I", b, o)[0]
        ne = struct.unpack_from("<%dQ" % nd, b, o + 4)
        t = struct.unpack_from("<I", b, o + 4 + 8 * nd)[0]
        ts[name] = (GGML.get(t, str(t)), ne)
        o += 4 + 8 * nd + 12
    return kv, ts


def main():
    try:  # the oracle's make_model.py needs numpy: Debian's python has it (tools/oracle/README)
        import numpy  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    g4, td = g4test.start("vocab/ggml-vocab-gemma-4.gguf")
    make = sys.argv[3]
    vocab = os.path.join(td, "vocab/ggml-vocab-gemma-4.gguf")
    scratch = g4test.Scratch("g4-quantize-", g4)  # removed at exit, also when interrupted
    tmp = scratch.dir
    f32 = os.path.join(tmp, "f32.gguf")
    r = subprocess.run([make, "--preset", "31b", "--n-layer", "6", "--n-embd", "256", "--n-ff", "640", "--n-head", "2",
                        "--type", "F32", "--vocab", vocab, "-o", f32], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "g4_make_model F32: %s" % r.stderr[-500:])
    if r.returncode:
        g4test.finish()
    kv_in, t_in = gguf_scan(f32)

    # the oracle: llama.cpp's own quantizer through make_model.py's ctypes binding
    oracle = None
    mm_path = os.path.join(td, "..", "tools", "oracle", "make_model.py")
    nlc = os.environ.get("NLC_DIR", "/tmp/nlc")
    if os.path.exists(mm_path) and os.path.isdir(os.path.join(nlc, "node_modules/@node-llama-cpp/linux-x64")):
        spec = importlib.util.spec_from_file_location("make_model", mm_path)
        try:
            oracle = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(oracle)
        except Exception as e:  # numpy or gguf-py missing
            print("SKIP: oracle parts (%s)" % e)
            oracle = None
    else:
        print("SKIP: oracle parts (no llama.cpp at %s; run tools/oracle/setup.sh)" % nlc)

    for name, (ftype, pure) in TYPES.items():
        out = os.path.join(tmp, name + ".gguf")
        r = subprocess.run([g4, "quantize", f32, out, name, "--threads", "2", "--json"], capture_output=True,
                           text=True, timeout=600)
        check(r.returncode == 0, "%s: g4 quantize rc %d: %s" % (name, r.returncode, r.stderr[-300:]))
        if r.returncode:
            continue
        summary = json.loads(r.stdout)
        kv, ts = gguf_scan(out)
        check(struct.unpack("<I", kv["general.file_type"][1])[0] == ftype, "%s: general.file_type" % name)
        missing = [k for k in kv_in if k not in kv]
        check(not missing, "%s: keys not copied: %s" % (name, missing[:3]))
        check(kv["tokenizer.ggml.tokens"] == kv_in["tokenizer.ggml.tokens"], "%s: tokenizer copied" % name)
        bad = [n for n, (t, ne) in ts.items() if len(ne) == 1 and t != "F32"]
        check(not bad, "%s: 1-D tensors not F32: %s" % (name, bad[:3]))
        if name not in ("F32", "F16", "BF16"):
            # ffn_down rows of 640 are not whole super-blocks: K-quants fall back
            fb = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
            t_down = ts["blk.1.ffn_down.weight"][0]
            check(t_down not in ("Q4_K", "Q5_K", "Q6_K"), "%s: ffn_down (rows of 640) is %s" % (name, t_down))
            if name == "Q4_K_M":
                check(ts["token_embd.weight"][0] == "Q6_K", "Q4_K_M: tied token_embd %s" % ts["token_embd.weight"][0])
                check(summary["n_fallback"] > 0, "Q4_K_M: fallbacks counted")
        # g4 runs it
        r = subprocess.run([g4, "run", "--in-process", "-m", out, "--prompt-ids", "2,818", "-n", "4", "--temp", "0",
                            "--json"], capture_output=True, text=True, timeout=300)
        ok = r.returncode == 0
        ids = json.loads(r.stdout.strip().splitlines()[-1])["ids"] if ok else []
        check(ok and len(ids) == 4, "%s: g4 run: rc %d %s" % (name, r.returncode, r.stderr[-300:]))
        if oracle is None:
            continue
        ref = os.path.join(tmp, name + ".llama.gguf")
        try:
            oracle.llama_quantize(f32, ref, ftype, pure, False)
        except SystemExit as e:
            check(False, "%s: llama_model_quantize failed: %s" % (name, e))
            continue
        _, t_ref = gguf_scan(ref)
        diff = [n for n in t_ref if t_ref[n][0] != ts.get(n, ("?",))[0]]
        check(not diff, "%s: types differ from llama-quantize: %s" % (
            name, ["%s %s/%s" % (n, ts.get(n, ("?",))[0], t_ref[n][0]) for n in diff[:4]]))
        same = subprocess.run(["cmp", "-s", out, ref]).returncode == 0
        check(same, "%s: file bytes differ from llama-quantize's" % name)
        os.remove(ref)
        if name in ("Q4_K_M", "Q8_0", "Q6_K"):
            r = subprocess.run(["node", os.path.join(td, "..", "tools", "oracle", "run_llama.mjs"), "--model", out,
                                "--tokens", "2,818", "--n-predict", "4"], capture_output=True, text=True, timeout=300)
            ok = r.returncode == 0 and len(json.loads(r.stdout)["greedy"]["tokens"]) == 4
            check(ok, "%s: llama.cpp did not load / generate: %s" % (name, r.stderr[-300:]))

    # requantizing is refused; a file already of the mix's types is copied
    q8 = os.path.join(tmp, "Q8_0.gguf")
    r = subprocess.run([g4, "quantize", q8, os.path.join(tmp, "re.gguf"), "Q4_K_M"], capture_output=True, text=True)
    check(r.returncode != 0 and "requantiz" in r.stderr, "requantize refused: rc %d %s" % (r.returncode, r.stderr))
    check(not os.path.exists(os.path.join(tmp, "re.gguf")), "no partial output left")
    r = subprocess.run([g4, "quantize", q8, os.path.join(tmp, "copy.gguf"), "Q8_0"], capture_output=True, text=True)
    check(r.returncode == 0 and subprocess.run(["cmp", "-s", q8, os.path.join(tmp, "copy.gguf")]).returncode == 0,
          "Q8_0 of a Q8_0 file is a copy")
    r = subprocess.run([g4, "quantize", f32, os.path.join(tmp, "x.gguf"), "Q3_K_XL"], capture_output=True, text=True)
    check(r.returncode == 2, "unknown type: usage error")
    subprocess.run(["rm", "-rf", tmp])
    g4test.finish()


if __name__ == "__main__":
    main()
