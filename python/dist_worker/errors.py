"""Statuses of the C library and the exceptions that carry them."""

import enum

from . import _lib


class Status(enum.IntEnum):
    """``DistStatus`` of dist_worker.h: what a call of the library returned."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_ARGUMENT = 2
    BAD_STATE = 3
    ARGS_TOO_LARGE = 4
    TASK_FAILED = 5
    CHILD_DIED = 6
    TIMEOUT = 7
    SHUT_DOWN = 8
    DEPENDENCY_FAILED = 9
    NO_WORKER = 10
    RESOURCE_EXHAUSTED = 11
    OS = 12
    PANIC = 13
    PROTOCOL = 14


class Error(Exception):
    """Every failure of dist_worker: ``status`` (a :class:`Status`) and
    ``message`` (the library's text, ``dist_last_error_message()``).

    ``Error(status, message)`` builds the subclass of that status.
    """

    status = None

    def __new__(cls, status=None, message=""):
        if cls is Error and status is not None:
            cls = _BY_STATUS.get(int(status), Error)
        return super().__new__(cls, status, message)

    def __init__(self, status=None, message=""):
        if status is None:
            status = type(self).status
        try:
            status = Status(status)
        except ValueError:
            pass
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self):
        name = self.status.name if isinstance(self.status, Status) else f"status {self.status}"
        return f"{name}: {self.message}" if self.message else name

    def __reduce__(self):
        return (Error, (int(self.status) if self.status is not None else None, self.message))


class NullArgument(Error):
    """DIST_ERR_NULL_ARGUMENT: a required pointer was NULL."""

    status = Status.NULL_ARGUMENT


class InvalidArgument(Error, ValueError):
    """DIST_ERR_INVALID_ARGUMENT: a value is out of range (also raised by the
    package's own argument checks); a ValueError too."""

    status = Status.INVALID_ARGUMENT


class BadState(Error):
    """DIST_ERR_BAD_STATE: the call is not allowed now (registration after
    start, a scope end without a begin, a wait that could never end...)."""

    status = Status.BAD_STATE


class ArgsTooLarge(Error):
    """DIST_ERR_ARGS_TOO_LARGE: the arguments do not fit the workers that may
    run the task."""

    status = Status.ARGS_TOO_LARGE


class TaskFailed(Error):
    """DIST_ERR_TASK_FAILED: the callable returned non-zero or raised; the
    message names worker, callable, code and the callable's text."""

    status = Status.TASK_FAILED


class ChildDied(Error):
    """DIST_ERR_CHILD_DIED: the process running the task died (or a spawned
    child's init failed)."""

    status = Status.CHILD_DIED


class Timeout(Error):
    """DIST_ERR_TIMEOUT: a deadline passed (task_timeout, start_timeout,
    shutdown_timeout)."""

    status = Status.TIMEOUT


class WaitTimeout(Timeout):
    """A wait given a timeout ended before its task did; the task runs on
    and can be waited for again."""

    status = Status.TIMEOUT


class ShutDown(Error):
    """DIST_ERR_SHUT_DOWN: the worker is shutting down (or its start failed)."""

    status = Status.SHUT_DOWN


class DependencyFailed(Error):
    """DIST_ERR_DEPENDENCY_FAILED: a task this one depends on failed, so this
    one never ran."""

    status = Status.DEPENDENCY_FAILED


class NoWorker(Error):
    """DIST_ERR_NO_WORKER: no live worker of the task's type is left."""

    status = Status.NO_WORKER


class ResourceExhausted(Error):
    """DIST_ERR_RESOURCE_EXHAUSTED: the heap ring stayed full past
    alloc_timeout (or the request can never fit)."""

    status = Status.RESOURCE_EXHAUSTED


class OSFailure(Error):
    """DIST_ERR_OS: a system call failed; the message has the errno text."""

    status = Status.OS


class Panic(Error):
    """DIST_ERR_PANIC: an internal panic of the library was caught."""

    status = Status.PANIC


class ProtocolError(Error):
    """DIST_ERR_PROTOCOL: a mailbox held a state the protocol does not allow."""

    status = Status.PROTOCOL


_BY_STATUS = {
    int(c.status): c
    for c in (
        NullArgument, InvalidArgument, BadState, ArgsTooLarge, TaskFailed, ChildDied,
        Timeout, ShutDown, DependencyFailed, NoWorker, ResourceExhausted, OSFailure,
        Panic, ProtocolError,
    )
}


for _cls in [Status, Error, WaitTimeout, *_BY_STATUS.values()]:
    _cls.__module__ = "dist_worker"


def check(status):
    """Raises the :class:`Error` of a non-zero status with this thread's
    library message."""
    if status != 0:
        raise Error(status, _lib.last_error_message())


def status_name(status):
    """The library's name of a status ("DIST_ERR_TIMEOUT", ...)."""
    return _lib.lib.dist_status_str(int(status)).decode()
