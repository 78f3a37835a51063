"""The per-test time limit (tests/time_limit.py): a hung test fails with its stacks instead of stalling the run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
import time

import pytest


@pytest.mark.time_limit(2)
def test_marked_and_hung():
    time.sleep(120)


def test_unmarked_and_hung():  # the default, here $NASENGINE_TEST_TIME_LIMIT=3
    time.sleep(120)


@pytest.mark.time_limit(60)
def test_marked_above_the_default():
    time.sleep(4)


def test_quick():
    pass
'''


def test_a_hung_test_fails_at_its_limit_and_the_others_run(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "NASENGINE_TEST_TIME_LIMIT": "3",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.time_limit", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    assert "the test exceeded its time limit of 2 s" in out and "the test exceeded its time limit of 3 s" in out
    assert "in test_marked_and_hung" in out  # its stack was dumped
    assert elapsed < 100, elapsed  # not the 2 x 120 s the hung tests would take
