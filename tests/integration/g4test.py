"""What every integration test shares: its arguments (G4_BINARY TESTDATA_DIR),
the skip when the reference data is absent (exit 77, never a pass), the tally
of checks and the runner's summary line `N passed, N failed`."""
import os, subprocess, sys

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
