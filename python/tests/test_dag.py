"""Ordering from tags, groups, placement, scopes and heap memory seen by children."""

import os
import time
from array import array

import pytest

import dist_worker as dw


def record(callable_id, args, config):
    """Logs start and end (CLOCK_MONOTONIC, shared by all processes) and the
    pid into the last tensor (int64 [slot] = start, end, pid), then does
    callable_id's work: 1 copies+1 (first input -> first output), 2 sleeps."""
    log = args.tensors[-1].memoryview()
    slot = args.scalars[0]
    log[3 * slot] = time.monotonic_ns()
    log[3 * slot + 2] = os.getpid()
    time.sleep(args.scalars[1] / 1000 if len(args.scalars) > 1 else 0.02)
    if callable_id == 1:
        src, dst = args.tensors[0].memoryview(), args.tensors[1].memoryview()
        for i in range(len(dst)):
            dst[i] = src[i] + 1
    log[3 * slot + 1] = time.monotonic_ns()


def new_log(w, n):
    log = w.alloc((3 * n,), dw.INT64)
    mv = log.memoryview()
    for i in range(len(mv)):
        mv[i] = 0
    return log, mv


def span(mv, slot):
    return mv[3 * slot], mv[3 * slot + 1], mv[3 * slot + 2]


def test_tasks_run_in_the_order_their_tags_give():
    with dw.Worker() as w:
        for _ in range(3):
            w.spawn(record)
        log, mv = new_log(w, 5)
        x = w.alloc((8,), dw.INT32)
        xv = x.memoryview()
        for i in range(8):
            xv[i] = i
        # A: x -> y; B and C read y (independent); D reads B's and C's outputs and
        # overwrites x (INOUT); E reads x after D.
        a = w.submit(dw.SUB, 1, inputs=[x], outputs=[((8,), dw.INT32)], no_dep=[log], scalars=[0])
        y = a.tensor(1)
        b = w.submit(dw.SUB, 1, inputs=[y], outputs=[((8,), dw.INT32)], no_dep=[log],
                     scalars=[1, 200])
        c = w.submit(dw.SUB, 1, inputs=[y], outputs=[((8,), dw.INT32)], no_dep=[log],
                     scalars=[2, 200])
        d = w.submit(dw.SUB, 2, inputs=[b.tensor(1), c.tensor(1)], inouts=[x], no_dep=[log],
                     scalars=[3])
        e = w.submit(dw.SUB, 2, inputs=[x], no_dep=[log], scalars=[4])
        e.wait()
        assert [t.status for t in (a, b, c, d, e)] == [dw.Status.OK] * 5
        A, B, C, D, E = (span(mv, i) for i in range(5))
        assert B[0] >= A[1] and C[0] >= A[1]
        assert D[0] >= max(B[1], C[1])
        assert E[0] >= D[1]
        assert B[0] < C[1] and C[0] < B[1], "B and C are independent: they overlap"
        assert list(b.tensor(1).memoryview()) == [i + 2 for i in range(8)]
        assert list(c.tensor(1).memoryview()) == [i + 2 for i in range(8)]
        w.drain()


def test_groups_run_their_members_at_once():
    with dw.Worker() as w:
        pids = [w.spawn(record) for _ in range(2)]
        log, mv = new_log(w, 4)
        g = w.submit(dw.SUB, 2, members=[dw.Args(no_dep=[log], scalars=[0, 200]),
                                         dw.Args(no_dep=[log], scalars=[1, 200])])
        g.wait()
        m0, m1 = span(mv, 0), span(mv, 1)
        assert {m0[2], m1[2]} == set(pids)
        assert m0[0] < m1[1] and m1[0] < m0[1], "members of a group run at once"
        # group=N: the same arguments for every member
        w.submit(dw.SUB, 2, no_dep=[log], scalars=[2], group=2).wait()
        assert span(mv, 2)[2] in pids
        with pytest.raises(dw.InvalidArgument):
            w.submit(dw.SUB, 2, group=3)  # larger than the pool


def test_placement_runs_on_the_named_worker():
    with dw.Worker() as w:
        pids = [w.spawn(record) for _ in range(3)]
        log, mv = new_log(w, 6)
        for slot, index in enumerate([2, 0, 1, 2]):
            w.submit(dw.SUB, 2, no_dep=[log], scalars=[slot, 1], on=[index]).wait()
            assert span(mv, slot)[2] == pids[index]
        with pytest.raises(dw.InvalidArgument):
            w.submit(dw.SUB, 2, on=[3])


def fill(callable_id, args, config):
    out = args.tensors[0].memoryview()
    for i in range(0, len(out), 4096):
        out[i] = args.scalars[0]


def test_scopes_give_memory_back():
    """A 1 MiB heap serves 16 tasks of 512 KiB each, one scope each."""
    with dw.Worker(heap_size=1 << 20, alloc_timeout=5.0) as w:
        w.spawn(fill)
        for i in range(16):
            with w.scope():
                t = w.submit(dw.SUB, 1, outputs=[((128 * 1024,), dw.INT32)], scalars=[i])
                t.wait()
                assert t.tensor(0).memoryview()[4096] == i
        w.drain()


