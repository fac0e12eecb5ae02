"""Shared fixtures: every test leaves no child process behind."""

import os
import time

import pytest

import dist_worker as dw


def pytest_configure(config):
    """With DIST_WORKER_EXPECT_PACKAGE set (scripts/test.sh), the package under
    test must be the one installed there, not a source tree on sys.path."""
    want = os.environ.get("DIST_WORKER_EXPECT_PACKAGE")
    if want:
        got = os.path.realpath(os.path.dirname(dw.__file__))
        assert got == os.path.realpath(want), f"testing {got}, expected {want}"


def pytest_report_header(config):
    return f"dist_worker {dw.__version__} from {os.path.dirname(dw.__file__)}; library {dw.library_path}"


def children(pid=None):
    """Pids of the processes whose parent is `pid` (this process), zombies included."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid):
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def wait_until(predicate, timeout=5.0, interval=0.005):
    """Polls `predicate` until it is true or `timeout` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_child_left():
    """After each test, no child of the test process is left (alive or zombie)."""
    before = set(children())
    yield
    ok = wait_until(lambda: not (set(children()) - before), timeout=3.0)
    assert ok, f"children left behind: {sorted(set(children()) - before)}"


@pytest.fixture
def package_env():
    """Environment for a subprocess that imports the same package and library."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(dw.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    env["DIST_WORKER_LIBRARY"] = dw.library_path
    env["PYTHONUNBUFFERED"] = "1"
    return env
