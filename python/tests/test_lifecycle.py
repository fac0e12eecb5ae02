"""Life cycle: create, register, start, shut down; versions and the library."""

import ctypes
import ctypes.util
import os
import re
import subprocess
import sys

import pytest

import dist_worker as dw
from conftest import alive, children

HERE = os.path.dirname(os.path.abspath(__file__))


def ok(callable_id, args, config):
    return None


def test_context_manager_shuts_down_and_reaps_children():
    with dw.Worker() as w:
        pids = [w.spawn(ok), w.spawn(ok)]
        w.add_thread(ok)
        assert w.pids == pids
        assert set(pids) <= set(children())
        w.submit(dw.SUB, 1).wait()
    assert all(not alive(p) for p in pids)
    assert not set(pids) & set(children())
    with pytest.raises(dw.ShutDown):
        w.submit(dw.SUB, 1)
    w.shutdown()  # a second shutdown does nothing


def test_shutdown_without_context_manager_and_del():
    w = dw.Worker()
    pid = w.spawn(ok)
    w.shutdown()
    assert not alive(pid)
    w = dw.Worker()
    pid = w.spawn(ok)
    w.start()
    del w  # an unreferenced worker shuts down
    assert not alive(pid)


def test_registration_after_start_is_bad_state():
    with dw.Worker() as w:
        w.add_thread(ok)
        w.start()
        with pytest.raises(dw.BadState) as e:
            w.spawn(ok)
        assert e.value.status == dw.Status.BAD_STATE
        assert e.value.message
        with pytest.raises(dw.BadState):
            w.add_thread(ok)


def test_exit_raises_the_shutdown_failure_only_without_another_exception():
    def fail(callable_id, args, config):
        return 7

    with pytest.raises(dw.TaskFailed, match="returned error 7"):
        with dw.Worker() as w:
            w.add_thread(fail)
            w.submit(dw.SUB, 1)  # never waited for nor drained
    with pytest.raises(RuntimeError, match="mine"):
        with dw.Worker() as w:
            w.add_thread(fail)
            w.submit(dw.SUB, 1)
            raise RuntimeError("mine")


def test_options_in_seconds_are_checked():
    with pytest.raises(dw.InvalidArgument):
        dw.Worker(task_timeout=0)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
        dw.Worker(shutdown_timeout=-1.0)
    with pytest.raises(dw.InvalidArgument):
        dw.Worker(level="three")
    with pytest.raises(dw.InvalidArgument):
        dw.Worker(alloc_timeout=float("inf"))  # None is "no limit"
    with dw.Worker(level=2, heap_size=1 << 20, alloc_timeout=0, task_timeout=1.5,
                   shutdown_timeout=None, start_timeout=None, worker_spin_us=10) as w:
        assert w.level == 2
        w.add_thread(ok)
        w.submit(dw.SUB, 1).wait()


def test_integer_options_out_of_their_c_range_are_refused():
    for kw in ({"heap_size": 1 << 64}, {"heap_size": -1}, {"heap_size": True},
               {"level": 1 << 32}, {"level": -1}, {"worker_spin_us": 1 << 32},
               {"poll_interval_us": -1}, {"wait_spin_us": 1.0}):
        with pytest.raises(dw.InvalidArgument, match=next(iter(kw))):
            dw.Worker(**kw)
    with dw.Worker() as w:
        for kw in ({"heap_size": 1 << 64}, {"level": 1 << 32}, {"level": -1}):
            with pytest.raises(dw.InvalidArgument, match=next(iter(kw))):
                w.spawn_level(None, lambda *a: None, **kw)
        assert w.pids == []


def test_add_process_checks_the_pid_before_registering(tmp_path):
    mb = dw.Mailbox.create(f"dist_worker_test_{os.getpid()}_pid")
    try:
        with dw.Worker(start_timeout=2.0) as w:
            for pid in (-5, 0, 1 << 31, "12", True):
                with pytest.raises(dw.InvalidArgument, match="pid"):
                    w.add_process(mb, pid=pid)
            w.add_process(mb)  # not registered by the refused calls
            with pytest.raises(dw.InvalidArgument, match="registered already"):
                w.add_process(mb)
            w.add_thread(ok)
            with pytest.raises(dw.InvalidArgument, match="does not exist"):
                w.submit(dw.SUB, 1, on=2)  # two SUB workers: the mailbox and the thread
    finally:
        mb.unlink()
        mb.close()


def test_no_worker_of_a_type():
    with dw.Worker() as w:
        w.add_thread(ok)
        with pytest.raises(dw.NoWorker):
            w.submit(dw.NEXT_LEVEL, 1)


