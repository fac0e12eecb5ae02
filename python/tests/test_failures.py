"""Failures: codes, exception text, dependencies, dead children, deadlines."""

import os
import signal
import time

import pytest

import dist_worker as dw
from conftest import alive, wait_until


def work(callable_id, args, config):
    """1: succeed; 2: raise ValueError("bad shape"); 3: return 5; 4: set a message and
    return 3; 5: return a string; 6: store the pid in tensor 0, then sleep scalars[0] ms."""
    if callable_id == 2:
        raise ValueError("bad shape")
    if callable_id == 3:
        return 5
    if callable_id == 4:
        dw.set_error_message("disk full")
        return 3
    if callable_id == 5:
        return "fine"
    if callable_id == 6:
        if args.tensors:
            args.tensors[0].memoryview()[0] = os.getpid()
        time.sleep(args.scalars[0] / 1000)
    return 0


@pytest.mark.parametrize("mode", ["spawn", "thread"])
def test_codes_and_exception_text(mode):
    with dw.Worker() as w:
        w.spawn(work) if mode == "spawn" else w.add_thread(work)
        with pytest.raises(dw.TaskFailed) as e:
            w.submit(dw.SUB, 2).wait()
        assert e.value.status == dw.Status.TASK_FAILED
        assert "ValueError: bad shape" in e.value.message
        assert "ValueError: bad shape" in str(e.value)
        assert "test_failures.py" in e.value.message  # where it was raised
        with pytest.raises(dw.TaskFailed, match="returned error 5 from callable 0x3"):
            w.submit(dw.SUB, 3).wait()
        with pytest.raises(dw.TaskFailed, match="returned error 3 .*disk full"):
            w.submit(dw.SUB, 4).wait()
        with pytest.raises(dw.TaskFailed, match="return None or 0 for success"):
            w.submit(dw.SUB, 5).wait()
        w.submit(dw.SUB, 1).wait()  # the worker stays in its pool
        with pytest.raises(dw.TaskFailed):
            w.drain()  # the first failure since the last drain
        w.drain()


def test_dependency_failures():
    with dw.Worker() as w:
        w.spawn(work)
        w.spawn(work)
        bad = w.submit(dw.SUB, 3, outputs=[((4,), dw.INT32)])
        dep = w.submit(dw.SUB, 1, inputs=[bad.tensor(0)])
        dep2 = w.submit(dw.SUB, 1, inputs=[bad.tensor(0)], outputs=[((4,), dw.INT32)])
        dep3 = w.submit(dw.SUB, 1, inputs=[dep2.tensor(1)])
        free = w.submit(dw.SUB, 1, outputs=[((4,), dw.INT32)])
        with pytest.raises(dw.DependencyFailed, match="depends on"):
            dep.wait()
        with pytest.raises(dw.DependencyFailed):
            dep3.wait()
        free.wait()
        with pytest.raises(dw.TaskFailed, match="returned error 5"):
            w.drain()
        # outcomes stay known after the drain released the ids
        assert bad.status == dw.Status.TASK_FAILED
        assert dep.status == dw.Status.DEPENDENCY_FAILED
        assert free.status == dw.Status.OK
        with pytest.raises(dw.DependencyFailed):
            dep2.wait()


def test_run_raises_the_first_failure_and_the_orchestrations_own():
    def orch(w):
        a = w.submit(dw.SUB, 2, outputs=[((1,), dw.INT32)])
        w.submit(dw.SUB, 1, inputs=[a.tensor(0)])
        return "unused"

    def broken(w):
        w.submit(dw.SUB, 1)
        raise KeyError("orchestration bug")

    with dw.Worker() as w:
        w.spawn(work)
        with pytest.raises(dw.TaskFailed, match="ValueError: bad shape"):
            w.run(orch)
        with pytest.raises(KeyError, match="orchestration bug"):
            w.run(broken)
        assert w.run(lambda w, x: x * 2, 21) == 42


