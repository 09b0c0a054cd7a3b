#!/usr/bin/env python3
"""A stack under attack from peers that speak the protocol (hostile_peer) and
clients that send too much:
  * a daemon on a non-loopback tcp:// without keys refuses to start; with
    --insecure it starts and `g4 status` warns;
  * with the key set (g4 keygen) on tcp://: a client key submits requests but
    cannot register, send results or receive a batch; no key gets nothing;
  * on ipc://: a Register under a live daemon's name evicts nothing, forged
    results change nothing, a batch naming an endpoint the scheduler did not
    register goes nowhere;
  * four concurrent clients, one with an out-of-range token id: the three
    others complete, the fourth gets a clear error (HTTP 400 via the gateway);
  * each limit (tokenizer input, messages, stop strings, sample rows) is
    refused within a second while the stack keeps serving.
Usage: test_hostile.py G4_BINARY TESTDATA_DIR HOSTILE_PEER"""
import json, os, random, shutil, socket, subprocess, sys, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, runner, start  # noqa: E402

g4, td = start("models")
peer = sys.argv[3]
bin_dir = os.path.dirname(os.path.abspath(g4))
model = os.path.join(td, "models", "dense-q8_0.gguf")
if not os.path.exists(model):
    print("SKIP: %s not found" % model)
    sys.exit(77)
scratch = Scratch("g4-hostile-", g4)
D = scratch.dir
base_env = {k: v for k, v in scratch.env.items() if not k.startswith("G4_CURVE") and k != "G4_INSECURE"}


_taken = set()


def port():
    """A free port below the ephemeral range (outgoing connections never take it),
    distinct from every other this test took."""
    while True:
        p = random.randrange(20000, 32000)
        if p in _taken:
            continue
        s = socket.socket()
        try:
            s.bind(("0.0.0.0", p))
        except OSError:
            continue
        finally:
            s.close()
        _taken.add(p)
        return p


def daemon(name, argv, env=None):
    log = open(os.path.join(D, name + ".log"), "w")
    return scratch.spawn([os.path.join(bin_dir, argv[0])] + argv[1:], env=env or base_env, stdout=log, stderr=log)


def log_of(name):
    with open(os.path.join(D, name + ".log")) as f:
        return f.read()


def stack(tag, ep, env, extra=()):
    """schedulerd, tokenizerd and two shards; ep(name) gives each endpoint."""
    procs = [daemon(tag + "-sched", ["schedulerd", "--listen", ep("ctl"), "--results", ep("res")] + list(extra), env)]
    procs.append(daemon(tag + "-tok", ["tokenizerd", "--model", model, "--listen", ep("tok"), "--scheduler", ep("ctl")], env))
    procs.append(daemon(tag + "-sa", ["shardd", "--model", model, "--layers", "0-2", "--listen", ep("sa"), "--scheduler",
                                      ep("ctl"), "--name", tag + "-sa", "--slots", "8"], env))
    procs.append(daemon(tag + "-sb", ["shardd", "--model", model, "--layers", "2-end", "--listen", ep("sb"), "--scheduler",
                                      ep("ctl"), "--name", tag + "-sb", "--slots", "8"], env))
    g4run = runner(g4, env)
    for _ in range(200):
        rc, out, _ = g4run("status", "--scheduler", ep("ctl"), "--json")
        if rc == 0 and json.loads(out).get("ready"):
            return procs, g4run
        time.sleep(0.1)
    check(False, "%s stack not ready: %s" % (tag, "".join(log_of(tag + s)[-600:] for s in ("-sched", "-tok", "-sa", "-sb"))))
    return procs, g4run


def hostile(env, *args):
    r = subprocess.run([peer] + list(args), capture_output=True, text=True, timeout=30, env=env)
    return r.returncode, r.stdout.strip() + r.stderr.strip()


IDS = "2,2791,588,3324,496,990"

# 1. authenticated by default
p1, p2 = port(), port()
t0 = time.time()
r = subprocess.run([os.path.join(bin_dir, "schedulerd"), "--listen", "tcp://0.0.0.0:%d" % p1, "--results",
                    "tcp://0.0.0.0:%d" % p2], capture_output=True, text=True, timeout=30, env=base_env)
