#!/usr/bin/env python3
"""An integration test on a busy machine: runs it (its summary is printed as
it goes) while two processes burn a core each, and passes on its result.
Usage: test_contention.py TEST.py G4_BINARY TESTDATA_DIR"""
import os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from g4test import Scratch  # noqa: E402

test = sys.argv[1]
scratch = Scratch("g4-contention-")
burners = scratch.burners(2)
print("2 CPU burners: pids %s" % [b.pid for b in burners], flush=True)
rc = subprocess.run([sys.executable, test] + sys.argv[2:]).returncode
scratch.close()
sys.exit(rc)
