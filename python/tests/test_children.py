"""Children started separately (dist_worker.serve, a reference busy-polling
child) and Ctrl-C in a host."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import dist_worker as dw
from conftest import alive

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def mailbox():
    mb = dw.Mailbox.create(f"dist_worker_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    try:
        yield mb
    finally:
        mb.unlink()
        mb.close()


@pytest.fixture
def start():
    """Starts subprocesses; kills and reaps any still running at the end."""
    procs = []

    def run(args, **kw):
        p = subprocess.Popen(args, **kw)
        procs.append(p)
        return p

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdout, p.stderr):
            if f:
                f.close()


SERVE = textwrap.dedent("""
    import sys
    import dist_worker as dw

    def handler(callable_id, args, config):
        if callable_id == 2:
            raise ValueError("bad shape")
        if callable_id == 3:
            return sum(args.scalars)
        return 0

    how = sys.argv[2] if len(sys.argv) > 2 else "path"
    if how == "path":
        dw.serve(sys.argv[1], handler)
    else:
        mb = dw.Mailbox.open(sys.argv[1])
        dw.serve({"mmap": mb.mmap, "address": mb.address, "mailbox": mb}[how], handler)
    print("served", flush=True)
""")


@pytest.mark.parametrize("how", ["path", "mmap", "address", "mailbox"])
def test_a_separately_started_child_serves_with_dist_worker_serve(how, mailbox, start, package_env):
    assert mailbox.state == 0
    child = start([sys.executable, "-c", SERVE, mailbox.path, how], env=package_env,
                  stdout=subprocess.PIPE, text=True)
    with dw.Worker() as w:
        w.add_process(mailbox.path, pid=child.pid)  # by path: opened and mapped here
        w.submit(dw.SUB, 1).wait()
        with pytest.raises(dw.TaskFailed, match="returned error 6 from callable 0x3"):
            w.submit(dw.SUB, 3, scalars=[1, 2, 3]).wait()
        with pytest.raises(dw.TaskFailed) as e:
            w.submit(dw.SUB, 2).wait()
        assert "ValueError: bad shape" in e.value.message
        with pytest.raises(dw.TaskFailed):
            w.drain()
    assert child.wait(timeout=10) == 0  # SHUTDOWN ends dist_worker.serve
    assert child.stdout.read() == "served\n"


def test_a_separately_started_child_that_dies(mailbox, start, package_env):
    child = start([sys.executable, "-c", SERVE, mailbox.path], env=package_env)
    with dw.Worker() as w:
        w.add_process(mailbox, pid=child.pid)
        w.submit(dw.SUB, 1).wait()
        child.kill()
        child.wait()
        # refused at submit once the death was noticed, else the task ends with it
        with pytest.raises((dw.ChildDied, dw.NoWorker)):
            w.submit(dw.SUB, 1).wait()
        with pytest.raises(dw.NoWorker):
            w.submit(dw.SUB, 1)
        try:
            w.drain()
        except dw.ChildDied:
            pass


def test_a_reference_busy_polling_child_still_works(mailbox, start, tmp_path):
    log = tmp_path / "log"
    child = start([sys.executable, os.path.join(HERE, "reference_child.py"), mailbox.path, str(log)])
    with dw.Worker() as w:
        w.add_process(mailbox, pid=child.pid)
        x = dw.Tensor(0x1000, (2, 3), dw.INT16)
        y = dw.Tensor(0x2000, (), dw.UINT8)
        a = w.submit(dw.SUB, 1, outputs=[x], scalars=[7, 8])
        b = w.submit(dw.SUB, 1, inputs=[x], outputs=[y], scalars=[9],
                     config=dw.CallConfig(block_dim=4, aicpu_thread_num=1))
        c = w.submit(dw.SUB, 2, inputs=[y], scalars=[42])
        d = w.submit(dw.SUB, 1, inputs=[y])
        b.wait()
        a.wait()
        with pytest.raises(dw.TaskFailed, match="returned error 42"):
            c.wait()
        d.wait()
        for i in range(50):  # many round trips through the polled protocol
            w.submit(dw.SUB, 1, scalars=[i]).wait()
        with pytest.raises(dw.TaskFailed):
            w.drain()
    assert child.wait(timeout=10) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == f"1 24 3 7 8 | {0x1000}:2,3:{int(dw.INT16)}"
    assert lines[1] == f"1 4 1 9 | {0x1000}:2,3:{int(dw.INT16)} {0x2000}::{int(dw.UINT8)}"
    assert lines[2] == f"2 24 3 42 | {0x2000}::{int(dw.UINT8)}"
    assert len(lines) == 54


HOST = textwrap.dedent("""
    import sys, time
    import dist_worker as dw

    def slow(callable_id, args, config):
        time.sleep(60)

    how = sys.argv[1]
    with dw.Worker(shutdown_timeout=0.5) as w:
        pid = w.spawn(slow)
        w.submit(dw.SUB, 1)
        print("child", pid, flush=True)
        t0 = time.monotonic()
        try:
            w.drain() if how == "drain" else w.submit(dw.SUB, 1).wait()
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - t0, 3), flush=True)
            raise
""")


@pytest.mark.parametrize("how", ["wait", "drain"])
def test_ctrl_c_interrupts_a_wait_and_the_host_still_shuts_down(how, start, package_env):
    host = start([sys.executable, "-c", HOST, how], env=package_env, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    words = host.stdout.readline().split()
    assert words[0] == "child", host.stderr.read()
    child = int(words[1])
    time.sleep(0.3)  # the host is in its wait
    t0 = time.monotonic()
    host.send_signal(signal.SIGINT)
    words = host.stdout.readline().split()
    assert words and words[0] == "interrupted", host.stderr.read()
    assert time.monotonic() - t0 < 1.5
    assert host.wait(timeout=10) != 0
    assert time.monotonic() - t0 < 5.0
    assert "KeyboardInterrupt" in host.stderr.read()
    assert not alive(child)


HEAP_HOST = textwrap.dedent("""
    import signal, time
    import dist_worker as dw

    signal.alarm(20)  # a host that ignored Ctrl-C would end here, failing the test

    def ok(callable_id, args, config):
        return None

    with dw.Worker(heap_size=4096, alloc_timeout=None) as w:  # None: wait for space forever
        w.add_thread(ok)
        w.alloc((4096,), dw.UINT8)  # the whole heap, until a drain
        for how in ("alloc", "submit"):
            print("blocked", how, flush=True)
            t0 = time.monotonic()
            try:
                if how == "alloc":
                    w.alloc((64,), dw.UINT8)
                else:
                    w.submit(dw.SUB, 1, outputs=[((64,), dw.UINT8)])
                print("returned", how, flush=True)
            except KeyboardInterrupt:
                print("interrupted", how, round(time.monotonic() - t0, 3), flush=True)
    print("shut down", flush=True)
""")


def test_ctrl_c_interrupts_a_submit_or_alloc_waiting_for_heap_space(start, package_env):
    host = start([sys.executable, "-c", HEAP_HOST], env=package_env, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    for how in ("alloc", "submit"):
        assert host.stdout.readline().split() == ["blocked", how], host.stderr.read()
        time.sleep(0.3)  # in the library, waiting for heap space
        t0 = time.monotonic()
        host.send_signal(signal.SIGINT)
        words = host.stdout.readline().split()
        assert words[:2] == ["interrupted", how], (words, host.stderr.read())
        assert time.monotonic() - t0 < 1.0
    assert host.stdout.readline().split() == ["shut", "down"]
    assert host.wait(timeout=10) == 0, host.stderr.read()
