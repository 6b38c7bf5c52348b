#!/bin/sh
# Installs the Debian packages clgrad's build, tests and examples need, if
# any is missing. Run as root (or with sudo available). Safe to re-run.
set -eu
PKGS="gcc libc6-dev meson ninja-build pkg-config python3 ocl-icd-opencl-dev opencl-c-headers
      pocl-opencl-icd clinfo libclblast-dev libcmocka-dev zlib1g-dev libopenblas-dev
      libdnnl-dev
      dataset-fashion-mnist valgrind locales libopenmpi-dev openmpi-bin
      clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "clgrad setup: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q $missing
