"""Tensors, data types, tags, call configs and the arguments a callable gets."""

import ctypes
import enum
import weakref
from collections import namedtuple

from . import _lib
from .errors import InvalidArgument, ShutDown, Status


class WorkerType(enum.IntEnum):
    """``DistWorkerType``: which pool runs a task."""

    NEXT_LEVEL = 0
    """The level below: a chip, or a whole lower level."""
    SUB = 1
    """A helper function."""


NEXT_LEVEL = WorkerType.NEXT_LEVEL
SUB = WorkerType.SUB


class Tag(enum.IntEnum):
    """``DistTensorArgType``: how a task uses a tensor (consumed at submit)."""

    INPUT = 0
    """Read: waits for the last writer of the address."""
    OUTPUT = 1
    """Written: becomes the last writer; with data 0 the engine allocates it."""
    INOUT = 2
    """Read and written: waits for the last writer, then becomes it."""
    OUTPUT_EXISTING = 3
    """Written into existing memory: becomes the last writer."""
    NO_DEP = 4
    """Passed through; no part in dependency tracking."""


class DType(enum.IntEnum):
    """``DistDataType``: element type of a tensor."""

    FLOAT32 = 0
    FLOAT16 = 1
    INT32 = 2
    INT16 = 3
    INT8 = 4
    UINT8 = 5
    BFLOAT16 = 6
    INT64 = 7
    UINT64 = 8

    @property
    def itemsize(self):
        """Bytes per element."""
        return _ITEMSIZE[self]

    @property
    def format(self):
        """The struct/memoryview format of an element (bfloat16: its raw
        16 bits, "H")."""
        return _FORMAT[self]

    @classmethod
    def of(cls, value):
        """A DType from a DType, its int value, a name ("float32", "f32",
        "bf16"...) or a numpy dtype."""
        if isinstance(value, DType):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise InvalidArgument(Status.INVALID_ARGUMENT, f"no dtype has the value {value}") from None
        name = getattr(value, "name", None)  # numpy dtypes and scalar types
        if name is None and isinstance(value, type):
            name = value.__name__
        if name is None:
            name = str(value)
        key = str(name).lower()
        if key in _NAMES:
            return _NAMES[key]
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"unknown dtype {value!r}")


_ITEMSIZE = {
    DType.FLOAT32: 4, DType.FLOAT16: 2, DType.INT32: 4, DType.INT16: 2, DType.INT8: 1,
    DType.UINT8: 1, DType.BFLOAT16: 2, DType.INT64: 8, DType.UINT64: 8,
}
_FORMAT = {
    DType.FLOAT32: "f", DType.FLOAT16: "e", DType.INT32: "i", DType.INT16: "h", DType.INT8: "b",
    DType.UINT8: "B", DType.BFLOAT16: "H", DType.INT64: "q", DType.UINT64: "Q",
}
_NUMPY = {
    DType.FLOAT32: "float32", DType.FLOAT16: "float16", DType.INT32: "int32",
    DType.INT16: "int16", DType.INT8: "int8", DType.UINT8: "uint8", DType.BFLOAT16: "uint16",
    DType.INT64: "int64", DType.UINT64: "uint64",
}
_NAMES = {d.name.lower(): d for d in DType}
_NAMES.update({
    "f32": DType.FLOAT32, "f16": DType.FLOAT16, "half": DType.FLOAT16, "bf16": DType.BFLOAT16,
    "i32": DType.INT32, "i16": DType.INT16, "i8": DType.INT8, "u8": DType.UINT8,
    "i64": DType.INT64, "u64": DType.UINT64,
})

FLOAT32, FLOAT16, INT32, INT16, INT8, UINT8, BFLOAT16, INT64, UINT64 = tuple(DType)


def _shape(shape):
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(shape)
    if len(shape) > _lib.MAX_DIMS:
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"shape {shape} has more than {_lib.MAX_DIMS} dimensions")
    for n in shape:
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 1 << 32:
            raise InvalidArgument(
                Status.INVALID_ARGUMENT, f"shape {shape}: {n!r} is not a uint32 element count")
    return shape


