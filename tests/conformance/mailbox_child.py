#!/usr/bin/env python3
"""A mailbox child written from docs/protocol.md alone, sharing no code with the library.

    mailbox_child.py --mailbox PATH --log LOG [--fail CALLABLE:CODE ...]

PATH is a file of at least 4096 bytes (e.g. under /dev/shm) that the parent
maps MAP_SHARED and registers with dist_worker_add_process. The child spins
briefly for work, then sleeps on the state word's futex (announcing it in the
waiter word) and wakes every NAP_S to check that its parent lives. It echoes
the launch sequence (features bit 0). On TASK_READY it decodes callable,
config and the args blob, appends one JSON line to LOG and answers TASK_DONE
with error 0, or with CODE and an error message for a callable named by
--fail. On SHUTDOWN it exits 0.

Log line: {"callable", "config": [block_dim, aicpu_thread_num, profiling,
dump], "tensors": [{"data", "shapes" (first ndims), "ndims", "dtype"}],
"scalars", "pid"}; plus "wire_errors" (a list of strings) when the parent
broke a rule of the wire format (a reserved byte, descriptor padding or
unused dimension not zero, a child-owned word changed, a launch sequence
that is 0 or repeats), or "decode_error" for a blob that cannot be decoded.

Exit status: 0 after SHUTDOWN, 2 mailbox too small, 3 a state no parent
writes, 4 the parent died.

Standard library only: mmap for the mailbox, ctypes for the futex system
call. Memory ordering: see Mailbox.fence and Mailbox.ordered.
"""
import argparse
import ctypes
import json
import mmap
import os
import struct
import sys
import time

# Layout (docs/protocol.md, "Layout").
MAILBOX_SIZE = 4096
OFF_STATE, OFF_ERROR, OFF_CALLABLE, OFF_CONFIG = 0, 4, 8, 16
OFF_WAITER, OFF_MESSAGE_LEN, OFF_LAUNCH_SEQ, OFF_DONE_SEQ = 32, 36, 40, 44
OFF_FEATURES, OFF_LARGE, OFF_ARGS = 48, 52, 64
ARGS_CAPACITY, MESSAGE_CAPACITY = 4032, 2048
IDLE, TASK_READY, TASK_DONE, SHUTDOWN = 0, 1, 2, 3
FEATURE_ECHO = 1  # features bit 0: this child copies launch_seq to done_seq
ERROR_BAD_BLOB = -14  # -DIST_ERR_PROTOCOL
DESCRIPTOR = struct.Struct("<Q5IIB7s")  # data, shapes[5], ndims, dtype, padding: 40 bytes
MAX_DIMS, MAX_DTYPE = 5, 8

SPIN_S = 50e-6  # look at the state word this long after a task before sleeping
NAP_S = 0.5  # longest sleep before checking that the parent lives

FUTEX_WAIT, FUTEX_WAKE = 0, 1  # shared futexes: no FUTEX_PRIVATE_FLAG (128)
MACHINE = os.uname().machine
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}[MACHINE]
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Mailbox:
    def __init__(self, buf):
        self.buf = buf
        self.word = ctypes.c_uint32.from_buffer(buf, OFF_STATE)  # the futex
        self.addr = ctypes.addressof(self.word)

    def u32(self, off):
        return struct.unpack_from("<I", self.buf, off)[0]

    def state(self):
        return self.u32(OFF_STATE)

    def futex(self, op, val, timeout=None):
        ts = None
        if timeout is not None:
            ts = ctypes.byref(_Timespec(int(timeout), int(timeout % 1 * 1e9)))
        _libc.syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(self.addr), ctypes.c_long(op),
                      ctypes.c_long(val), ts, None, ctypes.c_long(0))

    def fence(self):
        """A full memory barrier. Python has none, but the kernel passes one in
        every FUTEX_WAKE before it looks for waiters. Only this child sleeps on
        its state word, so the wake wakes nobody."""
        self.futex(FUTEX_WAKE, 1)

    def ordered(self):
        """An acquire (after seeing TASK_READY) or release (before TASK_DONE)
        point: x86-64 keeps loads in order and stores in order by itself;
        elsewhere it takes a full barrier."""
        if MACHINE != "x86_64":
            self.fence()


def wait_for_work(mb, parent_alive):
    """Returns the first state that is neither IDLE nor TASK_DONE, or None
    once the parent is gone."""
    until = time.monotonic() + SPIN_S
    while time.monotonic() < until:
        s = mb.state()
        if s not in (IDLE, TASK_DONE):
            return s
    while True:
        mb.buf[OFF_WAITER] = 1
        mb.fence()
        s = mb.state()
        if s in (IDLE, TASK_DONE):
            mb.futex(FUTEX_WAIT, s, NAP_S)  # returns at once if the word is no longer s
        mb.buf[OFF_WAITER] = 0
        s = mb.state()
        if s not in (IDLE, TASK_DONE):
            return s
        if not parent_alive():
            return None


