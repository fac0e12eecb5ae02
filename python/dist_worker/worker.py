"""The host side: a Worker (one level: its pools, engine and shared heap),
the tasks submitted to it, scopes, allocations and levels."""

import atexit
import contextlib
import ctypes
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import weakref

from . import _lib
from .child import (
    EXCEPTION_ERROR, _code, _flush, _mailbox, exception_text, init_fn, set_error_message,
    task_fn,
)
from .errors import BadState, Error, InvalidArgument, ShutDown, Status, WaitTimeout
from .tensor import (
    SUB, Args, DType, Tag, Tensor, WorkerType, _config_from_c, _config_to_c, _shape, TaskArgs,
)

WAIT_SLICE_MS = 100
"""A wait blocks in the library at most this long at a time, so Python's
signal handlers (Ctrl-C) run between two slices."""

ALLOC_SLICE_MS = 100
"""A submit or alloc waits for heap ring space in the library at most this
long at a time (the C worker's ``alloc_timeout_ms``); the package tries
again until the Worker's ``alloc_timeout`` passes, so Python's signal
handlers (Ctrl-C) run between two tries. A refused try submits nothing."""

_U32_MAX = (1 << 32) - 1
_tls = threading.local()  # .pool: the Worker whose THREAD callable runs here
_live = weakref.WeakSet()
_leaked = []  # callbacks a pool thread left running past shutdown may still call

# What the library's messages say (they carry no other sign of these cases).
_HEAP_FULL = re.compile(r"the heap ring stayed full for \S+")
_LEFT_RUNNING = "were left running"
_UNKNOWN_ID = "is unknown (never issued, or released by a drain)"


def _uint(name, value, bits):
    """An int option that must fit the C type (unsigned, ``bits`` wide)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"{name}={value!r}: expected an int from 0 to 2**{bits}-1")
    return value


def _wait_seconds(timeout):
    """A wait's timeout: None or inf = no limit (None), else seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or math.isnan(timeout) or timeout < 0:
        raise InvalidArgument(
            Status.INVALID_ARGUMENT,
            f"timeout={timeout!r}: expected seconds >= 0, or None for no limit")
    return None if math.isinf(timeout) else timeout


def _seconds_text(seconds):
    return "0 s" if seconds == 0 else f"{seconds:g} s"


class _Calls:
    """How many calls of a worker's callables (or orchestration functions)
    run on this process's pool threads right now."""

    __slots__ = ("lock", "n")

    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0

    @contextlib.contextmanager
    def running(self):
        with self.lock:
            self.n += 1
        try:
            yield
        finally:
            with self.lock:
                self.n -= 1


def _ms(name, seconds, zero_ok):
    """Seconds (float) as the library's milliseconds; None = no limit (0)."""
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0 \
            or not math.isfinite(seconds):
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"{name}={seconds!r}: expected seconds >= 0")
    if seconds == 0:
        if zero_ok:
            return 0
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"{name}=0: pass None for no limit, or a positive number")
    ms = math.ceil(seconds * 1000)
    if ms > _U32_MAX:
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"{name}={seconds!r} s is too long")
    return ms


def _worker_type(t):
    try:
        return WorkerType(t)
    except ValueError:
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"no worker type has the value {t!r}") from None


def _callable_id(c):
    c = getattr(c, "callable_id", c)
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 1 << 64:
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"callable {c!r}: expected an id (int, 0 .. 2**64-1)")
    return c


