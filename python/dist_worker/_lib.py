"""Finding and loading libdist_worker, and the prototypes of its C API.

Search order:

1. ``DIST_WORKER_LIBRARY``, a path to the shared library;
2. the library of the CMake install this package belongs to: the install
   puts the package at ``<prefix>/share/dist_worker/python/dist_worker`` and
   the library at ``<prefix>/lib/libdist_worker.so.0`` (``_install.py``,
   written by the install, holds the exact relative path when the
   libraries directory is not ``lib``);
3. ``libdist_worker.so.0`` from the loader path (``LD_LIBRARY_PATH``, the
   ld.so cache), then ``ctypes.util.find_library("dist_worker")``.

Two handles of the same library are kept: ``lib`` (``ctypes.CDLL``: the GIL
is released during each call, so pool threads can run Python callables
while the host waits) and ``pylib`` (``ctypes.PyDLL``: the GIL stays held,
used for the calls that fork, so no other Python thread runs while the
process is copied).
"""

import ctypes
import ctypes.util
import os

from ._version import __version__ as _expected_version

SONAME = "libdist_worker.so.0"
MAILBOX_SIZE = 4096
MAX_DIMS = 5
MAX_SCOPE_DEPTH = 64


class DistWorkerOptions(ctypes.Structure):
    """``DistWorkerOptions`` of dist_worker.h."""

    _fields_ = [
        ("level", ctypes.c_uint32),
        ("heap_ring_size", ctypes.c_uint64),
        ("alloc_timeout_ms", ctypes.c_uint32),
        ("task_timeout_ms", ctypes.c_uint32),
        ("shutdown_timeout_ms", ctypes.c_uint32),
        ("worker_spin_us", ctypes.c_uint32),
        ("dispatcher_spin_us", ctypes.c_uint32),
        ("wait_spin_us", ctypes.c_uint32),
        ("poll_interval_us", ctypes.c_uint32),
        ("start_timeout_ms", ctypes.c_uint32),
    ]


class DistCallConfig(ctypes.Structure):
    """``DistCallConfig`` of dist_worker.h."""

    _fields_ = [
        ("block_dim", ctypes.c_int32),
        ("aicpu_thread_num", ctypes.c_int32),
        ("enable_profiling", ctypes.c_bool),
        ("enable_dump_tensor", ctypes.c_bool),
    ]


class DistTensor(ctypes.Structure):
    """``DistTensor`` of dist_worker.h (40 bytes, the wire layout)."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("shapes", ctypes.c_uint32 * MAX_DIMS),
        ("ndims", ctypes.c_uint32),
        ("dtype", ctypes.c_uint8),
    ]


class DistTaskView(ctypes.Structure):
    """``DistTaskView`` of dist_worker.h: what a callable receives."""

    _fields_ = [
        ("tensor_count", ctypes.c_int32),
        ("scalar_count", ctypes.c_int32),
        ("tensors", ctypes.POINTER(DistTensor)),
        ("scalars", ctypes.POINTER(ctypes.c_uint64)),
    ]


class DistTaskArgs(ctypes.Structure):
    """``DistTaskArgs`` of dist_worker.h: one member's arguments."""

    _fields_ = [
        ("tensors", ctypes.POINTER(DistTensor)),
        ("tags", ctypes.POINTER(ctypes.c_int32)),
        ("tensor_count", ctypes.c_uint32),
        ("scalars", ctypes.POINTER(ctypes.c_uint64)),
        ("scalar_count", ctypes.c_uint32),
    ]


class DistTask(ctypes.Structure):
    """``DistTask`` of dist_worker.h."""

    _fields_ = [
        ("worker_type", ctypes.c_int32),
        ("callable", ctypes.c_uint64),
        ("config", DistCallConfig),
        ("args", ctypes.POINTER(DistTaskArgs)),
        ("group_size", ctypes.c_uint32),
    ]


TASK_FN = ctypes.CFUNCTYPE(
    ctypes.c_int32,
    ctypes.c_void_p,
    ctypes.c_uint64,
    ctypes.POINTER(DistTaskView),
    ctypes.POINTER(DistCallConfig),
)
INIT_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)
ORCH_FN = ctypes.CFUNCTYPE(
    ctypes.c_int32,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_uint64,
    ctypes.POINTER(DistTaskView),
    ctypes.POINTER(DistCallConfig),
)
SETUP_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)

