#!/bin/sh
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds, runs every test on every backend (opencl on PoCL when no
# GPU is present), then builds again with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the suite there too, and fuzzes each
# parser for a short while (tests/fuzz/, libFuzzer; clang only).
#
#   tools/check.sh            everything
#   tools/check.sh --quick    skip the sanitizer build
set -eu
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

tools/setup.sh

# PoCL's cpu driver starts a worker per core in every process; on a shared
# 2-core machine more only adds contention.
export POCL_CPU_MAX_CU_COUNT="${POCL_CPU_MAX_CU_COUNT:-2}"

[ -d build ] || meson setup build
ninja -C build
meson test -C build --print-errorlogs --num-processes 2

[ "$quick" = 1 ] && exit 0

# Sanitizers. LeakSanitizer's suppressions cover only the OpenCL driver
# stack (tests/lsan.supp explains each); UBSan findings are fatal.
# intercept_tls_get_addr=0: GCC 12's runtime takes a dynamic TLS block that
# happens to start at offset 16 of a page for a pre-2.25 glibc header and
# reads the words before it; PoCL's LLVM has such blocks, and LeakSanitizer's
# tracer then dies at exit ("Tracer caught signal 11", exit 1, no leak
# found): 2 of some 20 long opencl test processes here, and CI's
# dist-opencl at mlp -np 4.
[ -d build-san ] || meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug
ninja -C build-san
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0" \
    meson test -C build-san --print-errorlogs --num-processes 2 --timeout-multiplier 3

# A short fuzzing pass: each target of tests/fuzz/ for FUZZ_SECONDS (30)
# from its seed corpus, with ASan+UBSan; a finding fails the check (its
# input is in build-fuzz/findings/). tools/fuzz.sh runs longer ones.
if command -v clang > /dev/null; then
    mkdir -p build-fuzz/logs
    for t in csv idx spec safetensors checkpoint; do
        log=build-fuzz/logs/$t.log
        FUZZ_SEED="${FUZZ_SEED:-1}" tools/fuzz.sh "$t" "${FUZZ_SECONDS:-30}" > "$log" 2>&1 || { tail -n 40 "$log"; exit 1; }
        grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/fuzz $t: /"
    done
fi