def test_heap_exhaustion():
    with dw.Worker(heap_size=1 << 20, alloc_timeout=0) as w:
        w.spawn(fill)
        a = w.alloc((160 * 1024,), dw.INT32)  # 640 KiB
        with pytest.raises(dw.ResourceExhausted):
            w.alloc((160 * 1024,), dw.INT32)
        with pytest.raises(dw.ResourceExhausted):
            w.alloc((1 << 20,), dw.INT64)  # can never fit
        assert a.nbytes == 640 * 1024


def kernel(callable_id, args, config):
    """callable 1: out[0] = sum(in) and inout *= 2 (memoryview); 2: numpy; 3: echo
    scalars and config into a uint64 output. Tensors come as inputs, inouts, outputs."""
    if callable_id == 1:
        src, io, out = (t.memoryview(flat=True) for t in args.tensors)
        out[0] = sum(src)
        for i in range(len(io)):
            io[i] *= 2
    elif callable_id == 2:
        src, io, out = (t.numpy() for t in args.tensors)
        out[...] = src.sum(axis=1)
        io *= 2
    elif callable_id == 3:
        out = args.tensors[0].memoryview()
        values = list(args.scalars) + list(config[:2]) + [int(config.enable_profiling),
                                                           int(config.enable_dump_tensor)]
        for i, v in enumerate(values):
            out[i] = v
        out[len(values)] = os.getpid()


@pytest.mark.parametrize("mode", ["spawn", "thread"])
def test_children_read_and_write_heap_memory(mode):
    with dw.Worker() as w:
        pid = w.spawn(kernel) if mode == "spawn" else w.add_thread(kernel)
        src = w.alloc((16,), dw.FLOAT32)
        io = w.alloc((2, 3), dw.INT64)
        sv, iv = src.memoryview(), io.memoryview()
        for i in range(16):
            sv[i] = i * 0.5
        for i in range(2):
            for j in range(3):
                iv[i, j] = i * 3 + j
        t = w.submit(dw.SUB, 1, inputs=[src], outputs=[((1,), dw.FLOAT32)],
                     inouts=[io])
        t.wait()
        assert t.tensor(1) == io
        assert t.tensor(2).memoryview()[0] == sum(i * 0.5 for i in range(16))
        assert iv.tolist() == [[0, 2, 4], [6, 8, 10]]
        assert io.shape == (2, 3) and io.dtype == dw.INT64 and io.nbytes == 48

        e = w.submit(dw.SUB, 3, outputs=[((10,), dw.UINT64)], scalars=[1, (1 << 64) - 1, -1],
                     config=dw.CallConfig(block_dim=8, aicpu_thread_num=2, enable_profiling=True))
        e.wait()
        got = e.tensor(0).memoryview().tolist()
        assert got[:7] == [1, (1 << 64) - 1, (1 << 64) - 1, 8, 2, 1, 0]
        assert (got[7] == pid) if mode == "spawn" else (got[7] == os.getpid())
        w.drain()


def test_numpy_views():
    np = pytest.importorskip("numpy")
    with dw.Worker() as w:
        w.spawn(kernel)
        src = w.alloc((4, 8), dw.FLOAT32)
        io = w.alloc((3,), dw.INT32)
        a = src.numpy()
        a[...] = np.arange(32, dtype=np.float32).reshape(4, 8)
        io.numpy()[...] = [1, 2, 3]
        t = w.submit(dw.SUB, 2, inputs=[src], outputs=[((4,), "float32")], inouts=[io])
        t.wait()
        assert t.tensor(2).numpy().tolist() == a.sum(axis=1).tolist()
        assert io.numpy().tolist() == [2, 4, 6]
        assert dw.DType.of(np.float16) == dw.FLOAT16 and dw.DType.of(np.dtype("int64")) == dw.INT64


def test_orchestration_style():
    def orch(w, n):
        x = w.alloc((4,), dw.INT32)
        for i in range(4):
            x.memoryview()[i] = 10 * i
        tasks = []
        with w.scope():
            prev = x
            for i in range(n):
                t = w.submit(dw.SUB, 1, inputs=[prev], outputs=[((4,), dw.INT32)],
                             no_dep=[log], scalars=[i, 1])
                prev = t.tensor(1)
                tasks.append(t)
            tasks[-1].wait()
            return list(prev.memoryview())

    with dw.Worker() as w:
        w.spawn(record)
        w.add_thread(record)
        log, mv = new_log(w, 8)
        assert w.run(orch, 6) == [10 * i + 6 for i in range(4)]
        ends = [span(mv, i)[1] for i in range(6)]
        starts = [span(mv, i)[0] for i in range(6)]
        assert all(starts[i + 1] >= ends[i] for i in range(5))


