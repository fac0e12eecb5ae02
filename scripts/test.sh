#!/usr/bin/env bash
# The whole test suite: Rust tests, the loom model of the hand-off, then the
# CMake build (library, header checks) and CTest (install into build/stage,
# C tests and examples built against it with find_package), then the Python
# package's pytest suite against that staged install; then, where an MPI is
# installed, the MPI feature: its unit tests and a second CMake build
# (build-mpi, -DDIST_WORKER_MPI=ON) whose tests labelled mpi run under
# mpirun. CI runs exactly this through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test --workspace
# The hand-off code model-checked by loom: the crate built with --cfg loom
# (its own target directory, so the normal build stays cached).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib loom -- --test-threads=1
cmake -S . -B build && cmake --build build -j2 && ctest --test-dir build --output-on-failure

# Levels on other hosts over MPI: built apart (the default build links no MPI).
if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
  cargo test --features mpi --lib remote
  cmake -S . -B build-mpi -DDIST_WORKER_MPI=ON && cmake --build build-mpi -j2 &&
    ctest --test-dir build-mpi -L mpi --output-on-failure
else
  echo "scripts/test.sh: MPI tests skipped: no MPI here (mpicc and mpirun not found;" \
       "Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev)" >&2
fi

# The Python package as a user gets it from the install: the staged copy on
# PYTHONPATH, finding the staged library next to it (no DIST_WORKER_LIBRARY).
stage_python="build/stage/share/dist_worker/python"
if ! python3 -m pytest --version >/dev/null 2>&1; then
  echo "scripts/test.sh: pytest is missing (python3 -m pip install pytest)" >&2
  exit 1
fi
rc=0
env -u DIST_WORKER_LIBRARY PYTHONPATH="$stage_python" \
  DIST_WORKER_EXPECT_PACKAGE="$stage_python/dist_worker" \
  python3 -m pytest python/tests -p no:cacheprovider -q -rs || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests in python/tests" >&2
fi
exit "$rc"
