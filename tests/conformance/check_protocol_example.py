#!/usr/bin/env python3
"""Checks that the Python child in docs/protocol.md stays in sync with the
conformance child: its serving core (from "# Layout" up to the "# ---"
line) must appear verbatim in tests/conformance/mailbox_child.py, and the
whole example must compile.

    check_protocol_example.py REPO_ROOT
"""
import os
import re
import sys


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    doc = open(os.path.join(root, "docs", "protocol.md"), encoding="utf-8").read()
    child = open(os.path.join(root, "tests", "conformance", "mailbox_child.py"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    if len(blocks) != 1:
        print(f"docs/protocol.md: expected one python block, found {len(blocks)}")
        return 1
    example = blocks[0]
    compile(example, "docs/protocol.md (python example)", "exec")
    start, end = example.find("# Layout"), example.find("\n# ---")
    if start < 0 or end < start:
        print("docs/protocol.md: the example lacks its '# Layout' ... '# ---' serving core")
        return 1
    core = example[start:end].rstrip() + "\n"
    if core not in child:
        for n, line in enumerate(core.splitlines(), 1):
            if line and line not in child:
                print(f"first differing line {n} of the example's core: {line!r}")
                break
        print("docs/protocol.md: the example's serving core differs from tests/conformance/mailbox_child.py")
        return 1
    print(f"ok: the example's serving core ({core.count(chr(10))} lines) equals the conformance child's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