def test_a_heap_wait_lasts_alloc_timeout_and_says_so():
    """The library waits in tries of ALLOC_SLICE_MS; the package tries again
    until the Worker's alloc_timeout passes, and the failure names it."""
    with dw.Worker(heap_size=4096, alloc_timeout=0.35) as w:
        w.add_thread(lambda callable_id, args, config: None)
        w.alloc((4096,), dw.UINT8)
        for call in (lambda: w.alloc((64,), dw.UINT8),
                     lambda: w.submit(dw.SUB, 1, outputs=[((64,), dw.UINT8)])):
            t0 = time.monotonic()
            with pytest.raises(dw.ResourceExhausted, match=r"stayed full for 0\.35 s") as e:
                call()
            assert 0.35 <= time.monotonic() - t0 < 0.35 + 2 * dw.ALLOC_SLICE_MS / 1000
            assert "100ms" not in e.value.message
        w.drain()  # nothing was submitted by the refused tries


def test_views_of_a_shut_down_workers_heap_are_refused():
    w = dw.Worker()
    w.add_thread(fill)
    x = w.alloc((4,), dw.INT32)
    x.memoryview()[:] = array("i", [1, 2, 3, 4])
    t = w.submit(dw.SUB, 1, outputs=[((4,), dw.INT32)], scalars=[5])
    t.wait()
    assert x.memoryview().tolist() == [1, 2, 3, 4]
    assert t.tensor(0).memoryview()[0] == 5
    w.shutdown()
    for tensor in (x, t.tensor(0)):
        with pytest.raises(dw.ShutDown, match="heap memory is gone"):
            tensor.memoryview()
        with pytest.raises(dw.ShutDown):
            tensor.memoryview(readonly=True, flat=True)
        try:
            import numpy  # noqa: F401
        except ImportError:
            continue
        with pytest.raises(dw.ShutDown):
            tensor.numpy()
    # A tensor the caller describes itself is not the worker's: no check.
    import ctypes
    buf = (ctypes.c_int32 * 2)(1, 2)
    assert dw.Tensor(ctypes.addressof(buf), (2,), dw.INT32).memoryview().tolist() == [1, 2]
    # Copies describe the same memory; a pickled one loses the link.
    import copy
    import pickle
    with pytest.raises(dw.ShutDown):
        copy.copy(x).memoryview()
    y = pickle.loads(pickle.dumps(x))
    assert y == x and y._worker is None


def test_outcomes_after_shutdown():
    def quick(callable_id, args, config):
        time.sleep(0.05)

    w = dw.Worker()
    w.add_thread(quick)
    waited = w.submit(dw.SUB, 1)
    waited.wait()
    unseen = w.submit(dw.SUB, 1)  # never waited for; the shutdown reports no failure
    w.shutdown()
    for t in (waited, unseen):
        assert t.done() and t.status == dw.Status.OK
        t.wait()

    def fail(callable_id, args, config):
        return 4

    w = dw.Worker()
    w.add_thread(fail)
    failed = w.submit(dw.SUB, 1)
    with pytest.raises(dw.TaskFailed):
        failed.wait()
    unseen = w.submit(dw.SUB, 1)
    with pytest.raises(dw.TaskFailed):
        w.shutdown()  # a failure: which tasks failed is not known here
    assert failed.done() and failed.status == dw.Status.TASK_FAILED
    with pytest.raises(dw.ShutDown, match="before the outcome"):
        unseen.done()


def test_wait_timeouts_inf_and_nan():
    with dw.Worker() as w:
        w.add_thread(fill)
        t = w.submit(dw.SUB, 1, outputs=[((1,), dw.INT32)], scalars=[1])
        t.wait(timeout=float("inf"))  # no limit
        for bad in (float("nan"), -1, "1", True):
            with pytest.raises(dw.InvalidArgument, match="timeout"):
                w.submit(dw.SUB, 1, outputs=[((1,), dw.INT32)], scalars=[1]).wait(timeout=bad)


def test_a_task_whose_id_another_threads_drain_released():
    """A drain releases every task finished by its end, also one another
    thread submitted after it began: a wait on it afterwards says so."""
    import threading

    def work(callable_id, args, config):
        time.sleep(args.scalars[0] / 1000)

    with dw.Worker() as w:
        w.add_thread(work)
        w.add_thread(work)
        w.submit(dw.SUB, 1, scalars=[300], on=0)
        drainer = threading.Thread(target=w.drain)
        drainer.start()
        time.sleep(0.05)  # the drain waits for the first task
        late = w.submit(dw.SUB, 1, scalars=[0], on=1)  # finishes before the drain ends
        drainer.join()
        with pytest.raises(dw.InvalidArgument, match="a drain\\(\\) released its id") as e:
            late.wait()
        assert "drain from the thread that submits" in e.value.message
        with pytest.raises(dw.InvalidArgument):
            late.done()  # its outcome is lost, not "finished"
        w.drain()  # a lost task does not fail a later drain
