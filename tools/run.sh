#!/bin/sh
# The main job, from a fresh Debian 12 machine: installs what is missing,
# builds, and trains an MLP (784-256-128-10, ReLU, Adam) on Fashion-MNIST
# with the default backend (CLGRAD_BACKEND, else auto: a GPU if present,
# else cpu), then reports test accuracy. Extra arguments go to clgrad-train.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
[ -d build ] || meson setup build
ninja -C build
exec build/tools/clgrad-train --data fashion-mnist \
    --model "linear 256 relu, linear 128 relu, linear 10" \
    --optim adam --lr 1e-3 --batch 64 --epochs 10 "$@"
