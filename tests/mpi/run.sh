#!/bin/sh
# Runs one MPI test and judges it by what it printed:
#   tests/mpi/run.sh <pattern> <count> <mpirun> <mpirun args...> <program> <args...>
# Passes when at least <count> lines of the output match the extended
# regular expression <pattern>, no line starts with "FAIL", and mpirun exited 0,
# except for runs that kill a rank on purpose (--enable-recovery), where
# OpenMPI may report the killed rank in its exit code.
set -u
pattern=$1 count=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
rc=$?
cat "$out"
found=$(grep -E -c -- "$pattern" "$out")
if grep -q "^FAIL" "$out"; then
  echo "run.sh: a check failed (see FAIL above)" >&2
  exit 1
fi
if [ "$found" -lt "$count" ]; then
  echo "run.sh: $found lines match '$pattern', $count expected (mpirun exited $rc)" >&2
  exit 1
fi
case " $* " in
  *" --enable-recovery "*) ;;
  *) if [ "$rc" -ne 0 ]; then echo "run.sh: mpirun exited $rc" >&2; exit 1; fi ;;
esac
echo "run.sh: $found of $count lines matched; mpirun exited $rc"
