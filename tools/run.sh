#!/bin/sh
# The main job, from a fresh Debian 12 machine: installs what is missing,
# builds, and trains an MLP (784-256-128-10, ReLU, Adam) on Fashion-MNIST
# with the default backend (CLGRAD_BACKEND, else auto: a GPU if present,
# else cpu), then reports test accuracy. The learning rate follows a cosine
# schedule (1e-3 down to 0 over the 10 epochs): with a constant rate the
# last epoch's test accuracy swings by a point between epochs. Extra
# arguments go to clgrad-train and override these.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
[ -d build ] || meson setup build
ninja -C build
exec build/tools/clgrad-train --data fashion-mnist \
    --model "linear 256 relu, linear 128 relu, linear 10" \
    --optim adam --lr 1e-3 --schedule cosine --batch 64 --epochs 10 "$@"