check(r.returncode == 1 and "not a loopback address" in r.stderr and "--insecure" in r.stderr and time.time() - t0 < 2,
      "schedulerd on tcp://0.0.0.0 without keys: rc %d, %s" % (r.returncode, r.stderr.strip()))
ins = daemon("insecure", ["schedulerd", "--listen", "tcp://0.0.0.0:%d" % p1, "--results", "tcp://0.0.0.0:%d" % p2,
                          "--insecure"])
g4plain = runner(g4, base_env)
out = ""
for _ in range(50):
    rc, out, _ = g4plain("status", "--scheduler", "tcp://127.0.0.1:%d" % p1)
    if rc == 0:
        break
    time.sleep(0.1)
check("INSECURE" in out and "INSECURE" in log_of("insecure"), "--insecure: no warning in status (%s) or log" % out)
Scratch.stop([ins])
print("non-loopback tcp:// without keys refused; --insecure warned")

# 2. the key set on tcp://: daemon keys for daemons, a client key for clients
keys, client_keys = os.path.join(D, "keys"), os.path.join(D, "client-keys")
rc, out, err = g4plain("keygen", keys)
check(rc == 0 and os.path.exists(os.path.join(keys, "daemon.key")) and os.path.exists(os.path.join(keys, "client.key")),
      "g4 keygen DIR: %s" % err)
# a public key with '=' in it ('=' is a Z85 character; such keys were once skipped
# when read from a .pub file): make one, so that the run below covers it
for _ in range(40):
    if "=" in open(os.path.join(keys, "client.pub")).read():
        break
    g4plain("keygen", keys, "--force")
check("=" in open(os.path.join(keys, "client.pub")).read(), "no client key with '=' in 40 key sets")
rc, out, err = g4plain("keygen", keys)
check(rc != 0 and "--force" in err, "g4 keygen over an existing set: rc %d %s" % (rc, err))
os.mkdir(client_keys, 0o700)
for f in ("client.key", "client.pub", "daemon.pub"):
    shutil.copy(os.path.join(keys, f), client_keys)
denv = dict(base_env, G4_CURVE_KEYS=keys)
cenv = dict(base_env, G4_CURVE_KEYS=client_keys)
tp = {n: port() for n in ("ctl", "res", "tok", "sa", "sb")}
procs, _ = stack("curve", lambda n: "tcp://127.0.0.1:%d" % tp[n], denv)
sched_ep = "tcp://127.0.0.1:%d" % tp["ctl"]
g4client = runner(g4, cenv)
rc, out, err = g4client("run", "--scheduler", sched_ep, "--prompt-ids", IDS, "-n", "8", "--temp", "0", "--json")
check(rc == 0 and len(json.loads(out)["ids"]) == 8, "a client key submits a request: %s" % err)
rc, out = hostile(cenv, "register", sched_ep, "evil", "4242")
check(out.startswith("refused"), "a client key registering: %s" % out)
rc, out = hostile(cenv, "result", "tcp://127.0.0.1:%d" % tp["res"], "1")
rc, out = hostile(cenv, "batch", "tcp://127.0.0.1:%d" % tp["sa"], "tcp://127.0.0.1:%d" % tp["res"], "1")
time.sleep(0.5)
check("only daemon keys may connect" in log_of("curve-sched"), "the results socket took a client key")
check("only daemon keys may connect" in log_of("curve-sa"), "a shard's data socket took a client key")
rc, out = hostile(base_env, "register", sched_ep, "evil", "4242")
check(out == "no reply", "a peer without keys registering: %s" % out)
rc, out, err = g4client("status", "--scheduler", sched_ep, "--json")
st = json.loads(out) if rc == 0 else {}
check(st.get("ready") and not any(d["name"] == "evil" for d in st.get("daemons", [])) and not st.get("insecure"),
      "status after the attempts: %s" % out)
Scratch.stop(procs)
print("CURVE roles: a client key submits, cannot register, send results or reach a shard")

