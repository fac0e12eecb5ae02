"""The README's Python host example runs as written."""

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def python_blocks():
    if not os.path.exists(README):
        return []
    with open(README) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.M | re.S)


def test_the_readme_host_example_runs(package_env):
    programs = [b for b in python_blocks() if "dw.Worker(" in b]
    if not programs:
        pytest.skip("no README in the source tree")
    for code in programs:
        r = subprocess.run([sys.executable, "-c", code], env=package_env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "[0.0, 3.0, 6.0, 9.0]\n"