class Tensor:
    """A tensor descriptor: ``data`` (an address, 0 = none), ``shape`` (a
    tuple of up to 5 element counts; () is a 0-d tensor of one element) and
    ``dtype`` (a :class:`DType`).

    Memory from :meth:`Worker.alloc` or from an OUTPUT the engine allocated
    lies in the worker's shared heap, which children spawned by that worker
    see at the same address; :meth:`memoryview` and :meth:`numpy` view it.
    Such memory lives until its scope ends and no task needs it any more (for
    the root scope: the next drain), and never past the worker's shutdown:
    a tensor from :meth:`Worker.alloc` or :meth:`Task.tensor` remembers its
    worker, and :meth:`memoryview` / :meth:`numpy` raise :class:`ShutDown`
    once that worker is shut down.
    """

    __slots__ = ("data", "shape", "dtype", "_worker")

    def __init__(self, data, shape, dtype=DType.FLOAT32):
        if not isinstance(data, int) or not 0 <= data < 1 << 64:
            raise InvalidArgument(Status.INVALID_ARGUMENT, f"tensor data {data!r} is not an address")
        self.data = data
        self.shape = _shape(shape)
        self.dtype = DType.of(dtype)
        self._worker = None

    @classmethod
    def _from_c(cls, t, worker=None):
        """From a DistTensor; ``worker``: the Worker whose heap holds it (its
        views are refused once that worker is shut down)."""
        self = cls.__new__(cls)
        self.data = t.data
        self.shape = tuple(t.shapes[: min(t.ndims, _lib.MAX_DIMS)])
        try:
            self.dtype = DType(t.dtype)
        except ValueError:
            self.dtype = t.dtype
        self._worker = None if worker is None else weakref.ref(worker)
        return self

    def __reduce__(self):
        # Pickled, it describes the same addresses without the link to the
        # worker (a weak reference does not pickle; another process has
        # another worker).
        return (_rebuild, (self.data, self.shape, int(self.dtype)))

    def __copy__(self):
        t = _rebuild(self.data, self.shape, int(self.dtype))
        t._worker = self._worker
        return t

    def __deepcopy__(self, memo):
        return self.__copy__()

    def _mapped(self):
        """Raises ShutDown when the worker whose heap held the tensor is shut
        down (its heap is unmapped: a view would crash the process)."""
        ref = self._worker
        if ref is not None:
            w = ref()
            if w is None or w._ptr is None:
                raise ShutDown(
                    Status.SHUT_DOWN,
                    f"tensor at {self.data:#x}: its Worker was shut down, so its heap memory "
                    "is gone (unmapped)")

    def _to_c(self, out):
        out.data = self.data
        for i, n in enumerate(self.shape):
            out.shapes[i] = n
        out.ndims = len(self.shape)
        out.dtype = int(self.dtype)

    @property
    def size(self):
        """Number of elements (1 for a 0-d tensor)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self):
        """Bytes of the tensor's elements."""
        return self.size * DType(self.dtype).itemsize

    def memoryview(self, readonly=False, flat=False):
        """A memoryview of the elements (format ``dtype.format``; the
        tensor's shape, or one dimension with ``flat``), over the memory at
        ``data`` in this process.

        Only for memory mapped here: the shared heap of the worker (in its
        host, and in the children it spawned), or memory the caller owns.
        Raises :class:`ShutDown` once the tensor's worker is shut down; a
        view taken before the shutdown must not be used after it (its memory
        is gone, and touching it crashes the process).
        """
        if not self.data:
            raise InvalidArgument(Status.INVALID_ARGUMENT, "tensor has no data (address 0)")
        self._mapped()
        dtype = DType(self.dtype)
        flags = _lib.PYBUF_READ if readonly else _lib.PYBUF_WRITE
        raw = _lib.memory_view(self.data, self.nbytes, flags)
        if flat or len(self.shape) <= 1 or 0 in self.shape:
            return raw.cast(dtype.format)
        return raw.cast(dtype.format, self.shape)

    def numpy(self):
        """A numpy array over the elements (no copy); bfloat16 as uint16.
        Needs numpy; the same memory rules as :meth:`memoryview`: raises
        :class:`ShutDown` once the tensor's worker is shut down, and an
        array taken before the shutdown must not be used after it (its
        memory is gone, and touching it crashes the process)."""
        import numpy

        if not self.data:
            raise InvalidArgument(Status.INVALID_ARGUMENT, "tensor has no data (address 0)")
        self._mapped()
        raw = _lib.memory_view(self.data, self.nbytes, _lib.PYBUF_WRITE)
        return numpy.frombuffer(raw, dtype=_NUMPY[DType(self.dtype)]).reshape(self.shape)

    def __eq__(self, other):
        if not isinstance(other, Tensor):
            return NotImplemented
        return (self.data, self.shape, int(self.dtype)) == (other.data, other.shape, int(other.dtype))

    def __hash__(self):
        return hash((self.data, self.shape, int(self.dtype)))

    def __repr__(self):
        name = self.dtype.name.lower() if isinstance(self.dtype, DType) else self.dtype
        return f"Tensor(data={self.data:#x}, shape={self.shape}, dtype={name})"


def _rebuild(data, shape, dtype):
    t = Tensor.__new__(Tensor)
    t.data, t.shape, t._worker = data, tuple(shape), None
    try:
        t.dtype = DType(dtype)
    except ValueError:
        t.dtype = dtype
    return t


def empty(shape, dtype=DType.FLOAT32):
    """An OUTPUT with no memory yet: the engine allocates it from the heap at
    submit (``Task.tensor(i)`` gives its address)."""
    return Tensor(0, shape, dtype)