def test_statuses_match_the_library():
    for s in dw.Status:
        want = "DIST_OK" if s == dw.Status.OK else f"DIST_ERR_{s.name}"
        assert dw.status_name(s) == want
    assert dw.status_name(99) == "DIST_UNKNOWN_STATUS"
    e = dw.Error(dw.Status.CHILD_DIED, "gone")
    assert type(e) is dw.ChildDied and e.status == dw.Status.CHILD_DIED and e.message == "gone"
    assert str(e) == "CHILD_DIED: gone"


def test_structs_have_the_header_layout():
    """Sizes and offsets as a C compiler lays out dist_worker.h (x86-64, aarch64)."""
    from dist_worker import _lib

    assert ctypes.sizeof(_lib.DistTensor) == 40
    assert ctypes.sizeof(_lib.DistCallConfig) == 12
    assert ctypes.sizeof(_lib.DistTaskView) == 24
    assert ctypes.sizeof(_lib.DistTaskArgs) == 40
    assert ctypes.sizeof(_lib.DistTask) == 48
    assert _lib.DistTask.args.offset == 32
    assert ctypes.sizeof(_lib.DistWorkerOptions) == 48
    assert _lib.DistWorkerOptions.heap_ring_size.offset == 8
    assert _lib.DistWorkerOptions.start_timeout_ms.offset == 44


def test_version_is_the_librarys_and_cargos():
    assert dw.__version__ == dw.library_version
    cargo = os.path.join(HERE, "..", "..", "Cargo.toml")
    if not os.path.exists(cargo):
        pytest.skip("not in the source tree")
    with open(cargo) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    assert dw.__version__ == version


def _import(env, prelude=""):
    code = prelude + "import dist_worker; print(dist_worker.library_path)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)


def test_a_mismatched_library_is_refused(package_env):
    prelude = ("import sys, types; m = types.ModuleType('dist_worker._version'); "
               "m.__version__ = '9.9.9'; sys.modules['dist_worker._version'] = m; ")
    r = _import(package_env, prelude)
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "9.9.9" in r.stderr and dw.library_version in r.stderr
    assert dw.library_path in r.stderr


