#!/usr/bin/env bash
# The whole test suite: Rust tests, then the CMake build (library, header
# checks) and CTest (install into build/stage, C tests and examples built
# against it with find_package). CI runs exactly this through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test --workspace && cmake -S . -B build && cmake --build build -j2 && ctest --test-dir build --output-on-failure
