"""What every integration test shares: its arguments (G4_BINARY TESTDATA_DIR),
the skip when the reference data is absent (exit 77, never a pass), the tally
of checks and the runner's summary line `N passed, N failed`, and a scratch
directory that is always removed with every process started under it."""
import atexit, os, shutil, signal, subprocess, sys, tempfile

_tally = {"passed": 0, "failed": 0}


def start(need):
    """(g4, testdata) from argv / $G4_TESTDATA; skips unless testdata/need exists."""
    g4, td = sys.argv[1], os.environ.get("G4_TESTDATA") or sys.argv[2]
    if not os.path.exists(os.path.join(td, need)):
        print("SKIP: reference data not found at %s (set G4_TESTDATA)" % td)
        sys.exit(77)
    return g4, td


def check(ok, msg):
    if ok:
        _tally["passed"] += 1
    else:
        _tally["failed"] += 1
        print("FAIL:", msg)
    sys.stdout.flush()


def fail(msg):
    check(False, msg)


def passed():
    return _tally["passed"]


def runner(g4, env):
    """g4run(*args, timeout=...) -> (returncode, stdout, stderr) with env."""
    def g4run(*args, timeout=300):
        r = subprocess.run([g4] + list(args), capture_output=True, text=True, timeout=timeout, env=env)
        return r.returncode, r.stdout, r.stderr
    return g4run


def finish():
    print("%d passed, %d failed" % (_tally["passed"], _tally["failed"]))
    sys.exit(1 if _tally["failed"] else 0)


def _interrupt(sig, frame):
    raise KeyboardInterrupt("signal %d" % sig)


class Scratch:
    """A private temporary directory (under $G4_SCALE_TMP when set: big models
    want a disk with room) that is removed at exit, whether the test passes,
    fails or is interrupted (SIGINT, or the SIGTERM of a ctest timeout), after
    stopping the stack whose run directory it holds (`env`: G4_RUN_DIR is the
    directory itself), every process started with spawn(), and any process
    whose command line names the directory (daemons a test restarted or
    swapped in)."""

    def __init__(self, prefix, g4=None):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("G4_SCALE_TMP") or None)
        # the embedded stacks of g4 commands the test runs make their run directories
        # in $TMPDIR: inside this one, they go with it whatever happens to them
        os.mkdir(os.path.join(self.dir, "tmp"), 0o700)
        os.environ["TMPDIR"] = os.path.join(self.dir, "tmp")
        self.g4 = g4
        self.env = dict(os.environ, G4_RUN_DIR=self.dir)
        self.procs = []
        self.closed = False
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        atexit.register(self.close)

    def path(self, name):
        return os.path.join(self.dir, name)

    def dump_logs(self, pattern=None, lines=40):
        """The last lines of the run directory's daemon logs (those whose text
        has `pattern` when given): printed after a failed check, so that a
        failure in CI carries the daemons' own account of it."""
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".log"):
                continue
            try:
                text = open(self.path(name), errors="replace").read().splitlines()
            except OSError:
                continue
            if pattern:
                text = [l for l in text if pattern in l] or text
            print("---- %s (last %d of %d lines)" % (name, min(lines, len(text)), len(text)))
            for l in text[-lines:]:
                print("  " + l[:240])
        sys.stdout.flush()

    def spawn(self, argv, **kw):
        """A process of its own session, killed by close()."""
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def burners(self, n):
        """n processes that keep a core busy each (contention checks)."""
        return [self.spawn([sys.executable, "-c", "while True: pass"]) for _ in range(n)]

    @staticmethod
    def stop(procs):
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait()

    def close(self):
        if self.closed:
            return
        self.closed = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.stop(self.procs)
        if self.g4 and os.path.exists(self.path("stack.json")):
            try:
                subprocess.run([self.g4, "down"], env=self.env, capture_output=True, timeout=120)
            except Exception:
                pass
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace")
            except OSError:
                continue
            if self.dir in cmd:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