class Task:
    """A submitted task: ``id`` (the library's, never 0), :meth:`wait`,
    :meth:`done` and :meth:`tensor` (its tensors as dispatched, with the
    heap addresses of the OUTPUTs the engine allocated).

    Its outcome stays known once a wait, :meth:`done`, :attr:`status` or
    :meth:`Worker.drain` saw it, and after a shutdown that reported no
    failure (every task then succeeded). A drain releases the ids of every
    task finished by then, also of tasks another thread submitted after
    the drain began: waiting afterwards on such a task raises
    :class:`InvalidArgument` (its outcome is lost). Drain from the thread
    that submits, or wait on tasks before another thread drains."""

    __slots__ = ("_worker", "id", "_members", "_outcome", "_racy", "_lost", "__weakref__")

    def __init__(self, worker, task_id, members):
        self._worker = worker
        self.id = task_id
        self._members = members
        self._outcome = None
        self._racy = False  # submitted while a drain ran: that drain may release its id
        self._lost = None  # the message, once a drain released the id unseen

    def wait(self, timeout=None):
        """Waits for the task; returns None when it succeeded, raises its
        :class:`Error` when it failed, :class:`WaitTimeout` when ``timeout``
        seconds passed first (the task runs on; None or ``float("inf")``:
        no limit). Ctrl-C interrupts it. The outcome stays known after a
        drain. Raises :class:`InvalidArgument` (here, and from :meth:`done`
        and :attr:`status`) when a drain by another thread released the
        task's id before its outcome was seen here (see :class:`Task`)."""
        status, message = self._settle(_wait_seconds(timeout))
        if status:
            raise Error(status, message)

    def done(self):
        """Whether the task has finished (it never waits)."""
        return self._settle(0, raise_timeout=False)[0] is not None

    @property
    def status(self):
        """The task's :class:`Status` once it finished, else None (never waits)."""
        s = self._settle(0, raise_timeout=False)[0]
        return None if s is None else Status(s)

    def tensor(self, index=0, member=0):
        """Tensor ``index`` of group member ``member`` as dispatched."""
        return self._members[member][index]

    @property
    def tensors(self):
        """The tensors of member 0 as dispatched."""
        return list(self._members[0])

    def _settle(self, timeout, raise_timeout=True):
        if self._lost is not None:
            raise InvalidArgument(Status.INVALID_ARGUMENT, self._lost)
        if self._outcome is None:
            try:
                r = self._worker._wait_id(self.id, timeout)
            except ShutDown:
                if self._outcome is not None:  # the shutdown reported every task OK
                    return self._outcome
                raise
            if r[0] is None:
                if raise_timeout:
                    raise WaitTimeout(Status.TIMEOUT, r[1])
                return r
            if r[0] == Status.INVALID_ARGUMENT and _UNKNOWN_ID in r[1]:
                self._lost = (
                    f"task {self.id:#x} is unknown to its Worker: a drain() released its id "
                    "before its outcome was seen here, so the outcome is lost (a drain "
                    "releases every task finished by then, also tasks another thread "
                    "submitted after the drain began); drain from the thread that submits, "
                    "or wait on tasks before another thread drains")
                raise InvalidArgument(Status.INVALID_ARGUMENT, self._lost)
            self._outcome = r
        return self._outcome

    def __repr__(self):
        return f"Task({self.id:#x})"