_P = ctypes.c_void_p
_S = ctypes.c_int32  # DistStatus
_PROTOTYPES = {
    "dist_worker_options_init": (None, [ctypes.POINTER(DistWorkerOptions)]),
    "dist_call_config_init": (None, [ctypes.POINTER(DistCallConfig)]),
    "dist_worker_version": (ctypes.c_char_p, []),
    "dist_worker_create": (_S, [ctypes.POINTER(DistWorkerOptions), ctypes.POINTER(_P)]),
    "dist_worker_start": (_S, [_P]),
    "dist_worker_shutdown": (_S, [_P]),
    "dist_worker_add_process": (_S, [_P, ctypes.c_int32, _P]),
    "dist_worker_set_process_pid": (_S, [_P, _P, ctypes.c_int32]),
    "dist_worker_set_child_start": (_S, [ctypes.c_void_p]),
    "dist_worker_add_thread": (_S, [_P, ctypes.c_int32, TASK_FN, _P]),
    "dist_worker_spawn": (_S, [_P, ctypes.c_int32, TASK_FN, _P, ctypes.POINTER(ctypes.c_int32)]),
    "dist_worker_spawn_with_init": (
        _S,
        [_P, ctypes.c_int32, INIT_FN, TASK_FN, _P, ctypes.POINTER(ctypes.c_int32)],
    ),
    "dist_worker_add_level": (_S, [_P, _P, ORCH_FN, _P]),
    "dist_worker_spawn_level": (
        _S,
        [_P, ctypes.POINTER(DistWorkerOptions), SETUP_FN, ORCH_FN, _P,
         ctypes.POINTER(ctypes.c_int32)],
    ),
    "dist_worker_dispatch": (_S, [_P, ctypes.POINTER(DistTask), ctypes.POINTER(ctypes.c_uint64)]),
    "dist_worker_dispatch_on": (
        _S,
        [_P, ctypes.POINTER(DistTask), ctypes.POINTER(ctypes.c_uint32),
         ctypes.POINTER(ctypes.c_uint64)],
    ),
    "dist_worker_wait": (_S, [_P, ctypes.c_uint64]),
    "dist_worker_wait_timeout": (_S, [_P, ctypes.c_uint64, ctypes.c_uint32]),
    "dist_worker_drain": (_S, [_P]),
    "dist_worker_scope_begin": (_S, [_P]),
    "dist_worker_scope_end": (_S, [_P]),
    "dist_worker_alloc": (
        _S,
        [_P, ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint32, ctypes.c_uint8,
         ctypes.POINTER(DistTensor)],
    ),
    "dist_worker_task_tensor": (
        _S,
        [_P, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(DistTensor)],
    ),
    "dist_child_serve": (_S, [_P, TASK_FN, _P]),
    "dist_child_set_error_message": (_S, [ctypes.c_char_p]),
    "dist_last_error_message": (ctypes.c_char_p, []),
    "dist_status_str": (ctypes.c_char_p, [_S]),
}


def _candidates():
    """(how it was found, what to dlopen) pairs, in search order."""
    env = os.environ.get("DIST_WORKER_LIBRARY")
    if env:
        return [("DIST_WORKER_LIBRARY", env)]
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    try:
        from . import _install  # written by the CMake install only

        found.append(("the CMake install", os.path.normpath(os.path.join(here, _install.LIBRARY))))
    except ImportError:
        # Laid out as the CMake install lays it out, without _install.py.
        if here.replace(os.sep, "/").endswith("/share/dist_worker/python/dist_worker"):
            found.append(("the CMake install",
                          os.path.normpath(os.path.join(here, "..", "..", "..", "..", "lib", SONAME))))
    found.append(("the loader path", SONAME))
    by_name = ctypes.util.find_library("dist_worker")
    if by_name:
        found.append(("ctypes.util.find_library", by_name))
    return found


def _load():
    """Loads the first library found; raises ImportError naming every try."""
    tried = []
    for how, path in _candidates():
        if how == "the CMake install" and not os.path.exists(path):
            tried.append(f"{path} ({how}): no such file")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            if how == "DIST_WORKER_LIBRARY":
                raise ImportError(
                    f"dist_worker: cannot load DIST_WORKER_LIBRARY={path!r}: {e}"
                ) from None
            tried.append(f"{path} ({how}): {e}")
            continue
        return lib, path
    raise ImportError(
        "dist_worker: libdist_worker not found; set DIST_WORKER_LIBRARY to its path. Tried: "
        + "; ".join(tried)
    )


def _loaded_path(lib, fallback):
    """The file the loader actually mapped for `lib` (from /proc/self/maps)."""
    try:
        addr = ctypes.cast(lib.dist_worker_version, ctypes.c_void_p).value
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo <= addr < hi and len(parts) == 6:
                    return parts[5].strip()
    except (OSError, ValueError, AttributeError):
        pass
    return fallback


def _declare(handle):
    for name, (restype, argtypes) in _PROTOTYPES.items():
        f = getattr(handle, name)
        f.restype = restype
        f.argtypes = argtypes


lib, _requested = _load()
if not hasattr(lib, "dist_worker_version"):
    raise ImportError(
        f"dist_worker: {_requested} is not libdist_worker (it has no dist_worker_version)"
    )
path = _loaded_path(lib, _requested)
# The version first: a library of another version may lack functions.
lib.dist_worker_version.restype = ctypes.c_char_p
lib.dist_worker_version.argtypes = []
version = lib.dist_worker_version().decode()
if version != _expected_version:
    raise ImportError(
        f"dist_worker: this package is version {_expected_version} but the library loaded "
        f"from {path} is version {version}; install matching versions or point "
        f"DIST_WORKER_LIBRARY at a libdist_worker {_expected_version}"
    )
_declare(lib)
# The same library again (dlopen returns the same handle): calls through it
# keep the GIL held. Used for the calls that fork.
pylib = ctypes.PyDLL(path)
_declare(pylib)

# PyOS_BeforeFork / PyOS_AfterFork_Parent / PyOS_AfterFork_Child: what
# os.fork() does around fork(), done around the library's fork.
py_before_fork = ctypes.pythonapi.PyOS_BeforeFork
py_before_fork.restype = None
py_before_fork.argtypes = []
py_after_fork_parent = ctypes.pythonapi.PyOS_AfterFork_Parent
py_after_fork_parent.restype = None
py_after_fork_parent.argtypes = []
# The child's part: the library calls it first in every child it forks,
# before any Python code runs there (Python code run before it could wait
# for the GIL on behalf of a thread that was not copied).
_after_fork_child = ctypes.cast(ctypes.pythonapi.PyOS_AfterFork_Child, ctypes.c_void_p)
if lib.dist_worker_set_child_start(_after_fork_child) != 0:
    raise ImportError(f"{path}: dist_worker_set_child_start failed")

memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
memory_view.restype = ctypes.py_object
memory_view.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
PYBUF_READ = 0x100
PYBUF_WRITE = 0x200


def last_error_message():
    """The library's message of the last failure on this thread."""
    m = lib.dist_last_error_message()
    return m.decode("utf-8", "replace") if m else ""
