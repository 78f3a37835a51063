"""A time limit on every test (a pytest plugin, loaded for the whole repository by the root ``conftest.py``).

Each test's setup and call each get ``DEFAULT_TIME_LIMIT`` seconds (300; ``NASENGINE_TEST_TIME_LIMIT``
overrides it, ``0`` turns the limit off), or what ``@pytest.mark.time_limit(SECONDS)`` gives. Past it the test
fails with "exceeded its time limit" after the stacks of every thread are written to stderr, so that a hung
test names where it hangs instead of stalling the whole run. The limit is a ``SIGALRM`` interval timer of the
main thread: worker processes forked from the test do not inherit it. Code blocked in C that never returns to
the interpreter cannot be interrupted that way: ``faulthandler`` then dumps the stacks and ends the test run
``BACKSTOP`` seconds later. Where there is no ``SIGALRM`` (Windows) tests run without a limit.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading

import pytest

DEFAULT_TIME_LIMIT = 300.0
#: Seconds after the limit at which a test that did not stop (blocked in C) ends the run.
BACKSTOP = 120.0


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "time_limit(seconds): fail the test when its setup or call takes longer "
                                       f"(default {DEFAULT_TIME_LIMIT:g} s, $NASENGINE_TEST_TIME_LIMIT)")


def time_limit(item) -> float:
    """The limit of ``item`` in seconds (0: none)."""
    marker = item.get_closest_marker("time_limit")
    if marker is not None:
        return float(marker.args[0])
    env = os.environ.get("NASENGINE_TEST_TIME_LIMIT", "").strip()
    return float(env) if env else DEFAULT_TIME_LIMIT


def _limited(item, phase: str):
    limit = time_limit(item)
    if limit <= 0 or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.__stderr__.write(f"\n{item.nodeid}: {phase} exceeded its time limit of {limit:g} s; stacks:\n")
        sys.__stderr__.flush()
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        pytest.fail(f"{phase} exceeded its time limit of {limit:g} s (@pytest.mark.time_limit)", pytrace=True)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    faulthandler.dump_traceback_later(limit + BACKSTOP, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _limited(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _limited(item, "the test")