def complete(mb, error, seq, message=b""):
    """Reports the task taken with launch sequence `seq`. Returns False, and
    stores nothing, when the state is no longer TASK_READY (SHUTDOWN)."""
    if error and message:
        m = message[:MESSAGE_CAPACITY]
        mb.buf[OFF_ARGS:OFF_ARGS + len(m)] = m
        struct.pack_into("<I", mb.buf, OFF_MESSAGE_LEN, len(m))
    struct.pack_into("<i", mb.buf, OFF_ERROR, error)
    struct.pack_into("<I", mb.buf, OFF_DONE_SEQ, seq)
    mb.ordered()
    # No compare-and-swap in Python: look just before the store. The store is
    # one byte (pack_into would zero the word first): TASK_READY's upper
    # bytes are zero already.
    if mb.state() != TASK_READY:
        return False
    mb.buf[OFF_STATE] = TASK_DONE
    return True


def serve(mb, run, parent_alive):
    """run(mb) -> (error, message) runs the published task."""
    struct.pack_into("<I", mb.buf, OFF_FEATURES, FEATURE_ECHO)
    while True:
        s = wait_for_work(mb, parent_alive)
        if s is None:
            print("mailbox_child: parent died; exiting", file=sys.stderr)
            return 4
        if s == SHUTDOWN:
            return 0
        if s != TASK_READY:
            print(f"mailbox_child: unexpected state {s}", file=sys.stderr)
            return 3
        mb.ordered()
        seq = mb.u32(OFF_LAUNCH_SEQ)  # read when the task is taken, echoed at the end
        error, message = run(mb)
        if not complete(mb, error, seq, message):
            return 0 if mb.state() == SHUTDOWN else 3


# ---------------------------------------------------------------------------
# The conformance task: decode, check the wire rules, log.

class Checker:
    def __init__(self, log, fail):
        self.log, self.fail = log, fail
        self.last_seq = None  # launch_seq of the previous task
        self.echoed = 0  # what this child left in done_seq

    def wire_errors(self, buf, seq):
        errors = []
        if self.last_seq is not None and seq == self.last_seq:
            errors.append(f"launch_seq {seq} repeats the previous task's")
        if seq == 0:
            errors.append("launch_seq is 0")
        waiter, message_len, done_seq, features, large = struct.unpack_from("<IIxxxxIII", buf, OFF_WAITER)
        if waiter != 0 or done_seq != self.echoed or features != FEATURE_ECHO:
            errors.append(f"child-owned words changed: waiter={waiter} done_seq={done_seq} "
                          f"(left {self.echoed}) features={features}")
        if message_len != 0:
            errors.append(f"message_len is {message_len}, not cleared with the task")
        if large != 0:
            errors.append(f"large is {large} for a child that does not announce large args")
        if any(buf[56:OFF_ARGS]):
            errors.append("reserved bytes 56..64 are not zero")
        flags = struct.unpack_from("<2i", buf, OFF_CONFIG + 8)
        if any(f not in (0, 1) for f in flags):
            errors.append(f"config flags {flags} are not 0/1")
        return errors

    def decode(self, buf, errors):
        t, s = struct.unpack_from("<2i", buf, OFF_ARGS)
        if t < 0 or s < 0 or 8 + 40 * t + 8 * s > ARGS_CAPACITY:
            raise ValueError(f"blob header out of range: T={t} S={s}")
        tensors = []
        for i in range(t):
            data, *shapes, ndims, dtype, padding = DESCRIPTOR.unpack_from(buf, OFF_ARGS + 8 + 40 * i)
            if ndims > MAX_DIMS or dtype > MAX_DTYPE:
                errors.append(f"tensor {i}: ndims {ndims} or dtype {dtype} out of range")
            if any(shapes[ndims:]) or any(padding):
                errors.append(f"tensor {i}: unused dimensions or padding bytes are not zero")
            tensors.append({"data": data, "shapes": shapes[:ndims], "ndims": ndims, "dtype": dtype})
        scalars = list(struct.unpack_from(f"<{s}Q", buf, OFF_ARGS + 8 + 40 * t))
        return tensors, scalars

    def __call__(self, mb):
        buf = mb.buf
        seq = mb.u32(OFF_LAUNCH_SEQ)
        callable_ = struct.unpack_from("<Q", buf, OFF_CALLABLE)[0]
        record = {"callable": callable_, "config": list(struct.unpack_from("<4i", buf, OFF_CONFIG))}
        errors = self.wire_errors(buf, seq)
        error = self.fail.get(callable_, 0)
        message = f"mailbox_child.py: --fail {callable_}:{error}".encode() if error else b""
        try:
            record["tensors"], record["scalars"] = self.decode(buf, errors)
        except ValueError as e:
            record["decode_error"], error, message = str(e), ERROR_BAD_BLOB, str(e).encode()
        record["pid"] = os.getpid()
        if errors:
            record["wire_errors"] = errors
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()
        self.last_seq, self.echoed = seq, seq
        return error, message


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailbox", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail", action="append", default=[], metavar="CALLABLE:CODE")
    a = ap.parse_args()
    fail = {}
    for f in a.fail:
        c, e = f.split(":")
        fail[int(c, 0)] = int(e, 0)

    fd = os.open(a.mailbox, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < MAILBOX_SIZE:
            print(f"mailbox_child: {a.mailbox} is smaller than {MAILBOX_SIZE} bytes", file=sys.stderr)
            return 2
        buf = mmap.mmap(fd, MAILBOX_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    parent = os.getppid()
    with open(a.log, "a") as log:
        return serve(Mailbox(buf), Checker(log, fail), lambda: os.getppid() == parent)


if __name__ == "__main__":
    raise SystemExit(main())
