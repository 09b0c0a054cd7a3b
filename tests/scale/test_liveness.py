#!/usr/bin/env python3
"""Liveness apart from work: stages whose forward passes take seconds.
Every shard is slowed with G4_SHARD_MIN_FORWARD_MS (each forward pass lasts at
least that long), as a deep model on a busy CPU would be.
  * requests through a 2-stage stack with 5 s batches complete with the ids of
    --in-process, and `g4 status` answers within 1 s all along, showing a
    stage busy with its batch (rows, layers, seconds);
  * a stage busy without progress past the stuck threshold is reported
    `stuck` (and the request still completes);
  * kill -9 of a shard in the middle of a 5 s batch reaches the client
    within 3 s (a notice), and the request resumes on the restarted shard;
  * a deadline that passes during a 3-chunk prefill ends the request, and the
    chunks after it are never run;
  * a long prefill shows its progress on a terminal (tokens done / total, rate,
    ETA) and prints nothing of it into pipes.
Usage: test_liveness.py G4_BINARY TESTDATA_DIR"""
import json, os, pty, select, signal, subprocess, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from g4test import Scratch, check, finish, start  # noqa: E402

g4, td = start("models")
model = os.path.join(td, "models", "dense-q8_0.gguf")
ref = json.load(open(os.path.join(td, "models", "dense-q8_0.long.json")))
ids = ",".join(map(str, ref["prompt"]["tokens_with_bos"]))
STRETCH = 5000
scratch = Scratch("g4-liveness-", g4)
env = scratch.env


def g4run(*args, timeout=300, extra=None):
    e = dict(env, **(extra or {}))
    r = subprocess.run([g4] + list(args), capture_output=True, text=True, timeout=timeout, env=e)
    return r.returncode, r.stdout, r.stderr


def status():
    t0 = time.time()
    rc, out, err = g4run("status", "--json", timeout=30)
    return time.time() - t0, (json.loads(out) if rc == 0 else {})


def shards(st):
    return [d for d in st.get("daemons", []) if d["role"] == "shard" and d["state"] != "gone"]


