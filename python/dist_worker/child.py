"""The serving side: Python callables as the library calls them, mailboxes,
and serving a mailbox from a Python child (``serve``)."""

import ctypes
import mmap
import os
import signal
import sys
import threading
import traceback

from . import _lib
from .errors import InvalidArgument, Status, check
from .tensor import TaskArgs, _config_from_c

EXCEPTION_ERROR = -1
"""The error code a callable that raised reports (its text travels with it)."""

_INT32 = (-(1 << 31), 1 << 31)


def set_error_message(text):
    """From inside a callable: a short text (cut to 2048 bytes) that travels
    back with the callable's non-zero return and joins the task's failure
    message. A raised exception sets it by itself."""
    if not isinstance(text, bytes):
        text = str(text).encode("utf-8", "replace")
    text = text.replace(b"\0", b" ")[:2048]
    check(_lib.lib.dist_child_set_error_message(text))


def exception_text(e):
    """``"ValueError: bad shape (kernels.py:12 in fill)"``: the type, the
    text and where it was raised."""
    text = str(e)
    out = f"{type(e).__name__}: {text}" if text else type(e).__name__
    frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
    if frames:
        f = frames[-1]
        out += f" ({os.path.basename(f.filename)}:{f.lineno} in {f.name})"
    return out


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _code(result, what="callable"):
    """The error code of a callable's (or an orchestration function's, or a
    level setup's: ``what``) return value: None/0 = success, an int32 = its
    error code; anything else fails with EXCEPTION_ERROR and a message
    saying why."""
    if result is None:
        return 0
    if isinstance(result, int) and not isinstance(result, bool):
        if _INT32[0] <= result < _INT32[1]:
            return result
        set_error_message(f"{what} returned {result}, which is not an int32 error code")
        return EXCEPTION_ERROR
    text = repr(result)
    if len(text) > 200:
        text = text[:200] + "..."
    set_error_message(
        f"{what} returned {text} ({type(result).__name__}): return None or 0 for "
        "success, an int error code for failure")
    return EXCEPTION_ERROR


def task_fn(fn, flush=False):
    """``fn(callable_id, args, config)`` as a C ``DistTaskFn``: its return
    (None/0 = success, an int = error code) or raised exception (error
    ``EXCEPTION_ERROR`` with ``exception_text``) becomes the code; nothing
    raised crosses into C. ``flush`` flushes stdout and stderr after each
    call (a spawned child leaves with ``_exit``, which flushes nothing)."""

    def call(_user, callable_id, view, config):
        try:
            return _code(fn(callable_id, TaskArgs._from_c(view), _config_from_c(config.contents)))
        except BaseException as e:  # noqa: B902 - nothing may cross into C
            try:
                set_error_message(exception_text(e))
            except BaseException:
                pass
            return EXCEPTION_ERROR
        finally:
            if flush:
                _flush()

    return _lib.TASK_FN(call)


def init_fn(init):
    """The init callback of a spawned child (the library has already run
    ``PyOS_AfterFork_Child`` there, first): SIGINT back to its default (Ctrl-C
    ends a child at once; its host gets KeyboardInterrupt), then the user's
    ``init()`` (None/0 = ready, an int or an exception = failed)."""

    def call(_user):
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if init is None:
                return 0
            r = init()
            if r is None:
                return 0
            if isinstance(r, int) and not isinstance(r, bool) and _INT32[0] <= r < _INT32[1]:
                return r
            print(f"dist_worker: init returned {r!r}, not None or an int code", file=sys.stderr)
            return EXCEPTION_ERROR
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
            return EXCEPTION_ERROR
        finally:
            _flush()

    return _lib.INIT_FN(call)


def _shm_path(path):
    path = os.fspath(path)
    return path if "/" in path else os.path.join("/dev/shm", path)


