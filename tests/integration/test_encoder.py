#!/usr/bin/env python3
"""encoderd and the towers against llama.cpp's outputs, and images / audio end to end.
  * g4 encode on the reference media (JPEG, PNG with alpha, MP3, the 16 kHz PCM) and both
    projectors (F32 vision+audio, F16 vision-only): max |d| / max |ref| <= 2e-3, cosine >= 0.99999
    (the MP3 is decoded by libmpg123, llama.cpp uses dr_mp3: bound 4e-3, see docs);
  * soft-token counts of other sizes and aspect ratios follow the 70..1120 resize rule, and
    --image-min/max-tokens move it; audio longer than 30 s is encoded in 30 s chunks;
  * undecodable, empty, truncated and hostile media are refused with a message, never a crash;
  * g4 run with --image / --audio: the stack (1 and 2 shards) gives the ids of --in-process;
  * a persistent stack: the second identical image is served from encoderd's cache
    (counters in g4 status --json) and text-only requests never reach encoderd.
Usage: test_encoder.py G4_BINARY TESTDATA_DIR"""
import json, math, os, random, struct, subprocess, sys, time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, runner, start  # noqa: E402

g4, td = start("mm")
mm = os.path.join(td, "mm")
here = os.path.dirname(os.path.abspath(__file__))
text_model = os.path.join(here, "..", "data", "mm-text96.gguf")
f32 = os.path.join(mm, "mmproj-gemma4-e2b-tiny-f32.gguf")
f16 = os.path.join(mm, "mmproj-gemma4-vision-tiny-f16.gguf")
scratch = Scratch("g4-enc-", g4)
tmp = scratch.dir
env = dict(os.environ, G4_RUN_DIR=os.path.join(tmp, "run"))
g4run = runner(g4, env)

def readbin(p):
    b = open(p, "rb").read()
    r, c = struct.unpack("<ii", b[:8])
    v = struct.unpack("<%df" % (r * c), b[8:8 + 4 * r * c])
    return r, c, v

def compare(out, ref):
    r1, c1, a = readbin(out)
    r2, c2, b = readbin(ref)
    if (r1, c1) != (r2, c2):
        return None, None, (r1, c1, r2, c2)
    rel = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
    cmin = 1.0
    for t in range(r1):
        x, y = a[t * c1:(t + 1) * c1], b[t * c1:(t + 1) * c1]
        cmin = min(cmin, sum(p * q for p, q in zip(x, y)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y)))
    return rel, cmin, None

# 1. embeddings against llama.cpp
cases = [("img_jpeg", f32, "--image", "media/test-1.jpeg", 2e-3), ("img_png", f32, "--image", "media/test-1-positive.png", 2e-3),
         ("img_jpeg_f16", f16, "--image", "media/test-1.jpeg", 2e-3), ("audio_mp3", f32, "--audio", "audio_mp3.pcm16k.wav", 2e-3),
         ("audio_mp3", f32, "--audio", "media/test-2.mp3", 4e-3)]
for name, proj, kind, media, bound in cases:
    out = os.path.join(tmp, name + ".bin")
    rc, so, se = g4run("encode", "--mmproj", proj, kind, os.path.join(mm, media), "--out", out)
    check(rc == 0, "%s: g4 encode failed: %s" % (media, se.strip()))
    if rc:
        continue
    rel, cmin, shape = compare(out, os.path.join(mm, name + ".emb.bin"))
    check(shape is None, "%s: shape %s" % (media, shape))
    if shape is None:
        print("%-28s %-40s max|d|/max|ref| %.2e  min cosine %.8f" % (name, media, rel, cmin))
        check(rel <= bound and cmin >= 0.99999, "%s: %.3g > %.1g or cosine %.7f" % (media, rel, bound, cmin))

# 2. token counts: the resize rule on other sizes, --image-min/max-tokens, long audio
def ppm(path, w, h, seed):
    rnd = random.Random(seed)
    row = bytes(rnd.randrange(256) for _ in range(w * 3))
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        for y in range(h):
            f.write(row[y % 7:] + row[:y % 7])

def as_f32(x):
    """x rounded to float32 (one float32 operation = the exact result rounded)"""
    return struct.unpack("<f", struct.pack("<f", x))[0]