if True:
    # the reference, unstretched
    rc, out, err = g4run("run", "--in-process", "-m", model, "--prompt-ids", ids, "-n", "3", "--temp", "0", "--json")
    want = json.loads(out)["ids"] if rc == 0 else None
    check(want, "in-process reference: %s" % err)

    # 1. two 5 s stages, two clients; status answers fast and shows the work
    slow = {"G4_SHARD_MIN_FORWARD_MS": str(STRETCH), "G4_STUCK_AFTER_MS": "2500"}
    rc, out, err = g4run("up", "-m", model, "--shards", "2", extra=slow)
    check(rc == 0, "g4 up: %s" % err)
    results = {}

    def client(k):
        results[k] = g4run("run", "--prompt-ids", ids, "-n", "3", "--temp", "0", "--json", timeout=600)

    t0 = time.time()
    th = [threading.Thread(target=client, args=(k,)) for k in range(2)]
    for t in th:
        t.start()
    worst, busy_seen, stuck_seen = 0.0, [], []
    while any(t.is_alive() for t in th):
        dt, st = status()
        worst = max(worst, dt)
        for d in shards(st):
            w = d.get("work") or {}
            if d.get("activity") in ("busy", "stuck") and w.get("batch_id") and w.get("elapsed_ms", 0) >= 1000:
                busy_seen.append((d["name"], w.get("rows"), w.get("steps_done"), w.get("steps_total"), w["elapsed_ms"]))
            if d.get("activity") == "stuck":
                stuck_seen.append(d["name"])
        time.sleep(0.3)
    for t in th:
        t.join()
    took = time.time() - t0
    for k in range(2):
        rc, out, err = results[k]
        got = json.loads(out)["ids"] if rc == 0 else err.strip()
        check(got == want, "client %d through 5 s stages: %s, in-process %s" % (k, got, want))
        check("prefill:" not in err and "\r" not in err, "progress written into a pipe: %r" % err[:200])
    # 3 tokens = 3 batches per request through 2 stages of >= 5 s each
    check(took >= 3 * 2 * STRETCH / 1000 - 1, "the stretch was not applied (%.1f s)" % took)
    check(worst < 1.0, "g4 status took %.2f s during a long batch" % worst)
    check(len(busy_seen) > 0 and all(b[1] and b[3] for b in busy_seen),
          "g4 status never showed a stage busy with its batch: %s" % busy_seen[:3])
    check(len(stuck_seen) > 0, "a stage without progress for 2.5 s (its first batch) was never reported stuck")
    print("5 s stages: %d requests in %.1f s, g4 status at most %.2f s, busy seen %d times (e.g. %s), stuck seen %d times"
          % (2, took, worst, len(busy_seen), busy_seen[:1], len(stuck_seen)))

    # 2. kill -9 of a shard in the middle of a long batch: the client hears of it within 3 s; the
    #    supervisor restarts the shard and the request ends as an undisturbed one
    proc = subprocess.Popen([g4, "run", "--prompt-ids", ids, "-n", "1", "--temp", "0", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    t_end = time.time() + 20
    while time.time() < t_end and victim is None:
        _, st = status()
        for d in shards(st):
            if (d.get("work") or {}).get("elapsed_ms", 0) >= 1000:
                victim = d
        time.sleep(0.2)
    check(victim is not None, "no stage was seen busy for kill -9")
    if victim:
        os.kill(victim["pid"], signal.SIGKILL)
        t_kill = time.time()
        note = None
        for line in proc.stderr:
            if line.startswith("note:"):
                note = (time.time() - t_kill, line.strip())
                break
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        check(note is not None and note[0] < 3.0, "kill -9 of %s mid-batch: no notice within 3 s: %s" % (victim["name"], note))
        got = json.loads(out)["ids"] if proc.returncode == 0 else "rc %s: %s" % (proc.returncode, err[-200:])
        check(got == want[:1], "after kill -9 of %s mid-batch: %s, in-process %s" % (victim["name"], got, want[:1]))
        print("kill -9 of %s in a %.1f s-old batch: client told after %.2f s (%s), request resumed: %s" % (
            victim["name"], victim["work"]["elapsed_ms"] / 1000, note[0] if note else -1,
            note[1][:100] if note else "", got == want[:1]))
    else:
        proc.kill()
        proc.communicate()
    g4run("down", timeout=120)

    # 3. a deadline during a 3-chunk prefill: the later chunks are not run
    rc, out, err = g4run("up", "-m", model, "--shards", "1", extra={"G4_SHARD_MIN_FORWARD_MS": "3000"})
    check(rc == 0, "g4 up: %s" % err)
    long_ids = ",".join(["2"] + [str(1000 + (i * 37) % 5000) for i in range(1299)])
    t0 = time.time()
    rc, out, err = g4run("run", "--prompt-ids", long_ids, "-n", "2", "--temp", "0", "--timeout", "2")
    dt = time.time() - t0
    check(rc != 0 and "deadline" in err and dt < 5, "deadline of 2 s in a long prefill: rc %d after %.1f s: %s"
          % (rc, dt, err.strip()[-200:]))
    time.sleep(8)  # two more 3 s chunks would have run by now
    _, st = status()
    batches = [d.get("counters", {}).get("batches") for d in shards(st)]
    check(batches == [1], "after a deadline in the first of 3 prefill chunks the shard ran %s batches" % batches)
    print("deadline in a 3-chunk prefill: error after %.1f s, shard batches afterwards %s" % (dt, batches))

    # 4. the same 3-chunk prefill on a terminal: progress lines on stderr
    master, slave = pty.openpty()
    p = subprocess.Popen([g4, "run", "--prompt-ids", long_ids, "-n", "1", "--temp", "0"], env=env,
                         stdout=subprocess.PIPE, stderr=slave, text=False)
    os.close(slave)
    tty = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    p.wait(timeout=60)
    os.close(master)
    lines = [l for l in tty.decode(errors="replace").replace("\x1b[K", "").split("\r") if l.startswith("prefill:")]
    print("progress on a terminal: %d updates, e.g. %r ... %r" % (len(lines), lines[:1], lines[-1:]))
    check(p.returncode == 0 and len(lines) >= 3 and "/1300 tokens" in lines[-1] and "tok" in lines[-1],
          "no prefill progress on a terminal: rc %s, %r" % (p.returncode, tty[-300:]))
    done = [int(l.split()[1].split("/")[0]) for l in lines]
    check(done == sorted(done) and done[-1] > done[0], "progress does not advance: %s" % done)
    check(any("ETA" in l for l in lines), "no ETA in %s" % lines[-3:])
    g4run("down", timeout=120)
finish()
