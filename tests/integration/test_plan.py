#!/usr/bin/env python3
"""g4 plan on topologies we do not have (hwloc synthetic descriptions):
one shard per NUMA node, contiguous layers covering the model, memory per
shard that adds up to the model's tensors plus the KV cache, layers that share
a KV cache kept together, and a clear "does not fit" when memory is short.
And at the real sizes (models of the real 31B and 26B-A4B shapes written
sparse, without data): the KV cache of one sequence at 8k..256k positions is
what llama.cpp allocates for that context (full-attention layers: every
position; sliding layers: window + ubatch cells), and `g4 run` refuses a
context that cannot fit before it loads anything, with the numbers.
Usage: test_plan.py G4_BINARY TESTDATA_DIR [G4_MAKE_MODEL]"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import check, finish, start  # noqa: E402

g4, td = start("models")
mdir = os.path.join(td, "models")

def plan(model, *args):
    r = subprocess.run([g4, "plan", "-m", os.path.join(mdir, model), "--json"] + list(args), capture_output=True, text=True)
    # exit 1 with the plan on stdout when it does not fit
    return dict(json.loads(r.stdout), rc=r.returncode) if r.returncode in (0, 1) and r.stdout else {"error": r.stderr}

for model in ("dense-f32.gguf", "moe-q8_0.gguf", "dense256-q4_k_m.gguf"):
    size = os.path.getsize(os.path.join(mdir, model))
    for topo, n in (("numa:1 core:4 pu:1", 1), ("numa:2 core:4 pu:1", 2), ("pack:2 numa:2 core:2 pu:2", 4)):
        p = plan(model, "--topology", topo, "--ctx", "256", "--slots", "2")
        sh = p.get("shards", [])
        cover = [l for s in sh for l in range(s["layers"][0], s["layers"][1])]
        check(len(sh) == min(n, p.get("n_layer", 0)) and cover == list(range(p["n_layer"])) and
              [s["numa_node"] for s in sh] == list(range(len(sh))), "%s on %s: %s" % (model, topo, p))
        w = sum(s["weight_bytes"] for s in sh)
        # a tied embedding is mapped by the first shard (embedding) and the last (LM head)
        check(0.5 * size < w <= (1.1 if len(sh) == 1 else 2.0) * size + 1e6 and all(s["kv_bytes"] > 0 for s in sh), "%s weights %d vs file %d" % (model, w, size))
# memory per node drives "fits"
p = plan("dense-f32.gguf", "--topology", "numa:2(memory=1MB) core:2 pu:1")
check(p.get("fits") is False and not all(s["fits"] for s in p["shards"]) and p["rc"] == 1,
      "1 MB nodes must not fit (exit 1): %s" % p)
p = plan("dense-f32.gguf", "--topology", "numa:2(memory=64GB) core:2 pu:1")
check(p.get("fits") is True, "64 GB nodes fit: %s" % p)
# E model: any split; a shard with KV-sharing layers also holds its source layers' caches
p = plan("e-f32.gguf", "--topology", "numa:3 core:2 pu:1")
check(len(p["shards"]) == 3 and all(s["kv_bytes"] > 0 for s in p["shards"]) and
      sum(s["layers"][1] - s["layers"][0] for s in p["shards"]) == p["n_layer"], "e model split: %s" % p)
r = subprocess.run([g4, "plan", "-m", os.path.join(mdir, "dense-f32.gguf"), "--topology", "not a topology"], capture_output=True, text=True)
check(r.returncode == 1 and "topology" in r.stderr, "bad topology: %s" % r.stderr)
# memory bandwidth known (hwloc's Bandwidth attribute, here from an XML topology): layers in
# proportion to it, each node's stage streaming its share of the weights in equal time
import re, shutil, tempfile
lstopo = shutil.which("lstopo-no-graphics") or shutil.which("lstopo")
check(lstopo is not None, "hwloc's lstopo (package hwloc) is needed to write a topology with bandwidths")
def bw_topology(bws, memory="64GB"):
    x = subprocess.run([lstopo, "-i", "numa:%d(memory=%s) core:2 pu:1" % (len(bws), memory), "--of", "xml", "-"],
                       capture_output=True, text=True).stdout
    nodes = re.findall(r'<object type="NUMANode" os_index="(\d+)" cpuset="(0x[0-9a-f]+)"[^>]*gp_index="(\d+)"', x)
    vals = "".join('<memattr_value target_obj_type="NUMANode" target_obj_gp_index="%s" value="%d" initiator_cpuset="%s"/>'
                   % (g, bws[int(o)], c) for o, c, g in nodes)
    f = tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False)
    f.write(x.replace("</topology>", '<memattr name="Bandwidth" flags="5">%s</memattr></topology>' % vals))
    f.close()
    return f.name
for bws, first_more in (([300000, 100000], True), ([100000, 300000], False)) if lstopo else ():
    t = bw_topology(bws)
    p = plan("dense-f32.gguf", "--topology", t, "--ctx", "256", "--slots", "2")
    sh = p.get("shards", [])
    n = [s["layers"][1] - s["layers"][0] for s in sh]
    check(p.get("split") == "bandwidth" and len(n) == 2 and sum(n) == p["n_layer"] and (n[0] > n[1]) == first_more and
          [s["node_bandwidth_mbs"] for s in sh] == bws, "bandwidth split %s: %s" % (bws, p))
    os.unlink(t)
if lstopo:
    t = bw_topology([200000, 100000, 100000, 100000])
    p = plan("e-f32.gguf", "--topology", t, "--ctx", "256", "--slots", "2")
    n = [s["layers"][1] - s["layers"][0] for s in p.get("shards", [])]
    check(p.get("split") == "bandwidth" and len(n) == 4 and sum(n) == p["n_layer"] and min(n) >= 1 and n[0] == max(n),
          "4 nodes, node 0 twice the bandwidth: %s" % p)
    os.unlink(t)
# the default stack follows the plan: on a 2-node machine with unequal bandwidth (given to
# g4 plan and to every daemon of `g4 up` through $HWLOC_XMLFILE) each shard's layers, as
# `g4 status --json` shows them, are the plan's, and each stage computes on its node
if lstopo:
    from g4test import Scratch  # noqa: E402
    t = bw_topology([300000, 100000])
    scratch = Scratch("g4-plan-test-", g4)
    env = dict(scratch.env, HWLOC_XMLFILE=t)
    model = os.path.join(mdir, "dense-f32.gguf")
    r = subprocess.run([g4, "plan", "-m", model, "--json"], capture_output=True, text=True, env=env)
    p = json.loads(r.stdout) if r.returncode == 0 else {}
    want = [s["layers"] for s in p.get("shards", [])]
    check(p.get("split") == "bandwidth" and len(want) == 2 and want[0][1] - want[0][0] > want[1][1] - want[1][0],
          "plan on the XML machine: %s %s" % (r.stdout, r.stderr))
    r = subprocess.run([g4, "up", "-m", model], capture_output=True, text=True, env=env, timeout=120)
    st = subprocess.run([g4, "status", "--json"], capture_output=True, text=True, env=env, timeout=30)
    d = json.loads(st.stdout) if st.returncode == 0 else {}
    got = sorted(x["layers"] for x in d.get("daemons", []) if x.get("role") == "shard")
    check(r.returncode == 0 and got == want, "g4 up's shards %s, g4 plan's %s (%s%s)" % (got, want, r.stderr, st.stderr))
    r = subprocess.run([g4, "run", "-m", model, "--raw", "-p", "The capital of France is", "-n", "4", "--temp", "0",
                        "--json"], capture_output=True, text=True, env=env, timeout=120)
    ids = json.loads(r.stdout).get("ids") if r.returncode == 0 else None
    r = subprocess.run([g4, "run", "--in-process", "-m", model, "--raw", "-p", "The capital of France is", "-n", "4",
                        "--temp", "0", "--json"], capture_output=True, text=True, timeout=120)
    check(ids and ids == json.loads(r.stdout).get("ids"), "the planned stack computes what --in-process does: %s" % ids)
    subprocess.run([g4, "down"], capture_output=True, text=True, env=env, timeout=60)
    os.unlink(t)
# without bandwidths (synthetic topologies): by memory
p = plan("dense-f32.gguf", "--topology", "numa:2 core:2 pu:1")
check(p.get("split") == "memory", "no bandwidth known: split by memory: %s" % p)
# g4 bench: the keys scripts read, in both modes
for mode in (["--in-process"], ["--shards", "2"]):
    r = subprocess.run([g4, "bench", "-m", os.path.join(mdir, "dense-f32.gguf"), "-p", "16", "-n", "4", "--reps", "1",
                        "--json"] + mode, capture_output=True, text=True, timeout=120)
    b = json.loads(r.stdout) if r.returncode == 0 else {}
    check(all(b.get(k, 0) > 0 for k in ("prefill_tps", "decode_tps", "ttft_ms", "ready_ms", "peak_rss_mb")) and
          len(b.get("processes", [])) == (1 if mode[0] == "--in-process" else 4), "g4 bench %s: %s %s" % (mode, r.stdout, r.stderr))
# shardd --numa-node: the process pinned, the weights it multiplies with moved to the node
shardd = os.path.join(os.path.dirname(g4), "shardd")
import tempfile  # noqa: E402
sock_dir = tempfile.mkdtemp(prefix="g4-plan-sock-")
ipc = "ipc://%s/shard.sock" % sock_dir
sh = subprocess.Popen([shardd, "-m", os.path.join(mdir, "dense-f32.gguf"), "--listen", ipc, "--numa-node", "0"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
log = ""
for line in sh.stdout:
    log += line
    if " on ipc://" in line or "error" in line.lower():
        break
sh.terminate()
sh.wait(timeout=20)
import shutil  # noqa: E402
shutil.rmtree(sock_dir, ignore_errors=True)
m = [l for l in log.splitlines() if "weights bound to NUMA node 0:" in l]
check(m and float(m[0].split(":")[-1].split()[0]) > 0.5 * os.path.getsize(os.path.join(mdir, "dense-f32.gguf")) / 1e6,
      "shardd --numa-node 0 must bind its weights: %s" % log)
r = subprocess.run([shardd, "-m", os.path.join(mdir, "dense-f32.gguf"), "--listen", ipc, "--numa-node", "63"],
                   capture_output=True, text=True, timeout=30)
check(r.returncode == 1 and "does not exist" in r.stderr, "a NUMA node that does not exist is said: %s" % r.stderr)

# the real shapes, long contexts
if len(sys.argv) > 3:
    import tempfile  # noqa: E402
    with tempfile.TemporaryDirectory(prefix="g4-plan-") as tmp:
        # (preset, layers full/sliding, KV heads full/sliding, head size full/sliding, window)
        for preset, nf, ns, hf, hs, df, ds, win in (("31b", 10, 50, 4, 16, 512, 256, 1024),
                                                    ("26b-a4b", 5, 25, 2, 8, 512, 256, 1024)):
            path = os.path.join(tmp, preset + ".gguf")
            r = subprocess.run([sys.argv[3], "--preset", preset, "--sparse", "1", "-o", path], capture_output=True,
                               text=True, timeout=120)
            check(r.returncode == 0, "g4_make_model %s: %s" % (preset, r.stderr))
            for ctx in (8192, 32768, 131072, 262144):
                r = subprocess.run([g4, "plan", "-m", path, "--ctx", str(ctx), "--json"], capture_output=True, text=True)
                # (exit 1 with the plan when 16 slots of it do not fit this machine)
                p = json.loads(r.stdout) if r.returncode in (0, 1) and r.stdout else {}
                # llama.cpp (llama-server, -c ctx -ub 512): K and V rows of F16 per cell and layer
                want = 4 * (nf * ctx * hf * df + ns * min(ctx, win + 512) * hs * ds)
                got = p.get("kv_bytes_per_sequence", 0)
                check(abs(got - want) <= 0.05 * want and p.get("slots") == max(1, min(16, 65536 // ctx)),
                      "%s at %d: KV %d bytes, llama.cpp %d; %s" % (preset, ctx, got, want, r.stderr))
            print("%s: KV of one sequence at 128k %.2f GiB" % (preset, json.loads(subprocess.run(
                [g4, "plan", "-m", path, "--ctx", "131072", "--json"], capture_output=True,
                text=True).stdout)["kv_bytes_per_sequence"] / 2**30))
        # GPUs (g4 plan --devices, memory given: no GPU needed): the 31B at 4k x 1 slot
        m31 = os.path.join(tmp, "31b.gguf")
        def dplan(devs):
            r = subprocess.run([g4, "plan", "-m", m31, "--ctx", "4096", "--slots", "1", "--json", "--devices", devs],
                               capture_output=True, text=True)
            return dict(json.loads(r.stdout), rc=r.returncode) if r.returncode in (0, 1) and r.stdout else {"error": r.stderr}
        GiB = 2**30
        # two 12 GB cards hold it: about half each, in chain order, every layer once
        p = dplan("cuda:0=12G,cuda:1=12G")
        sh = p.get("shards", [])
        check(p.get("fits") and [s["device"] for s in sh] == ["cuda:0", "cuda:1"] and sh[0]["layers"][0] == 0 and
              sh[0]["layers"][1] == sh[1]["layers"][0] and sh[1]["layers"][1] == 60 and
              abs((sh[0]["layers"][1]) - 30) <= 3 and all(s["total_bytes"] <= 12 * GiB for s in sh), "31b on 2 x 12G: %s" % p)
        # ... and with the CPU named too, the CPU is left out
        p = dplan("cuda:0=12G,cuda:1=12G,cpu")
        check(p.get("fits") and len(p.get("shards", [])) == 2, "31b on 2 x 12G + cpu: %s" % p)
        # one 16 GB card and the CPU: the card full, the CPU the rest (with the LM head)
        p = dplan("cuda:0=16G,cpu")
        sh = p.get("shards", [])
        check(p.get("fits") and [s["device"] for s in sh] == ["cuda:0", "cpu"] and
              14 * GiB < sh[0]["total_bytes"] <= 16 * GiB and sh[1]["layers"] == [sh[0]["layers"][1], 60], "31b on 16G + cpu: %s" % p)
        # the CPU first: the card takes the last layers and the head
        p = dplan("cpu,cuda:0=16G")
        sh = p.get("shards", [])
        check(p.get("fits") and [s["device"] for s in sh] == ["cpu", "cuda:0"] and sh[1]["layers"][1] == 60 and
              sh[1]["total_bytes"] <= 16 * GiB and sh[1]["layers"][1] - sh[1]["layers"][0] >= 40, "31b on cpu + 16G: %s" % p)
        # two cards that cannot hold it say so (exit 1)
        p = dplan("cuda:0=6G,cuda:1=6G")
        check(p.get("rc") == 1 and p.get("fits") is False, "31b on 2 x 6G: %s" % p)
        r = subprocess.run([g4, "plan", "-m", m31, "--devices", "tpu:0"], capture_output=True, text=True)
        check(r.returncode == 1 and "neither cpu nor cuda" in r.stderr, "a device that is not one: %s" % r.stderr)
        # a context that cannot fit (on a synthetic NUMA node) is refused before loading, with the numbers
        env = dict(os.environ, HWLOC_SYNTHETIC="numa:1 core:2 pu:1")
        r = subprocess.run([g4, "run", "-m", os.path.join(tmp, "31b.gguf"), "--ctx", "262144", "-p", "hi"],
                           capture_output=True, text=True, timeout=60, env=env)
        check(r.returncode == 1 and "does not fit" in r.stderr and "GiB of KV cache" in r.stderr,
              "g4 run with a context too large: rc %d %s" % (r.returncode, r.stderr))
finish()