class Worker:
    """One level of the hierarchy (a ``DistWorker``): pools of workers, the
    DAG engine and a MAP_SHARED heap that children spawned later see at the
    same address.

    ``Worker(level=3, heap_size=64 << 20, alloc_timeout=5.0,
    task_timeout=None, shutdown_timeout=10.0, start_timeout=30.0)``: times
    in seconds (None = no limit; ``alloc_timeout=0`` fails at once); the
    ``*_spin_us`` / ``poll_interval_us`` tunables of ``DistWorkerOptions``
    may be given too (integers out of their C type's range are
    InvalidArgument). A context manager: leaving it shuts down, raising the
    shutdown's failure only when no other exception is on its way.

    A Worker belongs to the process that created it: in a child made by
    fork (a spawned child's callable sees a copy) every method raises
    :class:`BadState`, and the copy never shuts anything down.

    Register workers (:meth:`spawn`, :meth:`add_thread`, :meth:`add_process`,
    :meth:`spawn_level`, :meth:`add_level`) before the first submit (or
    :meth:`start`); then :meth:`submit` tasks, or :meth:`run` an
    orchestration function.

    Attributes: ``level`` (3 = host), ``pids`` (the children spawned by
    :meth:`spawn` and :meth:`spawn_level`, in order).
    """

    def __init__(self, level=3, heap_size=64 << 20, alloc_timeout=5.0, task_timeout=None,
                 shutdown_timeout=10.0, start_timeout=30.0, worker_spin_us=None,
                 dispatcher_spin_us=None, wait_spin_us=None, poll_interval_us=None):
        opts = _lib.DistWorkerOptions()
        _lib.lib.dist_worker_options_init(ctypes.byref(opts))
        opts.level = _uint("level", level, 32)
        opts.heap_ring_size = _uint("heap_size", heap_size, 64)
        # The library waits for heap space in short tries; Python tries again
        # until alloc_timeout passes (see ALLOC_SLICE_MS).
        alloc_ms = ALLOC_SLICE_MS if alloc_timeout is None else \
            _ms("alloc_timeout", alloc_timeout, True)
        opts.alloc_timeout_ms = min(alloc_ms, ALLOC_SLICE_MS)
        opts.task_timeout_ms = _ms("task_timeout", task_timeout, False)
        opts.shutdown_timeout_ms = _ms("shutdown_timeout", shutdown_timeout, False)
        opts.start_timeout_ms = _ms("start_timeout", start_timeout, False)
        for name, value in (("worker_spin_us", worker_spin_us),
                            ("dispatcher_spin_us", dispatcher_spin_us),
                            ("wait_spin_us", wait_spin_us),
                            ("poll_interval_us", poll_interval_us)):
            if value is not None:
                setattr(opts, name, _uint(name, value, 32))
        ptr = ctypes.c_void_p()
        _check(_lib.lib.dist_worker_create(ctypes.byref(opts), ctypes.byref(ptr)))
        self._init(ptr.value, level, owned=True)
        self._alloc_timeout = alloc_timeout
        self._alloc_retry = True
        _live.add(self)

    def _init(self, ptr, level, owned):
        self._ptr = ptr
        self.level = level
        self.pids = []
        self._inners = []  # workers add_level gave to this one
        self._owned = owned  # False: a level's inner worker, or one an outer level owns
        self._pid = os.getpid()
        self._closing = False
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._keep = []  # callbacks and mailboxes the library may use until shutdown
        self._opened = []  # mailboxes this worker opened itself (closed after shutdown)
        self._pending = []  # (id, weak Task) submitted since the last drain
        self._plock = threading.Lock()  # _pending and the drain counts
        self._draining = 0  # drains in progress
        self._drains = 0  # drains ended
        self._calls = _Calls()  # callables of this worker running on pool threads here
        self._alloc_timeout = None
        self._alloc_retry = False  # a level's worker: the library's own alloc timeout

    @classmethod
    def _borrow(cls, ptr, level):
        w = cls.__new__(cls)
        w._init(ptr, level, owned=False)
        return w

    # ------------------------------------------------------------------ life cycle

    def _own(self):
        """Raises BadState in a copy of the Worker made by fork."""
        if os.getpid() != self._pid:
            raise BadState(
                Status.BAD_STATE,
                f"this Worker belongs to process {self._pid}; it was copied into a child by fork")

    def _handle(self):
        self._own()
        ptr = self._ptr
        if ptr is None or self._closing:
            raise ShutDown(Status.SHUT_DOWN, "the worker was shut down")
        return ptr

    def _in_callables(self):
        """Calls of this worker's (and its inner levels') callables running
        on pool threads of this process."""
        return self._calls.n + sum(inner._in_callables() for inner in self._inners)

    def _heap_call(self, call):
        """Runs ``call(ptr)`` (a dispatch or an alloc) until it gets heap ring
        space or ``alloc_timeout`` passes; raises its failure."""
        start = time.monotonic()
        while True:
            ptr = self._handle()
            status = call(ptr)
            if not status:
                return ptr
            message = _lib.last_error_message()
            if status == Status.RESOURCE_EXHAUSTED and self._alloc_retry \
                    and _HEAP_FULL.search(message):
                # Nothing was submitted or allocated: trying again is safe,
                # and signal handlers (Ctrl-C) run before the next try.
                timeout = self._alloc_timeout
                if timeout is None or time.monotonic() - start < timeout:
                    continue
                message = _HEAP_FULL.sub(
                    f"the heap ring stayed full for {_seconds_text(timeout)} (alloc_timeout)",
                    message)
            raise Error(status, message)

    def start(self):
        """Starts the pool (the first submit does it too): waits for every
        spawned child to be ready. Registration ends here."""
        _check(_lib.lib.dist_worker_start(self._handle()))

    def shutdown(self):
        """Finishes dispatched work (within ``shutdown_timeout``; past it busy
        children are killed and their tasks end with TIMEOUT), stops every
        worker, reaps every spawned child and frees the worker (its heap is
        unmapped: views of its tensors must not be used afterwards). Raises
        the first failure no drain reported yet; when it reports none, every
        task submitted since the last drain succeeded, and their
        :class:`Task` objects say so. A second call does nothing. Waits in
        progress on other threads return their task's outcome, or raise
        :class:`ShutDown` when it is not known."""
        self._own()
        with self._lock:
            # Workers that are not this process's own (a level's inner
            # worker) are shut down by their outer level.
            if self._ptr is None or self._closing or not self._owned:
                return
            self._closing = True
        status = _lib.lib.dist_worker_shutdown(self._ptr)
        message = _lib.last_error_message() if status else ""
        if status == Status.BAD_STATE:
            # From one of its own callables: the library freed nothing.
            self._closing = False
            raise Error(status, message)
        # Pool threads left in a callable past the deadline may still call
        # back into the callbacks (and orchestration functions) of this
        # worker and its inner levels: those must then outlive the worker.
        # The library's message says so, unless an earlier failure (the
        # deadline passing with work unfinished) took its place; the count
        # of calls still running here says so in every case.
        left_running = _LEFT_RUNNING in message or self._in_callables() > 0
        with self._plock:
            pending, self._pending = self._pending, []
        if status == 0:
            # No failure since the last drain: every task since succeeded.
            for _, ref in pending:
                t = ref()
                if t is not None and t._outcome is None and not t._racy:
                    t._outcome = (0, "")
        self._mark_closed()
        _live.discard(self)
        if left_running:
            _leaked.append((self._keep, self._opened, self._inners))
        else:
            for mb in self._opened:
                mb.close()
            for inner in self._inners:
                inner._free()
        self._keep = []
        self._opened = []
        if status:
            raise Error(status, message)

    def _mark_closed(self):
        self._ptr = None
        self._closed.set()
        for inner in self._inners:
            inner._mark_closed()

    def _free(self):
        """Drops the callbacks of an inner level its outer level shut down."""
        self._keep = []
        for mb in self._opened:
            mb.close()
        self._opened = []
        for inner in self._inners:
            inner._free()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.shutdown()
        except Error:
            if exc_type is None:
                raise
        return False

    def __del__(self):
        try:
            # A copy made by fork shuts nothing down (the host's worker is not its own).
            if getattr(self, "_owned", False) and self._ptr is not None \
                    and self._pid == os.getpid() and not sys.is_finalizing():
                self.shutdown()
        except Exception:
            pass

    # ---------------------------------------------------------------- registration

    def spawn(self, fn, type=SUB, init=None):
        """Forks a child that serves ``fn(callable_id, args, config)`` (a
        PROCESS worker of ``type``); returns its pid. ``init()`` runs in the
        child first (None/0 = ready; an int or an exception fails
        :meth:`start` with ChildDied). Before start only.

        The fork is made with the GIL held (no other Python thread runs
        while the process is copied) and the child is set up as os.fork()
        sets one up; in it, SIGINT has its default action. A child leaves
        with ``_exit`` at shutdown (no atexit handlers; stdout and stderr
        are flushed after every task)."""
        ptr = self._handle()
        ty = _worker_type(type)
        tfn = task_fn(fn, flush=True)
        ifn = init_fn(init)
        self._keep += [tfn, ifn]
        return self._fork(_lib.pylib.dist_worker_spawn_with_init, ptr, ty, ifn, tfn)

    def _fork(self, spawn, *args):
        """Calls one of the library's spawn functions (through the PyDLL
        handle: the GIL stays held while it forks) between the
        interpreter's fork preparations, with user NULL and an out pid;
        returns the child's pid."""
        pid = ctypes.c_int32()
        _lib.py_before_fork()
        try:
            status = spawn(*args, None, ctypes.byref(pid))
        finally:
            _lib.py_after_fork_parent()
        _check(status)
        self.pids.append(pid.value)
        return pid.value

    def add_thread(self, fn, type=SUB):
        """Registers a THREAD worker: ``fn(callable_id, args, config)`` runs on
        a library pool thread (holding the GIL while it runs). Before start
        only."""
        ptr = self._handle()
        ty = _worker_type(type)

        me = weakref.ref(self)  # no cycle: an unreferenced worker still shuts down
        calls = self._calls

        def on_pool(callable_id, args, config):
            with calls.running():
                _tls.pool = me()
                try:
                    return fn(callable_id, args, config)
                finally:
                    _tls.pool = None

        tfn = task_fn(on_pool)
        self._keep.append(tfn)
        _check(_lib.lib.dist_worker_add_thread(ptr, ty, tfn, None))

    def add_process(self, mailbox, type=SUB, pid=None):
        """Registers a PROCESS worker served by a child started separately
        through ``mailbox`` (a :class:`Mailbox`, an mmap of 4096 bytes, an
        address, or a mailbox file's path: opened here and closed after
        shutdown); ``pid``, when given, is the child's pid, so its death is
        noticed at once (ChildDied). The caller reaps its child. Before start
        only."""
        ptr = self._handle()
        ty = _worker_type(type)
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)
                                or not 0 < pid < 1 << 31):
            raise InvalidArgument(
                Status.INVALID_ARGUMENT, f"pid={pid!r}: expected a process id (an int > 0)")
        address, opened, keep = _mailbox(mailbox)
        try:
            _check(_lib.lib.dist_worker_add_process(ptr, ty, address))
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        # Registered: the mailbox stays mapped until shutdown, whatever follows.
        self._keep.append(keep)
        if opened is not None:
            self._opened.append(opened)
        if pid is not None:
            _check(_lib.lib.dist_worker_set_process_pid(ptr, address, pid))

    def spawn_level(self, setup, orch, level=None, heap_size=None):
        """PROCESS mode: forks a child that hosts its own level (a NEXT_LEVEL
        worker of this one); returns its pid. In the child, ``setup(inner)``
        registers the inner :class:`Worker`'s workers (it may spawn), and
        each task sent to it runs ``orch(inner, callable_id, args, config)``,
        which submits work to ``inner``; the library then drains ``inner``.
        ``level`` defaults to this level - 1. Before start only."""
        ptr = self._handle()
        opts = _lib.DistWorkerOptions()
        _lib.lib.dist_worker_options_init(ctypes.byref(opts))
        opts.level = _uint("level", self.level - 1 if level is None else level, 32)
        if heap_size is not None:
            opts.heap_ring_size = _uint("heap_size", heap_size, 64)
        inner_level = opts.level
        views = {}

        def view(inner):
            w = views.get(inner)
            if w is None:
                w = views[inner] = Worker._borrow(inner, inner_level)
            return w

        def on_setup(_user, inner):
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                r = setup(view(inner)) if setup is not None else None
                return _code(r, "the level setup")
            except BaseException as e:
                traceback.print_exc()
                try:
                    set_error_message(exception_text(e))
                except BaseException:
                    pass
                return EXCEPTION_ERROR
            finally:
                _flush()

        sfn = _lib.SETUP_FN(on_setup)
        ofn = _orch_fn(orch, view, flush=True)
        self._keep += [sfn, ofn]
        return self._fork(_lib.pylib.dist_worker_spawn_level, ptr, ctypes.byref(opts), sfn, ofn)

    def add_level(self, inner, orch):
        """THREAD mode: ``inner`` (a Worker created, not started, never
        registered elsewhere) becomes a NEXT_LEVEL worker of this one; each
        task sent to it runs ``orch(inner, callable_id, args, config)`` on a
        pool thread, then ``inner`` is drained. This worker owns ``inner``
        from here on and shuts it down with itself."""
        ptr = self._handle()
        if not isinstance(inner, Worker) or not inner._owned:
            raise InvalidArgument(Status.INVALID_ARGUMENT, "inner must be a Worker this process owns")
        inner_ptr = inner._handle()
        ofn = _orch_fn(orch, lambda _p: inner, calls=self._calls)
        _check(_lib.lib.dist_worker_add_level(ptr, inner_ptr, ofn, None))
        self._keep.append(ofn)
        self._inners.append(inner)
        inner._owned = False
        _live.discard(inner)

    # ---------------------------------------------------------------------- work

    def submit(self, type, callable, inputs=(), outputs=(), inouts=(), output_existing=(),
               no_dep=(), scalars=(), tensors=(), config=None, group=None, members=None, on=None):
        """Submits a task of ``type`` (SUB or NEXT_LEVEL) running ``callable``
        (an int id, or an object with ``callable_id``) and returns its
        :class:`Task`.

        Tensors: ``inputs`` (INPUT), ``inouts`` (INOUT), ``outputs`` (OUTPUT:
        a Tensor, or ``(shape, dtype)`` for memory the engine allocates from
        the heap), ``output_existing``, ``no_dep``, then ``tensors`` (explicit
        ``(Tag, tensor)`` pairs); the callable sees them in that order. The
        engine orders tasks by them: an INPUT waits for the last writer of its
        address. ``scalars``: ints. ``config``: a :class:`CallConfig`.

        ``group=N`` runs the task on N workers at once with the same
        arguments; ``members=[Args(...), ...]`` gives each member its own.
        ``on=[i, ...]`` places member k on worker ``on[k]`` of the type
        (registration order within the type).

        OUTPUTs the engine allocates wait up to ``alloc_timeout`` for heap
        space (ResourceExhausted); Ctrl-C interrupts that wait, and nothing
        is submitted then."""
        ptr = self._handle()
        ty = _worker_type(type)
        cid = _callable_id(callable)
        if members is not None:
            if inputs or outputs or inouts or output_existing or no_dep or scalars or tensors:
                raise InvalidArgument(
                    Status.INVALID_ARGUMENT, "give either members=[Args...] or the arguments")
            members = [m if isinstance(m, Args) else Args(**m) for m in members]
            if group is not None and group != len(members):
                raise InvalidArgument(
                    Status.INVALID_ARGUMENT, f"group={group} but {len(members)} members")
            if not members:
                raise InvalidArgument(Status.INVALID_ARGUMENT, "members is empty")
        else:
            one = Args(inputs, outputs, inouts, output_existing, no_dep, scalars, tensors)
            n = 1 if group is None else group
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _U32_MAX:
                raise InvalidArgument(Status.INVALID_ARGUMENT, f"group={group!r}: expected >= 1")
            members = [one] * n
        keep = []
        c_args = (_lib.DistTaskArgs * len(members))()
        for i, m in enumerate(members):
            m._to_c(c_args[i], keep)
        task = _lib.DistTask()
        task.worker_type = ty
        task.callable = cid
        task.config = _config_to_c(config)
        task.args = c_args
        task.group_size = len(members)
        out = ctypes.c_uint64()
        drains = self._drains
        if on is None:
            ptr = self._heap_call(lambda p: _lib.lib.dist_worker_dispatch(
                p, ctypes.byref(task), ctypes.byref(out)))
        else:
            on = [on] if isinstance(on, int) else list(on)
            if len(on) != len(members):
                raise InvalidArgument(
                    Status.INVALID_ARGUMENT, f"on= names {len(on)} workers for {len(members)} members")
            idx = (ctypes.c_uint32 * len(on))(*(_uint("on[]", i, 32) for i in on))
            ptr = self._heap_call(lambda p: _lib.lib.dist_worker_dispatch_on(
                p, ctypes.byref(task), idx, ctypes.byref(out)))
        task_id = out.value
        dispatched = []
        for mi, m in enumerate(members):
            ts = list(m.tensors)
            for ti, (tag, t) in enumerate(zip(m.tags, m.tensors)):
                if t.data == 0 and tag == Tag.OUTPUT:
                    d = _lib.DistTensor()
                    _check(_lib.lib.dist_worker_task_tensor(ptr, task_id, mi, ti, ctypes.byref(d)))
                    ts[ti] = Tensor._from_c(d, self)
            dispatched.append(ts)
        t = Task(self, task_id, dispatched)
        with self._plock:
            self._pending.append((task_id, weakref.ref(t)))
            # A drain under way since the dispatch may release the id unseen.
            t._racy = self._draining > 0 or self._drains != drains
        return t

    def alloc(self, shape, dtype=DType.FLOAT32):
        """A tensor of ``shape`` elements of ``dtype`` from the shared heap
        (64-byte aligned, zero-filled only when fresh), owned by the current
        scope. Waits up to ``alloc_timeout`` for space (ResourceExhausted;
        Ctrl-C interrupts the wait). Its views are refused once this worker
        is shut down (:class:`ShutDown`)."""
        self._handle()
        shape = _shape(shape)
        dims = (ctypes.c_uint32 * max(1, len(shape)))(*shape)
        dtype = int(DType.of(dtype))
        out = _lib.DistTensor()
        self._heap_call(lambda p: _lib.lib.dist_worker_alloc(
            p, dims, len(shape), dtype, ctypes.byref(out)))
        return Tensor._from_c(out, self)

    @contextlib.contextmanager
    def scope(self):
        """``with w.scope():`` tasks and allocations made inside keep their
        heap memory until the scope ends and nothing depends on them (the
        end does not wait for them). Scopes nest up to 64 deep."""
        _check(_lib.lib.dist_worker_scope_begin(self._handle()))
        try:
            yield self
        except BaseException:
            try:
                self._scope_end()
            except Error:
                pass
            raise
        self._scope_end()

    def _scope_end(self):
        _check(_lib.lib.dist_worker_scope_end(self._handle()))

    def drain(self):
        """Waits for every submitted task (Ctrl-C interrupts it) and raises the
        first failure since the last drain. Releases the ids of finished
        tasks; their :class:`Task` objects keep their outcomes.

        A limit of the library: the drain releases the ids of every task
        finished by the time it ends, also of tasks another thread submitted
        after it began, whose outcomes nobody saw; waiting afterwards on
        such a task raises :class:`InvalidArgument` ("unknown id"). Drain
        from the thread that submits, or have the other threads wait on
        their tasks before a drain can end."""
        self._own()
        with self._plock:
            self._draining += 1
            tasks, self._pending = self._pending, []
        try:
            for i, (task_id, ref) in enumerate(tasks):
                try:
                    t = ref()
                    if t is not None:
                        t._settle(None)  # the Task keeps its outcome
                    else:
                        self._wait_id(task_id, None)
                except InvalidArgument:
                    if t is None or t._lost is None:
                        with self._plock:
                            self._pending[:0] = tasks[i:]
                        raise
                    # Released by an earlier drain (which reported its failure, if any).
                except BaseException:
                    with self._plock:
                        self._pending[:0] = tasks[i:]
                    raise
            _check(_lib.lib.dist_worker_drain(self._handle()))
        finally:
            with self._plock:
                self._draining -= 1
                self._drains += 1

    def run(self, orch, *args, **kwargs):
        """Orchestration style: calls ``orch(self, *args, **kwargs)``, which
        submits tasks (SUB and NEXT_LEVEL, groups, scopes, allocations), then
        drains and raises the first failure; returns what ``orch`` returned.
        If ``orch`` raises, its exception wins (after a drain, unless it was
        a KeyboardInterrupt)."""
        self._own()
        try:
            result = orch(self, *args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException:
            try:
                self.drain()
            except Error:
                pass
            raise
        self.drain()
        return result

    def _wait_id(self, task_id, timeout):
        """(status, message) of a task, or (None, message) when ``timeout``
        seconds passed first; in slices of WAIT_SLICE_MS so that signal
        handlers run between them."""
        self._own()
        deadline = None if timeout is None else time.monotonic() + timeout
        on_pool = getattr(_tls, "pool", None) is self
        while True:
            ptr = self._ptr
            if ptr is None:
                raise ShutDown(Status.SHUT_DOWN,
                               f"the worker was shut down before the outcome of task "
                               f"{task_id:#x} was known here")
            if self._closing:
                if on_pool and ptr is not None:
                    # A callable of this worker: its shutdown frees nothing
                    # before the callable returns, so a blocking wait is safe.
                    s = _lib.lib.dist_worker_wait(ptr, task_id)
                    return s, _lib.last_error_message() if s else ""
                self._closed.wait()
                raise ShutDown(Status.SHUT_DOWN,
                               f"the worker was shut down while task {task_id:#x} was waited for")
            if deadline is None:
                slice_ms = WAIT_SLICE_MS
            else:
                left = deadline - time.monotonic()
                slice_ms = 0 if left <= 0 else min(WAIT_SLICE_MS, math.ceil(left * 1000))
            s = _lib.lib.dist_worker_wait_timeout(ptr, task_id, slice_ms)
            if s == 0:
                return 0, ""
            message = _lib.last_error_message()
            # The library tells "not finished yet" from a task that ended
            # with TIMEOUT by its message only.
            if s == Status.TIMEOUT and f"task {task_id:#x} has not finished yet" in message:
                if deadline is not None and time.monotonic() >= deadline:
                    return None, message
                continue
            return s, message

    def __repr__(self):
        state = "shut down" if self._ptr is None else f"{self._ptr:#x}"
        return f"Worker(level={self.level}, {state})"


def _orch_fn(orch, view, flush=False, calls=None):
    """``orch(inner, callable_id, args, config)`` as a C ``DistOrchFn``; its
    return value is checked as a callable's (None/0 = success, an int32 =
    error code, anything else fails saying why). ``calls`` counts the calls
    in progress (on the outer worker's pool threads)."""

    def call(_user, inner, callable_id, args, config):
        with calls.running() if calls is not None else contextlib.nullcontext():
            return run(inner, callable_id, args, config)

    def run(inner, callable_id, args, config):
        w = view(inner)
        try:
            r = orch(w, callable_id, TaskArgs._from_c(args), _config_from_c(config.contents))
            return _code(r, "the orchestration function")
        except BaseException as e:
            # The exception's text joins the outer task's failure message
            # ("the orchestration function returned error -1: ValueError: ...").
            try:
                set_error_message(exception_text(e))
            except BaseException:
                pass
            return EXCEPTION_ERROR
        finally:
            w._pending = []
            if flush:
                _flush()

    return _lib.ORCH_FN(call)


def _check(status):
    if status:
        raise Error(status, _lib.last_error_message())


@atexit.register
def _shutdown_all():
    """At exit, shuts down the workers still alive (before the interpreter
    is finalised, so pool threads can still finish their Python callables)."""
    for w in list(_live):
        if w._pid != os.getpid():
            continue  # a copy made by fork: the worker is its host's
        try:
            w.shutdown()
        except Exception:
            pass
