#!/usr/bin/env python3
"""A child in the style of the original runtime's Python children: it
busy-polls its mailbox with `struct` and knows nothing of the library.

    reference_child.py MAILBOX LOG

Layout (docs/design.md, "The mailbox"): state i32 at 0, error i32 at 4,
callable u64 at 8, config (4 x i32) at 16..32, args blob at 64 (i32 tensor
count T, i32 scalar count S, T descriptors of 40 bytes, S u64 scalars).
States: IDLE 0, TASK_READY 1, TASK_DONE 2, SHUTDOWN 3.

On TASK_READY it appends one line to LOG ("callable scalars... |
data:shape:dtype ...") and answers with error scalars[0] for callable 2,
else 0: it writes error, then state TASK_DONE (with struct.pack_into, which
zero-fills the word before writing it, as those children did). On SHUTDOWN
it exits 0; it exits 4 when its parent is gone.
"""
import mmap
import os
import struct
import sys

IDLE, TASK_READY, TASK_DONE, SHUTDOWN = 0, 1, 2, 3


def main(path, log_path):
    fd = os.open(path, os.O_RDWR)
    buf = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    parent = os.getppid()
    polls = 0
    with open(log_path, "a") as log:
        while True:
            state = struct.unpack_from("<i", buf, 0)[0]
            if state == TASK_READY:
                callable_id = struct.unpack_from("<Q", buf, 8)[0]
                block_dim, aicpu, _prof, _dump = struct.unpack_from("<4i", buf, 16)
                t, s = struct.unpack_from("<ii", buf, 64)
                tensors = []
                for i in range(t):
                    data, *shapes = struct.unpack_from("<Q5I", buf, 72 + 40 * i)
                    ndims, dtype = struct.unpack_from("<IB", buf, 72 + 40 * i + 28)
                    tensors.append(f"{data}:{','.join(map(str, shapes[:ndims]))}:{dtype}")
                scalars = list(struct.unpack_from(f"<{s}Q", buf, 72 + 40 * t))
                log.write(f"{callable_id} {block_dim} {aicpu} {' '.join(map(str, scalars))} | "
                          f"{' '.join(tensors)}\n")
                log.flush()
                error = scalars[0] if callable_id == 2 and scalars else 0
                struct.pack_into("<i", buf, 4, error)
                struct.pack_into("<i", buf, 0, TASK_DONE)
            elif state == SHUTDOWN:
                return 0
            polls += 1
            if polls % 65536 == 0 and os.getppid() != parent:
                return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