CallConfig = namedtuple(
    "CallConfig",
    ["block_dim", "aicpu_thread_num", "enable_profiling", "enable_dump_tensor"],
    defaults=[24, 3, False, False],
)
CallConfig.__doc__ = """Launch configuration sent with every task (``DistCallConfig``):
block_dim (24), aicpu_thread_num (3), enable_profiling and enable_dump_tensor (False)."""


def _config_to_c(config):
    c = _lib.DistCallConfig()
    _lib.lib.dist_call_config_init(ctypes.byref(c))
    if config is not None:
        if not isinstance(config, CallConfig):
            config = CallConfig(**config) if isinstance(config, dict) else CallConfig(*config)
        for name in ("block_dim", "aicpu_thread_num"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not -(1 << 31) <= value < 1 << 31:
                raise InvalidArgument(
                    Status.INVALID_ARGUMENT, f"config {name}={value!r}: expected an int32")
        c.block_dim = config.block_dim
        c.aicpu_thread_num = config.aicpu_thread_num
        c.enable_profiling = bool(config.enable_profiling)
        c.enable_dump_tensor = bool(config.enable_dump_tensor)
    return c


def _config_from_c(c):
    return CallConfig(c.block_dim, c.aicpu_thread_num, bool(c.enable_profiling),
                      bool(c.enable_dump_tensor))


class TaskArgs:
    """What a callable gets as ``args``: ``tensors`` (a list of
    :class:`Tensor`, in submit order) and ``scalars`` (a list of ints, each
    the 64 unsigned bits that were sent)."""

    __slots__ = ("tensors", "scalars")

    def __init__(self, tensors, scalars):
        self.tensors = tensors
        self.scalars = scalars

    @classmethod
    def _from_c(cls, view):
        v = view.contents
        tensors = [Tensor._from_c(v.tensors[i]) for i in range(v.tensor_count)]
        scalars = v.scalars[: v.scalar_count] if v.scalar_count else []
        return cls(tensors, scalars)

    def __repr__(self):
        return f"TaskArgs(tensors={self.tensors}, scalars={self.scalars})"


class Args:
    """The arguments of one task, or of one member of a group, as submitted:
    ``inputs``, ``inouts``, ``outputs`` (tensors, or ``(shape, dtype)`` for an
    OUTPUT the engine allocates), ``output_existing``, ``no_dep``, then
    ``tensors`` (explicit ``(Tag, tensor)`` pairs), in that order; and
    ``scalars`` (ints; negative ones are sent as their 64-bit two's
    complement)."""

    __slots__ = ("tensors", "tags", "scalars")

    def __init__(self, inputs=(), outputs=(), inouts=(), output_existing=(), no_dep=(),
                 scalars=(), tensors=()):
        pairs = []
        pairs += [(Tag.INPUT, t) for t in inputs]
        pairs += [(Tag.INOUT, t) for t in inouts]
        pairs += [(Tag.OUTPUT, t) for t in outputs]
        pairs += [(Tag.OUTPUT_EXISTING, t) for t in output_existing]
        pairs += [(Tag.NO_DEP, t) for t in no_dep]
        pairs += [(Tag(tag), t) for tag, t in tensors]
        self.tensors = [_as_tensor(t, tag) for tag, t in pairs]
        self.tags = [tag for tag, _ in pairs]
        self.scalars = [_scalar(s) for s in scalars]

    def _to_c(self, out, keep):
        n = len(self.tensors)
        if n:
            ts = (_lib.DistTensor * n)()
            for i, t in enumerate(self.tensors):
                t._to_c(ts[i])
            tags = (ctypes.c_int32 * n)(*self.tags)
            keep += [ts, tags]
            out.tensors = ts
            out.tags = tags
        out.tensor_count = n
        if self.scalars:
            ss = (ctypes.c_uint64 * len(self.scalars))(*self.scalars)
            keep.append(ss)
            out.scalars = ss
        out.scalar_count = len(self.scalars)


def _as_tensor(t, tag):
    if isinstance(t, Tensor):
        return t
    if isinstance(t, tuple) and len(t) == 2 and tag == Tag.OUTPUT:
        return empty(*t)
    raise InvalidArgument(
        Status.INVALID_ARGUMENT,
        f"{tag.name} tensor {t!r}: expected a dist_worker.Tensor"
        + (" or (shape, dtype)" if tag == Tag.OUTPUT else ""))


def _scalar(s):
    if isinstance(s, bool) or not isinstance(s, int):
        index = getattr(s, "__index__", None)
        if index is None or isinstance(s, bool):
            raise InvalidArgument(Status.INVALID_ARGUMENT, f"scalar {s!r} is not an int")
        s = index()
    if not -(1 << 63) <= s < 1 << 64:
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"scalar {s} does not fit 64 bits")
    return s & ((1 << 64) - 1)
