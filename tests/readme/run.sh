#!/bin/sh
# Compiles every complete C program in README.md (each ```c block with a
# main function) against an installed prefix, warnings as errors, and runs it.
#   tests/readme/run.sh <prefix> <C compiler> <README.md>
set -eu
prefix=$1 cc=$2 readme=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
awk -v dir="$out" '
  /^```c$/ { n++; file = dir "/snippet" n ".c"; inside = 1; next }
  /^```/ && inside { inside = 0; close(file); next }
  inside { print > file }
' "$readme"
count=0
for f in "$out"/snippet*.c; do
  grep -q 'int main' "$f" || continue
  count=$((count + 1))
  "$cc" -std=c99 -Wall -Wextra -Werror -I"$prefix/include" -o "${f%.c}" "$f" \
    -L"$prefix/lib" -ldist_worker -Wl,-rpath,"$prefix/lib"
  echo "README snippet $(basename "$f"): compiled; running"
  "${f%.c}"
done
[ "$count" -gt 0 ] || { echo "no complete C program found in $readme"; exit 1; }
echo "README: $count C programs compiled and ran"
