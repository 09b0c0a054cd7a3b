"""The g4 command as a newcomer meets it (issue 21): every subcommand's --help
on stdout with exit 0; bad numbers refused; llama.cpp's spellings and
--flag=value; "did you mean"; a second `g4 serve` on a busy port fails at once
with "address in use"; `g4 plan` exits 1 when the model does not fit; `g4 chat`
driven through a pseudo-terminal: /help, an unknown /command refused, a
multi-line turn, Ctrl-C stops a reply and the history is kept (/save shows
it); g4 down with a planted state file signals nothing else; and nothing is left behind (no run directory in $TMPDIR, no process)
after a run, a failed run and a Ctrl-C. With --json every failing command prints
{"error": {...}} on stdout and keeps its exit status; -m and --mmproj are checked
(a GGUF, of the right kind, a projector of the model's width) before any daemon starts.

usage: test_cli.py G4_BINARY TESTDATA_DIR"""
import json, os, pty, select, signal, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from g4test import Scratch, check, finish, runner, start  # noqa: E402

CMDS = ["inspect", "quantize", "run", "tokenize", "detokenize", "serve", "chat", "bench", "plan", "up", "status",
        "down", "keygen", "swap", "encode", "chat-template", "parse-output"]


def leftovers(sc):
    """run directories the embedded stacks left in the scratch $TMPDIR, and live g4 daemons naming it"""
    tmp = os.path.join(sc.dir, "tmp")
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if tmp in open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace"):
                procs.append(pid)
        except OSError:
            pass
    return os.listdir(tmp), procs


