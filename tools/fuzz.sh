#!/bin/sh
# Fuzzes one target of tests/fuzz/ with libFuzzer (clang, ASan+UBSan) for
# SECONDS, starting from the seed corpus; new inputs go to a working corpus
# (build-fuzz/corpus/TARGET, not the repository's), findings to
# build-fuzz/findings/TARGET/ (crash-*, leak-*, timeout-*).
#
#   tools/fuzz.sh TARGET SECONDS     TARGET: csv idx spec safetensors checkpoint
#   tools/fuzz.sh all SECONDS        each target in turn
#
# A finding replays with build-fuzz/tests/fuzz/fuzz_TARGET FILE (or, in any
# build, build/tests/fuzz/fuzz_TARGET FILE); once fixed, copy it into
# tests/fuzz/corpus/TARGET/ so meson test keeps replaying it.
set -eu
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 TARGET|all SECONDS" >&2; exit 2; }
target=$1 secs=$2
if [ "$target" = all ]; then
    for t in csv idx spec safetensors checkpoint; do "$0" "$t" "$secs"; done
    exit 0
fi
[ -d "tests/fuzz/corpus/$target" ] || { echo "$0: no target '$target'" >&2; exit 2; }
command -v clang > /dev/null || { echo "$0: needs clang (tools/setup.sh installs it)" >&2; exit 2; }

b=build-fuzz
# No oneDNN: a prebuilt library whose JIT kernels ASan cannot follow (the
# timer signal of libFuzzer landing in one gave a false heap-buffer-overflow).
[ -f $b/build.ninja ] || CC=clang meson setup $b -Dfuzz=enabled -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized -Dopencl=disabled -Donednn=disabled > /dev/null
ninja -C $b "tests/fuzz/fuzz_$target" > /dev/null
mkdir -p "$b/corpus/$target" "$b/findings/$target"
# halt_on_error: UBSan findings are crashes; allocator_may_return_null: a
# huge allocation is the library's error path to test, not a finding.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export CLGRAD_BACKEND=cpu CLGRAD_CPU_THREADS=1
# FUZZ_SEED: libFuzzer's -seed (0, the default, picks one at random;
# check.sh fixes it so a CI pass is reproducible but for machine speed).
"$b/tests/fuzz/fuzz_$target" -max_total_time="$secs" -seed="${FUZZ_SEED:-0}" -max_len=65536 -timeout=20 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$b/findings/$target/" "$b/corpus/$target" "tests/fuzz/corpus/$target"
