"""dist_worker: Python bindings (ctypes) of libdist_worker, a hierarchical
task-dispatch runtime.

A host creates a :class:`Worker`, registers workers of two types (SUB helper
functions, NEXT_LEVEL chips or levels) as forked Python children
(:meth:`Worker.spawn`), library pool threads (:meth:`Worker.add_thread`) or
separately started children (:meth:`Worker.add_process` with
:func:`serve` in the child), then submits tasks that the engine orders by
the tensors they touch::

    import dist_worker as dw

    def helper(callable_id, args, config):      # runs in a forked child
        out = args.tensors[0].memoryview()
        for i in range(len(out)):
            out[i] = float(args.scalars[0])     # return None: success

    with dw.Worker() as w:
        w.spawn(helper)
        t = w.submit(dw.SUB, 1, outputs=[((4,), dw.FLOAT32)], scalars=[7])
        t.wait()
        print(t.tensor(0).memoryview().tolist())  # [7.0, 7.0, 7.0, 7.0]

Every failure is an :class:`Error` with ``status`` and ``message``.
"""

from . import _lib
from ._version import __version__
from .child import EXCEPTION_ERROR, Mailbox, exception_text, serve, set_error_message
from .errors import (
    ArgsTooLarge, BadState, ChildDied, DependencyFailed, Error, InvalidArgument, NoWorker,
    NullArgument, OSFailure, Panic, ProtocolError, ResourceExhausted, ShutDown, Status,
    TaskFailed, Timeout, WaitTimeout, status_name,
)
from .tensor import (
    BFLOAT16, FLOAT16, FLOAT32, INT8, INT16, INT32, INT64, NEXT_LEVEL, SUB, UINT8, UINT64, Args,
    CallConfig, DType, Tag, TaskArgs, Tensor, WorkerType, empty,
)
from .worker import ALLOC_SLICE_MS, WAIT_SLICE_MS, Task, Worker

library_path = _lib.path
"""The path of the libdist_worker that was loaded."""

library_version = _lib.version
"""``dist_worker_version()`` of the loaded library (equals ``__version__``)."""

MAILBOX_SIZE = _lib.MAILBOX_SIZE
"""Bytes of one mailbox (4096)."""

__all__ = [
    "__version__", "library_path", "library_version", "MAILBOX_SIZE", "WAIT_SLICE_MS",
    "ALLOC_SLICE_MS",
    "Worker", "Task", "Tensor", "Args", "TaskArgs", "CallConfig", "empty",
    "WorkerType", "SUB", "NEXT_LEVEL", "Tag", "DType",
    "FLOAT32", "FLOAT16", "INT32", "INT16", "INT8", "UINT8", "BFLOAT16", "INT64", "UINT64",
    "serve", "Mailbox", "set_error_message", "exception_text", "EXCEPTION_ERROR",
    "Status", "status_name", "Error", "NullArgument", "InvalidArgument", "BadState",
    "ArgsTooLarge", "TaskFailed", "ChildDied", "Timeout", "WaitTimeout", "ShutDown",
    "DependencyFailed", "NoWorker", "ResourceExhausted", "OSFailure", "Panic", "ProtocolError",
]