def test_a_killed_child_ends_its_task_with_child_died():
    with dw.Worker() as w:
        victim = w.spawn(work)
        other = w.spawn(work)
        flag = w.alloc((1,), dw.INT64)
        flag.memoryview()[0] = 0
        t = w.submit(dw.SUB, 6, output_existing=[flag], scalars=[30_000], on=[0])
        assert wait_until(lambda: flag.memoryview()[0] == victim, timeout=10)
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(dw.ChildDied, match="killed by signal 9"):
            t.wait()
        assert time.monotonic() - t0 < 2.0
        assert not alive(victim)
        # work goes to the other child; placed work on the dead one is refused
        w.submit(dw.SUB, 6, output_existing=[flag], scalars=[0]).wait()
        assert flag.memoryview()[0] == other
        with pytest.raises(dw.NoWorker):
            w.submit(dw.SUB, 1, on=[0])
        with pytest.raises(dw.ChildDied):
            w.drain()


def test_task_deadline():
    with dw.Worker(task_timeout=0.3, shutdown_timeout=2.0) as w:
        pid = w.spawn(work)
        w.spawn(work)
        t0 = time.monotonic()
        with pytest.raises(dw.Timeout) as e:
            w.submit(dw.SUB, 6, scalars=[20_000], on=[0]).wait()
        assert not isinstance(e.value, dw.WaitTimeout)
        assert e.value.status == dw.Status.TIMEOUT
        assert time.monotonic() - t0 < 3.0
        assert wait_until(lambda: not alive(pid), timeout=2.0)  # killed and reaped
        w.submit(dw.SUB, 1).wait()
        with pytest.raises(dw.Timeout):
            w.drain()


def test_wait_with_a_timeout():
    with dw.Worker() as w:
        w.add_thread(work)
        t = w.submit(dw.SUB, 6, scalars=[300])
        with pytest.raises(dw.WaitTimeout, match="has not finished yet"):
            t.wait(timeout=0.05)
        assert not t.done() and t.status is None
        t.wait(timeout=10)
        assert t.done() and t.status == dw.Status.OK


def test_init_failures_fail_start():
    def bad_init():
        raise RuntimeError("no device")

    for init in (lambda: 3, bad_init):
        w = dw.Worker()
        w.spawn(work, init=init)
        w.spawn(work)
        with pytest.raises(dw.ChildDied, match="init"):
            w.start()
        with pytest.raises(dw.ShutDown):
            w.submit(dw.SUB, 1)
        w.shutdown()
    with dw.Worker() as w:
        seen = w.alloc((1,), dw.INT64)
        seen.memoryview()[0] = 0

        def init():
            seen.memoryview()[0] = os.getpid()

        pid = w.spawn(work, init=init)
        w.start()
        assert seen.memoryview()[0] == pid


def test_bad_arguments_are_refused_before_the_library():
    with dw.Worker() as w:
        w.add_thread(work)
        with pytest.raises(dw.InvalidArgument):
            w.submit(dw.SUB, -1)
        with pytest.raises(dw.InvalidArgument):
            w.submit(dw.SUB, 1, scalars=[1.5])
        with pytest.raises(dw.InvalidArgument):
            w.submit(dw.SUB, 1, inputs=[((4,), dw.INT32)])  # only OUTPUTs may be (shape, dtype)
        with pytest.raises(dw.InvalidArgument):
            w.submit(7, 1)
        with pytest.raises(dw.InvalidArgument):
            w.alloc((1, 2, 3, 4, 5, 6))
        with pytest.raises(dw.InvalidArgument):
            w.alloc((4,), "complex128")
        with pytest.raises(dw.InvalidArgument, match="group"):
            w.submit(dw.SUB, 1, members=[dw.Args(scalars=[1])], group=2)
        for on in (-1, 1 << 32, "0"):  # out of uint32: refused, not wrapped
            with pytest.raises(dw.InvalidArgument, match="on"):
                w.submit(dw.SUB, 1, on=[on])
        for config in (dw.CallConfig(block_dim=1 << 40),
                       dw.CallConfig(aicpu_thread_num=-(1 << 31) - 1),
                       dw.CallConfig(block_dim=2.0)):
            with pytest.raises(dw.InvalidArgument, match="config"):
                w.submit(dw.SUB, 1, config=config)
        w.submit(dw.SUB, 1, tensors=[(dw.Tag.NO_DEP, dw.Tensor(64, (4,), dw.INT32))]).wait()