# 3. ipc://: only the chain speaks to the chain
ep = lambda n: "ipc://%s/%s" % (D, n)  # noqa: E731
procs, g4run = stack("ipc", ep, base_env, ["--batch-timeout", "5000"])
rc, out, _ = g4run("status", "--scheduler", ep("ctl"), "--json")
pids = {d["name"]: d["pid"] for d in json.loads(out)["daemons"]}
rc, out = hostile(base_env, "register", ep("ctl"), "ipc-sa", "4242")
check(out.startswith("refused: retry"), "a Register under a live daemon's name: %s" % out)
rc, out = hostile(base_env, "result", ep("res"), "1")
rc, out = hostile(base_env, "batch", ep("sb"), ep("evil"), "1", ep("evil"))
check(out == "nothing", "the last shard sent a result to an endpoint a batch named: %s" % out)
rc, out = hostile(base_env, "batch", ep("sa"), ep("evil2") + "," + ep("res"), "1", ep("evil2"))
check(out == "nothing", "the first shard forwarded to an endpoint a batch named: %s" % out)
rc, out, _ = g4run("status", "--scheduler", ep("ctl"), "--json")
st = json.loads(out)
check(st["ready"] and {d["name"]: d["pid"] for d in st["daemons"]} == pids, "daemons after the attacks: %s" % out)
print("name eviction, forged results, redirected endpoints: refused")

# 4. four concurrent clients, one with a token id outside the vocabulary
res = {}


def client(i, ids):
    res[i] = g4run("run", "--scheduler", ep("ctl"), "--prompt-ids", ids, "-n", "24", "--temp", "0", "--json")


ts = [threading.Thread(target=client, args=(i, IDS if i < 3 else "2,99999999,588")) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for i in range(3):
    rc, out, err = res[i]
    check(rc == 0 and len(json.loads(out)["ids"]) == 24, "client %d next to a bad one: %s" % (i, err))
check(res[3][0] != 0 and "outside the vocabulary" in res[3][2], "the bad client: %s" % (res[3],))

hp = port()
srv = scratch.spawn([g4, "serve", "--connect", ep("ctl"), "-m", model, "--port", str(hp)], env=base_env,
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(D, "serve.log"), "w"))


def health_ok():
    try:
        return urllib.request.urlopen("http://127.0.0.1:%d/health" % hp, timeout=2).status == 200
    except OSError:
        return False


def http(path, body, timeout=60):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (hp, path), data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), time.time() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), time.time() - t


deadline = time.time() + 10  # the gateway answers /health
while time.time() < deadline and not health_ok():
    time.sleep(0.1)
hres = {}


def hclient(i):
    body = {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0} if i < 3 else {"prompt": [99999999],
                                                                                              "max_tokens": 4}
    hres[i] = http("/v1/completions", body)


ts = [threading.Thread(target=hclient, args=(i,)) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(all(hres[i][0] == 200 for i in range(3)), "three HTTP clients next to a bad one: %s" % [hres[i][:2] for i in range(3)])
check(hres[3][0] == 400 and "vocabulary" in hres[3][1], "the bad HTTP client: %s" % (hres[3][:2],))
print("one client's bad token id fails only its request (HTTP 400)")

# 5. limits: refused within a second, the stack serving meanwhile
code, body, dt = http("/v1/completions", {"prompt": "a" * (3 << 20), "max_tokens": 1})
check(code in (400, 413) and dt < 1.5, "a 3 MiB prompt: %d in %.1f s: %s" % (code, dt, body[:200]))
code, body, dt = http("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}] * 1100, "max_tokens": 1})
check(code == 400 and "messages" in body and dt < 1.5, "1100 messages: %d in %.1f s: %s" % (code, dt, body[:200]))
stops = sum((["--stop", ("%d" % i) * 1500] for i in range(3)), [])  # (g4 run sends up to 16)
t = time.time()
rc, out, err = g4run("run", "--scheduler", ep("ctl"), "--prompt-ids", IDS, "-n", "4", *stops)
check(rc != 0 and "stop strings" in err and time.time() - t < 2, "4.5 KB of stop strings: rc %d %s" % (rc, err))
t = time.time()
rc, out = hostile(base_env, "batch", ep("sa"), ep("sb") + "," + ep("res"), "100000")
time.sleep(0.3)
check("sample rows must be increasing" in log_of("ipc-sa") and time.time() - t < 2,
      "100,000 sample rows: %s" % log_of("ipc-sa")[-300:])
rc, out, err = g4run("run", "--scheduler", ep("ctl"), "--prompt-ids", IDS, "-n", "8", "--temp", "0", "--json")
check(rc == 0 and len(json.loads(out)["ids"]) == 8, "the stack after the limits: %s" % err)
print("limits refused at once; the stack keeps serving")
Scratch.stop([srv] + procs)
finish()