class Mailbox:
    """A 4096-byte mailbox in a file mapped MAP_SHARED (a file under
    /dev/shm; a bare name means /dev/shm/<name>), for a child started
    separately: the host creates it (:meth:`create`) and registers it with
    :meth:`Worker.add_process`; the child opens it (:meth:`open`) and calls
    :func:`serve` on it. ``address`` is where it is mapped in this process.
    """

    SIZE = _lib.MAILBOX_SIZE

    def __init__(self, path, mm):
        self.path = path
        self.mmap = mm
        self._anchor = ctypes.c_char.from_buffer(mm)
        self.address = ctypes.addressof(self._anchor)

    @classmethod
    def create(cls, path, exist_ok=False):
        """Creates ``path`` as 4096 zero bytes (an IDLE mailbox) and maps it."""
        path = _shm_path(path)
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if exist_ok else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
        try:
            os.ftruncate(fd, cls.SIZE)
            return cls(path, mmap.mmap(fd, cls.SIZE, mmap.MAP_SHARED,
                                       mmap.PROT_READ | mmap.PROT_WRITE))
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path):
        """Maps an existing mailbox file (at least 4096 bytes)."""
        path = _shm_path(path)
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < cls.SIZE:
                raise InvalidArgument(Status.INVALID_ARGUMENT,
                                      f"{path} is smaller than {cls.SIZE} bytes")
            return cls(path, mmap.mmap(fd, cls.SIZE, mmap.MAP_SHARED,
                                       mmap.PROT_READ | mmap.PROT_WRITE))
        finally:
            os.close(fd)

    @property
    def state(self):
        """The state word (0 IDLE, 1 TASK_READY, 2 TASK_DONE, 3 SHUTDOWN...)."""
        return int.from_bytes(self.mmap[0:4], "little", signed=True)

    def close(self):
        """Unmaps it (only once no worker uses it: after its shutdown)."""
        if self.mmap is not None:
            self._anchor = None
            self.mmap.close()
            self.mmap = None
            self.address = 0

    def unlink(self):
        """Removes the file (mappings stay valid)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Mailbox({self.path!r}, address={self.address:#x})"


def _mailbox(mailbox):
    """(address, Mailbox we opened or None, object to keep alive)."""
    if isinstance(mailbox, Mailbox):
        if not mailbox.address:
            raise InvalidArgument(Status.INVALID_ARGUMENT, f"{mailbox} is closed")
        return mailbox.address, None, mailbox
    if isinstance(mailbox, mmap.mmap):
        anchor = ctypes.c_char.from_buffer(mailbox)
        return ctypes.addressof(anchor), None, (mailbox, anchor)
    if isinstance(mailbox, int) and not isinstance(mailbox, bool):
        return mailbox, None, None
    if isinstance(mailbox, (str, bytes, os.PathLike)):
        mb = Mailbox.open(os.fsdecode(mailbox))
        return mb.address, mb, mb
    raise InvalidArgument(
        Status.INVALID_ARGUMENT,
        f"mailbox {mailbox!r}: expected a Mailbox, an mmap, an address or a path")


def serve(mailbox, handler):
    """Serves ``mailbox`` with ``handler(callable_id, args, config)`` until
    the host writes SHUTDOWN (then returns None), through the library's loop
    (``dist_child_serve``: it sleeps on the mailbox futex when idle and rings
    the host when a task is done). ``mailbox`` is a :class:`Mailbox`, an mmap
    of 4096 bytes, an address, or the path of a mailbox file.

    ``handler`` returns None/0 for success or an int error code; an
    exception it raises travels back as error ``EXCEPTION_ERROR`` with its
    text. Called on the main thread, SIGINT keeps its default action while
    serving (Ctrl-C ends the process; the loop cannot be interrupted from
    Python). Raises :class:`Error` (PROTOCOL) if the mailbox holds a state
    no host writes. It raises :class:`ShutDown` within 500 ms of the death
    of the process that started this one (its parent when ``serve`` is
    called), so an orphan never serves on; a child whose parent is not the
    host does not notice the host's death (the host's ``add_process(...,
    pid=...)`` only makes the host notice the child's).
    """
    address, opened, keep = _mailbox(mailbox)
    fn = task_fn(handler, flush=True)
    old = None
    main = threading.current_thread() is threading.main_thread()
    if main:
        old = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        check(_lib.lib.dist_child_serve(address, fn, None))
    finally:
        if main:
            signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)
        if opened is not None:
            opened.close()
        del keep