def expect_tokens(w, h, lo=70, hi=1120, a=48):
    """llama.cpp's calc_size_preserved_ratio in float32, then tokens = (w/a)(h/a)"""
    def rnd(x):  # roundf: half away from zero
        return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)
    fa = as_f32(a)
    wb, hb = max(a, rnd(as_f32(w / fa)) * a), max(a, rnd(as_f32(h / fa)) * a)
    if hb * wb > hi * a * a:
        beta = as_f32(math.sqrt(as_f32(as_f32(as_f32(h) * w) / (hi * a * a))))
        hb = max(a, math.floor(as_f32(as_f32(h / beta) / fa)) * a)
        wb = max(a, math.floor(as_f32(as_f32(w / beta) / fa)) * a)
    elif hb * wb < lo * a * a:
        beta = as_f32(math.sqrt(as_f32(as_f32(lo * a * a) / as_f32(as_f32(h) * w))))
        hb = math.ceil(as_f32(as_f32(h * beta) / fa)) * a
        wb = math.ceil(as_f32(as_f32(w * beta) / fa)) * a
    return (wb // a) * (hb // a)

# the spec's worked examples of the rule
for (w, h), want in {(640, 480): 130, (1920, 1080): 920, (4000, 3000): 1064, (100, 100): 81, (768, 768): 256,
                     (1024, 1024): 441}.items():
    check(expect_tokens(w, h) == want, "the test's own resize rule: %dx%d -> %d, spec says %d" % (w, h, expect_tokens(w, h), want))
for (w, h, extra) in [(100, 100, ()), (640, 480, ()), (768, 768, ()), (37, 901, ()), (1000, 300, ("--image-max-tokens", "140")),
                      (200, 150, ("--image-min-tokens", "300"))]:
    p = os.path.join(tmp, "im%dx%d.ppm" % (w, h))
    ppm(p, w, h, w * h)
    rc, so, se = g4run("encode", "--mmproj", f32, "--image", p, "--json", *extra)
    check(rc == 0, "%dx%d: %s" % (w, h, se.strip()))
    if rc == 0:
        lo = int(extra[1]) if extra and extra[0] == "--image-min-tokens" else 70
        hi = int(extra[1]) if extra and extra[0] == "--image-max-tokens" else 1120
        n = json.loads(so)["n_tokens"]
        check(n == expect_tokens(w, h, lo, hi), "%dx%d %s: %d soft tokens, expected %d" % (w, h, extra, n, expect_tokens(w, h, lo, hi)))

def wav(path, seconds, rate, ch):
    n = int(seconds * rate)
    rnd = random.Random(7)
    with open(path, "wb") as f:
        data = b"".join(struct.pack("<" + "h" * ch, *([int(8000 * math.sin(i * 0.031) + rnd.randrange(-900, 900))] * ch)) for i in range(n))
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, ch, rate, rate * 2 * ch, 2 * ch, 16))
        f.write(b"data" + struct.pack("<I", len(data)) + data)
    return n

def audio_tokens(n16):
    tot = 0
    for off in range(0, n16, 480000):
        cl = min(480000, n16 - off)
        fr = int((cl + 160 - 321) / 160) + 1
        for _ in range(2):
            fr = (fr - 1) // 2 + 1
        tot += fr
    return tot

p = os.path.join(tmp, "long.wav")
n = wav(p, 41.5, 16000, 1)
rc, so, se = g4run("encode", "--mmproj", f32, "--audio", p, "--json")
check(rc == 0 and json.loads(so)["n_tokens"] == audio_tokens(n), "41.5 s of audio: %s %s (expected %d tokens)" % (so.strip(), se.strip(), audio_tokens(n)))
p = os.path.join(tmp, "st.wav")
wav(p, 3.2, 44100, 2)
rc, so, se = g4run("encode", "--mmproj", f32, "--audio", p, "--json")
check(rc == 0 and json.loads(so)["n_tokens"] > 0, "stereo 44.1 kHz audio: %s" % se.strip())

# 3. hostile media
jpeg = open(os.path.join(mm, "media/test-1.jpeg"), "rb").read()
pngb = open(os.path.join(mm, "media/test-1-positive.png"), "rb").read()
hostile = {"empty.jpg": b"", "trunc.jpg": jpeg[:700], "noise.png": bytes(random.Random(3).randrange(256) for _ in range(5000)),
           "zero.png": b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0) + b"\0" * 4,
           "huge.png": b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0) +
                       struct.pack(">I", zlib.crc32(b"IHDR" + struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))),
           "trunc.png": pngb[:3000], "text.ppm": b"P6\n99999 99999\n255\n\x00\x01"}
for name, data in hostile.items():
    p = os.path.join(tmp, name)
    open(p, "wb").write(data)
    rc, so, se = g4run("encode", "--mmproj", f32, "--image", p)
    check(rc == 1 and "error" in se, "%s: exit %d, %s" % (name, rc, se.strip()[:200]))
for name, data in {"empty.wav": b"", "riff.wav": b"RIFF\x10\0\0\0WAVEfmt ", "noise.mp3": bytes(random.Random(5).randrange(256) for _ in range(4000)),
                   "trunc.mp3": open(os.path.join(mm, "media/test-2.mp3"), "rb").read()[:300]}.items():
    p = os.path.join(tmp, name)
    open(p, "wb").write(data)
    rc, so, se = g4run("encode", "--mmproj", f32, "--audio", p)
    check(rc in (0, 1) and (rc == 1) == ("error" in se), "%s: exit %d %s" % (name, rc, se.strip()[:200]))
rc, so, se = g4run("encode", "--mmproj", f16, "--audio", os.path.join(mm, "audio_mp3.pcm16k.wav"))
check(rc == 1 and "audio" in se, "audio on a vision-only projector: %s" % se.strip())
rc, so, se = g4run("encode", "--mmproj", text_model, "--image", os.path.join(mm, "media/test-1.jpeg"))
check(rc == 1 and "clip" in se, "a text model as projector: %s" % se.strip())

