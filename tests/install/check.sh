#!/bin/sh
# Installs the build into a temporary DESTDIR, then compiles and runs
# tests/install/consumer.c against it with pkg-config alone.
# usage: check.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]
set -eu
build=$1 src=$2 extra=${3:-}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
pc=$(find "$dest" -name clgrad.pc | head -n 1)
[ -n "$pc" ] || { echo "clgrad.pc was not installed"; exit 1; }
for f in include/clgrad/clgrad.h include/clgrad/backend.h; do
    find "$dest" -path "*/$f" | grep -q . || { echo "$f was not installed"; exit 1; }
done
find "$dest" -name 'clgrad-info' | grep -q . || { echo "clgrad-info was not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$dest"
# shellcheck disable=SC2046
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror $extra -o "$dest/consumer" "$src/tests/install/consumer.c" \
    $(pkg-config --cflags --libs clgrad)
libdir=$(dirname "$(find "$dest" -name 'libclgrad.so.0' | head -n 1)")
CONSUMER_BUILD_DIR=$(cd "$build" && pwd) LD_LIBRARY_PATH="$libdir" "$dest/consumer"
