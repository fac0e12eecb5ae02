#!/usr/bin/env bash
# The whole test suite: Rust tests, the loom model of the hand-off, then the
# CMake build (library, header checks) and CTest (install into build/stage,
# C tests and examples built against it with find_package). CI runs exactly
# this through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test --workspace
# The hand-off code model-checked by loom: the crate built with --cfg loom
# (its own target directory, so the normal build stays cached).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib loom -- --test-threads=1
cmake -S . -B build && cmake --build build -j2 && ctest --test-dir build --output-on-failure
