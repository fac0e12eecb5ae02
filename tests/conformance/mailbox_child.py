#!/usr/bin/env python3
"""A mailbox child written only from the wire format (docs/design.md), sharing no code with
the library: it proves the library's parent speaks the wire protocol.

    mailbox_child.py --mailbox PATH --log LOG [--fail CALLABLE:CODE ...]

PATH is a file of at least 4096 bytes (e.g. under /dev/shm) that the parent
maps MAP_SHARED and registers with dist_worker_add_process. The child
busy-polls the state word. On TASK_READY it decodes callable, config and the
args blob, appends one JSON line to LOG and answers TASK_DONE with error 0,
or with CODE for a callable named by --fail. On SHUTDOWN it exits 0.

Log line: {"callable", "config": [block_dim, aicpu_thread_num, profiling,
dump], "tensors": [{"data", "shapes" (first ndims), "ndims", "dtype"}],
"scalars", "pid"}; plus "wire_errors" (a list of strings) when a byte the
spec says is zero (reserved area, descriptor padding) is not. Of the reserved
bytes, the parent may fill only its documented extension word launch_seq
(offset 40, a u32 that a child which does not echo it ignores).

Stores are plain: on x86-64 they become visible in program order, so the
error word is visible before TASK_DONE, as the protocol requires. The state
word is written with a single store (see serve()).
"""
import argparse
import json
import mmap
import os
import struct
import sys

MAILBOX_SIZE = 4096
OFF_STATE, OFF_ERROR, OFF_CALLABLE = 0, 4, 8
OFF_CONFIG, OFF_RESERVED, OFF_ARGS = 16, 32, 64
OFF_LAUNCH_SEQ = 40  # parent-written extension word (u32)
ARGS_CAPACITY = 4032
IDLE, TASK_READY, TASK_DONE, SHUTDOWN = 0, 1, 2, 3
DESCRIPTOR = struct.Struct("<Q5IIB7s")  # data, shapes[5], ndims, dtype, padding: 40 bytes
PARENT_CHECK_EVERY = 1 << 16  # polls between checks that our parent is alive


def decode(buf):
    """Returns (record fields, wire errors) of the task in `buf`."""
    errors = []
    callable_ = struct.unpack_from("<Q", buf, OFF_CALLABLE)[0]
    config = list(struct.unpack_from("<4i", buf, OFF_CONFIG))
    if any(buf[OFF_RESERVED:OFF_LAUNCH_SEQ]) or any(buf[OFF_LAUNCH_SEQ + 4:OFF_ARGS]):
        errors.append("reserved bytes 32..64 (but launch_seq at 40) are not zero")
    t, s = struct.unpack_from("<2i", buf, OFF_ARGS)
    if t < 0 or s < 0 or 8 + 40 * t + 8 * s > ARGS_CAPACITY:
        raise ValueError(f"blob header out of range: T={t} S={s}")
    tensors = []
    for i in range(t):
        data, *rest = DESCRIPTOR.unpack_from(buf, OFF_ARGS + 8 + 40 * i)
        shapes, ndims, dtype, padding = rest[:5], rest[5], rest[6], rest[7]
        if any(padding):
            errors.append(f"tensor {i}: padding bytes are not zero")
        tensors.append({"data": data, "shapes": shapes[:ndims], "ndims": ndims, "dtype": dtype})
    scalars = list(struct.unpack_from(f"<{s}Q", buf, OFF_ARGS + 8 + 40 * t))
    return {"callable": callable_, "config": config, "tensors": tensors, "scalars": scalars}, errors


def serve(buf, log, fail):
    parent = os.getppid()
    polls = 0
    while True:
        state = struct.unpack_from("<i", buf, OFF_STATE)[0]
        if state == TASK_READY:
            try:
                record, errors = decode(buf)
                error = fail.get(record["callable"], 0)
            except ValueError as e:
                record, errors, error = {"callable": None}, [str(e)], 99
            record["pid"] = os.getpid()
            if errors:
                record["wire_errors"] = errors
            log.write(json.dumps(record) + "\n")
            log.flush()
            struct.pack_into("<i", buf, OFF_ERROR, error)
            # One single-byte store: struct.pack_into zero-fills its target
            # before writing, so the parent could see a transient IDLE. States
            # are < 256 and the parent stored the whole word, so bytes 1..3 are 0.
            buf[OFF_STATE] = TASK_DONE
        elif state == SHUTDOWN:
            return 0
        elif state not in (IDLE, TASK_DONE):
            print(f"mailbox_child: unexpected state {state}", file=sys.stderr)
            return 3
        polls += 1
        if polls % PARENT_CHECK_EVERY == 0 and os.getppid() != parent:
            print("mailbox_child: parent died; exiting", file=sys.stderr)
            return 4


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
    with open(a.log, "a") as log:
        return serve(buf, log, fail)


if __name__ == "__main__":
    raise SystemExit(main())
