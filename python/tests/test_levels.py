"""Levels: a Python orchestration function drives an inner level, in a
spawned level process or on a pool thread."""

import os

import pytest

import dist_worker as dw


def leaf(callable_id, args, config):
    if callable_id == 2:
        raise ValueError("bad shape")
    out = args.tensors[0].memoryview()
    out[0] = out[0] + args.scalars[0]


def orch(inner, callable_id, args, config):
    """Adds scalars[0] to the outer tensor twice, through two inner tasks in order."""
    t = args.tensors[0]
    with inner.scope():
        for _ in range(2):
            inner.submit(dw.SUB, callable_id, inouts=[t], scalars=args.scalars)


def test_spawned_and_thread_levels():
    with dw.Worker(level=4) as pod:
        pid = pod.spawn_level(lambda inner: inner.spawn(leaf) and None, orch)
        host = dw.Worker()
        host.add_thread(leaf)
        pod.add_level(host, orch)
        assert pod.pids == [pid]
        acc = pod.alloc((1,), dw.INT64)
        acc.memoryview()[0] = 0
        for index, add in ((0, 5), (1, 7)):
            pod.submit(dw.NEXT_LEVEL, 1, inouts=[acc], scalars=[add], on=[index]).wait()
        assert acc.memoryview()[0] == 2 * 5 + 2 * 7  # the top's heap memory at every depth
        for index, how in ((0, "child pid"), (1, "thread")):
            scratch = pod.alloc((1,), dw.INT64)
            with pytest.raises(dw.TaskFailed) as e:
                pod.submit(dw.NEXT_LEVEL, 2, inouts=[scratch], scalars=[1], on=[index]).wait()
            assert "L4 task" in e.value.message and "-> L3 worker" in e.value.message
            assert "ValueError: bad shape" in e.value.message and how in e.value.message
        with pytest.raises(dw.TaskFailed):
            pod.drain()
    with pytest.raises(dw.ShutDown):
        host.submit(dw.SUB, 1)  # shut down with its outer level


def test_a_failing_level_setup_fails_start():
    pod = dw.Worker(level=4)
    pod.spawn_level(lambda inner: 9, orch)
    with pytest.raises(dw.ChildDied):
        pod.start()
    pod.shutdown()


def failing_orch(inner, callable_id, args, config):
    raise ValueError(f"no plan for callable {callable_id}")


def test_an_exception_in_an_orchestration_function_fails_its_task_with_its_text():
    with dw.Worker(level=4) as pod:
        pod.spawn_level(lambda inner: inner.spawn(leaf) and None, failing_orch)
        host = dw.Worker()
        host.add_thread(leaf)
        pod.add_level(host, failing_orch)
        for index in (0, 1):
            with pytest.raises(dw.TaskFailed) as e:
                pod.submit(dw.NEXT_LEVEL, 3, on=[index]).wait()
            assert "the orchestration function returned error" in e.value.message
            assert "ValueError: no plan for callable 3" in e.value.message
        with pytest.raises(dw.TaskFailed):
            pod.drain()


def test_an_orchestration_functions_return_value_is_checked_as_a_callables():
    """None/0 = success, an int32 = its error code, anything else (an int
    out of range, a str, a float, a bool, a Task) fails saying why."""
    returns = {0: None, 1: 0, 2: 5, 3: -7, 4: 1 << 32, 5: -(1 << 32), 6: "0", 7: 2.7, 8: True}
    task = 9  # returns the Task it submitted

    def answer(inner, callable_id, args, config):
        if callable_id == task:
            return inner.submit(dw.SUB, 1, outputs=[((1,), dw.INT64)], scalars=[1])
        return returns[callable_id]

    with dw.Worker(level=4) as pod:
        pod.spawn_level(lambda inner: inner.spawn(leaf) and None, answer)
        host = dw.Worker()
        host.add_thread(leaf)
        pod.add_level(host, answer)
        for index in (0, 1):  # a forked level, a pool-thread level
            for cid in (0, 1):
                pod.submit(dw.NEXT_LEVEL, cid, on=[index]).wait()
            for cid, code in ((2, 5), (3, -7)):
                with pytest.raises(dw.TaskFailed, match=f"returned error {code}$"):
                    pod.submit(dw.NEXT_LEVEL, cid, on=[index]).wait()
            for cid in (4, 5, 6, 7, 8, task):
                with pytest.raises(dw.TaskFailed) as e:
                    pod.submit(dw.NEXT_LEVEL, cid, on=[index]).wait()
                message = e.value.message
                assert f"the orchestration function returned error {dw.EXCEPTION_ERROR}" in message
                if cid in (4, 5):
                    assert f"returned {returns[cid]}, which is not an int32 error code" in message
                else:
                    name = "Task" if cid == task else type(returns[cid]).__name__
                    assert f"({name}): return None or 0 for success" in message
        with pytest.raises(dw.TaskFailed):
            pod.drain()