class Pty:
    """g4 chat on a pseudo-terminal of its own (its controlling terminal: ^C is a SIGINT from the line discipline)"""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(argv[0], argv, env)
        self.out = b""

    def expect(self, what, timeout=60):
        t0 = time.time()
        while what.encode() not in self.out and time.time() - t0 < timeout:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    self.out += os.read(self.fd, 65536)
                except OSError:
                    break
        found = what.encode() in self.out
        if found:
            self.out = self.out[self.out.index(what.encode()) + len(what):]
        return found

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.expect("\0", 0.2)  # keep the pty drained
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def main():
    g4, td = start("models/dense-f32.gguf")
    model = os.path.join(td, "models/dense-f32.gguf")
    sc = Scratch("g4-cli-", g4)
    g4run = runner(g4, sc.env)

    for c in CMDS:
        rc, out, err = g4run(c, "--help")
        check(rc == 0 and out.startswith("usage: g4 " + c) and not err, "g4 %s --help: rc %d, %r %r" % (c, rc, out[:60], err))
    rc, out, _ = g4run("run", "--help")
    check(all(f in out for f in ("--presence-penalty", "--frequency-penalty", "--repeat-last-n", "default 0.8")),
          "run --help names every sampling flag with its default")

    for args, want in ((["-n", "abc"], "not a whole number"), (["--temp", "abc"], "not a number"),
                       (["--top-p", "5"], "from 0 to 1"), (["--ctx", "-5"], "from 0 to"), (["--seed", "x"], "seed"),
                       (["--top-k=-3"], "from 0 to")):
        rc, out, err = g4run("run", "-m", model, "-p", "hi", "--in-process", *args)
        check(rc == 2 and want in err, "run %s refused: rc %d %r" % (args, rc, err))
    rc, _, err = g4run("serve", "--port", "99999")
    check(rc == 2 and "65535" in err, "serve --port 99999 refused: %r" % err)
    rc, _, err = g4run("run", "-m", model, "-p", "hi", "--tmep", "0")
    check(rc == 2 and "did you mean '--temp'" in err, "did you mean: %r" % err)
    rc, _, err = g4run("rnu")
    check(rc == 2 and "did you mean 'run'" in err, "did you mean (command): %r" % err)

    # llama.cpp's spellings give what g4's own do
    base = ["run", "-m", model, "-p", "Hello", "--in-process", "--json", "--temp", "0"]
    rc0, out0, err0 = g4run(*base, "--ctx", "64", "-n", "6", "--seed", "3")
    rc1, out1, err1 = g4run(*base, "--ctx-size=64", "--n-predict", "6", "-s", "3", "-ngl", "99", "--threads=1")
    check(rc0 == 0 and rc1 == 0 and json.loads(out0)["ids"] == json.loads(out1)["ids"],
          "aliases: %s %s / %s %s" % (out0[:80], err0, out1[:80], err1))
    check("-ngl 99 ignored" in err1, "GPU flag explained: %r" % err1)
    # --devices: a GPU this machine lacks (or a build without CUDA) is said plainly; one it has computes the same ids
    for args in (["--devices", "cuda:0"], ["-dev", "CUDA0"], ["--device=cuda:0"]):
        rc2, out2, err2 = g4run(*base, "--ctx", "64", "-n", "6", "--seed", "3", *args)
        if rc2 == 0:
            check(json.loads(out2)["ids"] == json.loads(out0)["ids"], "%s: the GPU's ids %s" % (args, out2[:80]))
        else:
            check(rc2 == 1 and "cuda:0" in err2 and ("no such device" in err2 or "no CUDA backend" in err2),
                  "%s without a GPU: rc %d %r" % (args, rc2, err2))
    rc2, _, err2 = g4run(*base, "--devices", "cuda:0,cuda:1")
    check(rc2 == 2 and "one device" in err2, "--in-process with two devices: rc %d %r" % (rc2, err2))
    rc2, _, err2 = g4run(*base, "--devices", "gpu7")
    check(rc2 == 2 and "one device" in err2, "--devices gpu7: rc %d %r" % (rc2, err2))

    # --json: a failure is a JSON object on stdout too, with the exit status kept
    nothing = sc.path("nonexistent.gguf")
    for args, want_rc in ((["run", "-m", nothing, "-p", "hi", "--json"], 1),
                          (["run", "-m", model, "-p", "hi", "--temp", "abc", "--json"], 2),
                          (["run", "-m", model, "-p", "hi", "--in-process", "--json", "--bogus"], 2),
                          (["status", "--json"], 1),
                          (["plan", "-m", nothing, "--json"], 1),
                          (["plan", "-m", model, "--json", "--topology", "numa:2(memory=1MB) core:2 pu:1"], 1),
                          (["bench", "-m", nothing, "--json"], 1),
                          (["tokenize", "-m", nothing, "-p", "hi", "--json"], 1),
                          (["inspect", nothing, "--json"], 1)):
        rc, out, err = g4run(*args)
        try:
            e = json.loads(out.strip().splitlines()[-1])["error"]
        except (ValueError, IndexError, KeyError, TypeError):
            e = None
        check(rc == want_rc and e and e.get("message") and e.get("code") == want_rc and
              e.get("type") == ("usage" if want_rc == 2 else "failure") and "error: " in err,
              "g4 %s: rc %d, stdout %r, stderr %r" % (" ".join(args[:1] + args[-2:]), rc, out[-300:], err[-200:]))

    # -m and --mmproj checked before any daemon starts: one line, at once, nothing left behind
    mm = os.path.join(td, "mm")
    proj = os.path.join(mm, "mmproj-gemma4-e2b-tiny-f32.gguf")  # width 96; the model's is 128
    cases = [(["-m", model, "--mmproj", nothing], "No such file"),
             (["-m", model, "--mmproj", model], "not a projector"),
             (["-m", model, "--mmproj", os.path.join(td, "models", "dense-f32.short.json")], "not a GGUF"),
             (["-m", os.path.join(td, "models", "dense-f32.short.json")], "not a GGUF")]
    if os.path.exists(proj):
        cases += [(["-m", model, "--mmproj", proj], "width 96"), (["-m", proj], "is a projector")]
    else:
        print("SKIP: the projector checks (no %s)" % proj)
    for args, want in cases:
        for cmd in (["run", "-p", "hi", "--shards", "1"], ["run", "-p", "hi", "--in-process"], ["up"],
                    ["serve", "--port", "1"], ["chat"]):
            t0 = time.time()
            rc, out, err = g4run(cmd[0], *args, *cmd[1:])
            lines = err.strip().splitlines()
            check(rc == 1 and len(lines) == 1 and want in lines[0] and time.time() - t0 < 5 and
                  leftovers(sc) == ([], []) and not os.path.exists(sc.path("stack.json")),
                  "g4 %s %s: rc %d %r, left %s" % (cmd[0], args, rc, err[-300:], leftovers(sc)))

    # a plan that does not fit exits 1
    rc, out, _ = g4run("plan", "-m", model, "--topology", "numa:2(memory=1MB) core:2 pu:1")
    check(rc == 1 and "do not fit" in out, "plan that does not fit: rc %d" % rc)

    # two servers, one port: the second fails at once, before loading anything
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = sc.spawn([g4, "serve", "-m", model, "--port", str(port), "--shards", "1"], env=sc.env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = time.time()
    rc, _, err = g4run("serve", "-m", model, "--port", str(port))
    check(rc == 1 and "Address already in use" in err and time.time() - t0 < 2,
          "second serve on a busy port: rc %d in %.1f s: %r" % (rc, time.time() - t0, err))
    srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=30)
    check(leftovers(sc) == ([], []), "serve stopped: nothing left: %s" % (leftovers(sc),))

    # nothing left behind after a run on an embedded stack, and after a failed one
    rc, _, err = g4run("run", "-m", model, "-p", "Hi", "-n", "4", "--shards", "1")
    check(rc == 0 and leftovers(sc) == ([], []), "after a run: rc %d, left %s %s" % (rc, leftovers(sc), err[-200:]))
    rc, _, err = g4run("run", "-m", model, "-p", "Hi", "-n", "4", "--shards", "1", "--mmproj", "/nonexistent.gguf")
    check(rc != 0 and leftovers(sc) == ([], []), "after a failed run: rc %d, left %s" % (rc, leftovers(sc)))

    # g4 chat on a terminal
    env = dict(sc.env, TERM="dumb", G4_NO_PROGRESS="1")
    saved = sc.path("conv.json")
    ch = Pty([g4, "chat", "-m", model, "--shards", "1", "--ctx", "32768", "--temp", "0"], env)
    check(ch.expect("> ", 120), "chat shows its prompt")
    ch.send("/help\r")
    check(ch.expect("/save FILE"), "/help lists the commands")
    ch.send("/frobnicate\r")
    check(ch.expect("unknown command '/frobnicate'"), "an unknown /command is refused")
    ch.send('"""first line\r')
    ch.send('second line"""\r')
    time.sleep(1.5)
    ch.send("\x03")
    check(ch.expect("(stopped)", 30), "Ctrl-C stops the reply")
    check(ch.expect("> ", 30), "and the prompt comes back")
    ch.send("Another turn\r")
    time.sleep(1.0)
    ch.send("\x03")
    check(ch.expect("(stopped)", 30) and ch.expect("> ", 30), "a second reply stopped the same way")
    ch.send("/save %s\r" % saved)
    check(ch.expect("saved"), "/save")
    ch.send("/exit\r")
    rc = ch.wait()
    check(rc == 0, "chat exits 0 after /exit: %s" % rc)
    msgs = json.load(open(saved)) if os.path.exists(saved) else []
    roles = [m["role"] for m in msgs]
    check(roles == ["user", "assistant", "user", "assistant"] and msgs[0]["content"] == "first line\nsecond line"
          and msgs[2]["content"] == "Another turn" and msgs[1]["content"],
          "the history survived Ctrl-C (partial replies kept): %s" % [(m["role"], m["content"][:30]) for m in msgs])
    check(leftovers(sc) == ([], []), "after chat: nothing left: %s" % (leftovers(sc),))

    # a planted state file: g4 down signals nothing that is not the daemon it recorded
    victim = sc.spawn(["sleep", "300"])
    start_t = open("/proc/%d/stat" % victim.pid).read().rsplit(")", 1)[1].split()[19]
    planted = {"model": model, "scheduler": "ipc:///nonexistent", "supervisor": victim.pid,
               "supervisor_start": int(start_t), "daemons": [{"name": "x", "pid": victim.pid, "start": int(start_t)}]}
    json.dump(planted, open(sc.path("stack.json"), "w"))
    rc, out, err = g4run("down")
    time.sleep(0.3)
    check(victim.poll() is None, "g4 down left a process that is not its daemon alone: rc %d %s %s" % (rc, out, err))
    json.dump(planted, open(sc.path("stack.json"), "w"))
    os.chmod(sc.dir, 0o755)
    rc, out, err = g4run("down")
    check(rc == 1 and "not trusted" in err and victim.poll() is None, "a run directory open to others is refused: %s" % err)
    os.chmod(sc.dir, 0o700)
    os.unlink(sc.path("stack.json"))
    victim.kill()
    victim.wait()

    # Ctrl-C (SIGINT) of a run on its own stack: nothing left
    p = sc.spawn([g4, "run", "-m", model, "-p", "Hi", "-n", "-1", "--ctx", "32768", "--shards", "1"], env=sc.env,
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    time.sleep(0.5)
    check(leftovers(sc) == ([], []), "after Ctrl-C of a run: nothing left: %s" % (leftovers(sc),))
    finish()


if __name__ == "__main__":
    main()
