#!/bin/sh
# Builds the C host with nothing but a compiler and pkg-config, as a plain
# Makefile would, against an installed prefix; then runs it, linked to the
# shared library and to the static archive.
#   tests/pkg-config/run.sh <prefix> <C compiler> <source>
set -eu
prefix=$1 cc=$2 src=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists dist_worker
echo "pkg-config: dist_worker $(pkg-config --modversion dist_worker): $(pkg-config --cflags --libs dist_worker)"
# shellcheck disable=SC2046
"$cc" -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -o "$out/shared" "$src" \
  $(pkg-config --cflags --libs dist_worker) -Wl,-rpath,"$prefix/lib"
"$out/shared"
# shellcheck disable=SC2046
"$cc" -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -o "$out/static" "$src" \
  $(pkg-config --cflags --libs dist_worker_static)
# Linked statically: the program needs no libdist_worker.so at run time.
if ldd "$out/static" | grep -q libdist_worker; then
  echo "pkg-config: dist_worker_static linked the shared library" >&2
  exit 1
fi
"$out/static"
echo "pkg-config: shared and static hosts ran"