def test_library_from_the_environment(package_env, tmp_path):
    r = _import(package_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == dw.library_path
    package_env["DIST_WORKER_LIBRARY"] = str(tmp_path / "missing.so")
    r = _import(package_env)
    assert r.returncode != 0 and "ImportError" in r.stderr and "missing.so" in r.stderr
    libc = ctypes.util.find_library("c")
    if libc:
        package_env["DIST_WORKER_LIBRARY"] = libc
        r = _import(package_env)
        assert r.returncode != 0 and "is not libdist_worker" in r.stderr


def test_installed_package_finds_its_library(package_env):
    """Without DIST_WORKER_LIBRARY, an installed package loads the library of its install."""
    pkg = os.path.dirname(os.path.abspath(dw.__file__))
    if not os.path.exists(os.path.join(pkg, "_install.py")):
        pytest.skip("not a CMake install of the package")
    del package_env["DIST_WORKER_LIBRARY"]
    r = _import(package_env)
    assert r.returncode == 0, r.stderr
    lib_dir = os.path.normpath(os.path.join(pkg, "..", "..", "..", ".."))
    assert r.stdout.strip().startswith(lib_dir + os.sep)


def test_spawn_is_fork_safe_while_other_threads_run_python():
    """Children forked while another thread keeps running Python code serve
    their tasks, and can start threads of their own (the interpreter was set
    up after the fork as os.fork() sets it up)."""
    import threading

    stop = threading.Event()

    def busy():
        n = 0
        while not stop.is_set():
            n += 1

    def threaded(callable_id, args, config):
        out = []
        t = threading.Thread(target=lambda: out.append(os.getpid()))
        t.start()
        t.join()
        return 0 if out == [os.getpid()] else 1

    spinner = threading.Thread(target=busy)
    spinner.start()
    try:
        with dw.Worker(start_timeout=10.0) as w:
            for _ in range(4):
                w.spawn(threaded)
            tasks = [w.submit(dw.SUB, 1) for _ in range(16)]
            for t in tasks:
                t.wait()
    finally:
        stop.set()
        spinner.join()


def test_an_unreferenced_worker_is_freed_at_once():
    import weakref

    w = dw.Worker()
    w.add_thread(ok)
    pid = w.spawn(ok)
    t = w.submit(dw.SUB, 1)
    t.wait()
    ref = weakref.ref(w)
    del w, t  # no reference cycle keeps it: shut down right here
    assert ref() is None
    assert not alive(pid)


def test_shutdown_from_a_callable_is_refused_and_changes_nothing():
    box = {}

    def shut(callable_id, args, config):
        try:
            box["w"].shutdown()
        except dw.BadState as e:
            box["error"] = e
        return 0

    with dw.Worker() as w:
        box["w"] = w
        w.add_thread(shut)
        w.submit(dw.SUB, 1).wait()
        assert box["error"].status == dw.Status.BAD_STATE
        w.submit(dw.SUB, 1).wait()  # still running
    box.clear()


def test_shutdown_deadline_kills_a_stuck_child():
    import time

    def stuck(callable_id, args, config):
        time.sleep(60)

    w = dw.Worker(shutdown_timeout=0.3)
    pid = w.spawn(stuck)
    w.submit(dw.SUB, 1)
    t0 = time.monotonic()
    with pytest.raises(dw.Timeout):
        w.shutdown()
    assert time.monotonic() - t0 < 3.0
    assert not alive(pid)


def test_waits_on_other_threads_during_shutdown():
    import threading
    import time

    def slow(callable_id, args, config):
        time.sleep(args.scalars[0] / 1000)

    results = []
    w = dw.Worker(shutdown_timeout=5.0)
    w.spawn(slow)
    w.spawn(slow)
    quick = w.submit(dw.SUB, 1, scalars=[50])
    long = w.submit(dw.SUB, 1, scalars=[400])

    def waiter(task):
        try:
            task.wait()
            results.append("ok")
        except dw.ShutDown:
            results.append("shut down")

    threads = [threading.Thread(target=waiter, args=(t,)) for t in (quick, long)]
    for th in threads:
        th.start()
    time.sleep(0.1)
    w.shutdown()  # finishes both tasks
    for th in threads:
        th.join(10)
    assert sorted(results) in (["ok", "ok"], ["ok", "shut down"])
    assert quick.status == dw.Status.OK


def test_a_worker_copied_into_a_spawned_child_refuses_every_call():
    """In a spawned child (a fork of the host) the Worker is a copy: its
    methods raise BadState without calling the library, and neither they
    nor its collection shut anything down; the child serves on."""
    box = {}

    def child(callable_id, args, config):
        w = box["w"]
        out = args.tensors[0].memoryview() if args.tensors else None
        if callable_id == 1:
            w.shutdown()
        elif callable_id == 2:
            w.submit(dw.SUB, 3)
        elif callable_id == 3:
            for call in (w.start, w.drain, lambda: w.alloc((4,)), lambda: w.scope().__enter__(),
                         lambda: w.run(lambda _w: None), lambda: w.add_thread(ok)):
                try:
                    call()
                except dw.BadState as e:
                    assert "copied into a child by fork" in e.message
                else:
                    raise AssertionError(f"{call} did not raise")
            w.__del__()  # what collecting the copy does
            dw.worker._shutdown_all()  # what the child's atexit would do
            out[0] = os.getpid()

    w = dw.Worker()
    box["w"] = w
    pid = w.spawn(child)
    for callable_id in (1, 2):
        with pytest.raises(dw.TaskFailed) as e:
            w.submit(dw.SUB, callable_id).wait()
        assert f"BadState: BAD_STATE: this Worker belongs to process {os.getpid()}; " \
            "it was copied into a child by fork" in e.value.message
    t = w.submit(dw.SUB, 3, outputs=[((1,), dw.INT64)])
    t.wait()
    assert t.tensor(0).memoryview()[0] == pid  # the same child served on
    w.submit(dw.SUB, 3, outputs=[((1,), dw.INT64)]).wait()
    assert alive(pid)
    with pytest.raises(dw.TaskFailed):
        w.shutdown()  # the two failures were never drained
    assert not alive(pid)
    box.clear()


def test_only_threads_left_running_keep_a_workers_callbacks():
    import gc
    import time

    leaked = len(dw.worker._leaked)

    class Failing:
        def __call__(self, callable_id, args, config):
            return 3

    for _ in range(200):  # shutdowns that fail with no thread left running
        w = dw.Worker(heap_size=1 << 16)
        w.add_thread(Failing())
        w.submit(dw.SUB, 1)
        with pytest.raises(dw.TaskFailed):
            w.shutdown()
    gc.collect()
    assert len(dw.worker._leaked) == leaked

    def slow(callable_id, args, config):
        time.sleep(0.5)

    w = dw.Worker(shutdown_timeout=0.05)
    w.add_thread(slow)
    w.submit(dw.SUB, 1)
    time.sleep(0.05)  # the pool thread is in its callable
    with pytest.raises(dw.Timeout):
        w.shutdown()
    assert len(dw.worker._leaked) == leaked + 1  # the thread may still call back
    assert dw.worker._leaked[-1][0]  # the worker's callbacks
    del w
    gc.collect()
    time.sleep(0.6)  # its callable returns through callbacks that still exist
