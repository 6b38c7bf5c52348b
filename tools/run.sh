#!/bin/sh
# The main job, from a fresh Debian 12 machine: installs what is missing,
# builds, and runs clgrad-info on the default backend.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
[ -d build ] || meson setup build
ninja -C build
exec build/tools/clgrad-info "$@"