# 4. end to end: stack == in-process
if not os.path.exists(text_model):
    print("SKIP: %s missing" % text_model)
else:
    img, aud = os.path.join(mm, "media/test-1.jpeg"), os.path.join(mm, "audio_mp3.pcm16k.wav")
    long_text = "word " * 460 + "Describe."
    for margs, prompt in [(["--image", img], "Describe."), (["--audio", aud, "--image", img], "What is this?"),
                          (["--image", os.path.join(mm, "media/test-1-positive.png"), "--image-min-tokens", "600"], long_text)]:
        base = ["run", "-m", text_model, "--mmproj", f32, *margs, "-p", prompt, "-n", "10", "--json"]
        rc, so, se = g4run(*base, "--in-process")
        check(rc == 0, "in-process: %s" % se.strip())
        if rc:
            continue
        ref = json.loads(so)
        check(-1 in ref["prompt_ids"], "no soft tokens in the prompt")
        for sh in ("1", "2"):
            rc, so, se = g4run(*base, "--shards", sh)
            check(rc == 0, "stack --shards %s: %s" % (sh, se.strip()))
            if rc == 0:
                got = json.loads(so)
                check(got["ids"] == ref["ids"] and got["prompt_ids"] == ref["prompt_ids"],
                      "%s shards %s: %s != %s" % (margs, sh, got["ids"], ref["ids"]))
    # the HTTP gateway: an image as a data: URL in an OpenAI chat request
    import base64, socket, urllib.request
    sk = socket.socket(); sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]; sk.close()
    srv = subprocess.Popen([g4, "serve", "-m", text_model, "--mmproj", f32, "--port", str(port), "--shards", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(env, G4_RUN_DIR=os.path.join(tmp, "srv")))
    try:
        url = "http://127.0.0.1:%d/v1/chat/completions" % port
        for _ in range(300):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2)
                break
            except Exception:
                time.sleep(0.2)
        data = base64.b64encode(open(img, "rb").read()).decode()
        body = {"model": "g4", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + data}}, {"type": "text", "text": "Describe."}]}]}
        rc, so, se = g4run("run", "-m", text_model, "--mmproj", f32, "--image", img, "-p", "Describe.", "-n", "1", "--json", "--in-process")
        n_ref = len(json.loads(so)["prompt_ids"]) if rc == 0 else -1
        try:
            r = urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}), timeout=120)
            j = json.loads(r.read())
            check(j["usage"]["prompt_tokens"] == n_ref, "gateway image prompt: %d tokens, in-process %d" % (j["usage"]["prompt_tokens"], n_ref))
        except Exception as e:
            check(False, "gateway image request: %s" % e)
        body["messages"][0]["content"][0]["image_url"]["url"] = "https://example.com/a.jpg"
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}), timeout=60)
            check(False, "a remote image URL was accepted")
        except urllib.error.HTTPError as e:
            check(e.code == 400, "remote image URL: HTTP %d" % e.code)
    finally:
        srv.terminate()
        srv.wait(timeout=60)
    rc, so, se = g4run("run", "-m", text_model, "--mmproj", f32, "--image", img, "--image", img, "--raw", "-p", "<|image|>x", "-n", "2")
    check(rc == 1 and "placeholder" in se, "two images, one placeholder: %s" % se.strip())

    # 5. persistent stack: cache hits visible in encoderd's counters; text never reaches it
    rc, so, se = g4run("up", "-m", text_model, "--mmproj", f32, "--shards", "1")
    check(rc == 0, "g4 up: %s" % se.strip())
    def enc_counters():
        time.sleep(1.2)  # counters travel with heartbeats (500 ms)
        rc, so, se = g4run("status", "--json")
        st = json.loads(so) if rc == 0 else {}
        for d in st.get("daemons", []):
            if d.get("role") == "encoder":
                return d.get("counters", {})
        return {}
    if rc == 0:
        c0 = enc_counters()
        rc1, so1, se1 = g4run("run", "-m", text_model, "-p", "Hello", "-n", "4")
        c1 = enc_counters()
        check(rc1 == 0 and c1.get("requests") == c0.get("requests", 0), "text-only request reached encoderd: %s %s" % (c0, c1))
        outs = []
        for _ in range(2):
            rc2, so2, se2 = g4run("run", "-m", text_model, "--mmproj", f32, "--image", img, "-p", "Describe.", "-n", "6", "--json")
            check(rc2 == 0, "image on the persistent stack: %s" % se2.strip())
            outs.append(json.loads(so2)["ids"] if rc2 == 0 else None)
        c2 = enc_counters()
        check(outs[0] == outs[1], "the cached image gave other ids")
        check(c2.get("cache_misses") == c0.get("cache_misses", 0) + 1 and c2.get("cache_hits") == c0.get("cache_hits", 0) + 1,
              "cache counters %s -> %s" % (c0, c2))
        print("encoderd counters after two identical images:", c2)
        g4run("down")

finish()
