#!/bin/sh
# The distributed measure of issue 16, on this machine: for each model,
# samples/s of one process with 2 threads, one process with 1 thread, and
# 2 ranks x 1 thread (mpirun), the ratio 2 ranks / (1 process x 2 threads),
# and the share of the gradient all-reduce hidden behind backward:
#     hidden = 1 - wait(overlap) / wait(no overlap)
# where wait is the time cg_backward waits for the all-reduces after its
# walk (with --no-overlap every all-reduce starts there, so that wait is the
# whole communication time). Medians of --rounds rounds (clgrad-dist-bench).
# Then ZeRO-1 side by side: 2 ranks x 1 thread without and with
# --shard-optimizer (run one after the other), samples/s, Adam's state on
# the fullest rank, and the parameters' all-gather per step.
#
#   tools/bench_dist.sh [BUILD_DIR] [MODELS...]     (default: build mlp cnn)
#
# Extra clgrad-dist-bench options through BENCH_DIST_ARGS (e.g. "--rounds 9").
set -eu
shard=""
build=${1:-build}
[ $# -gt 0 ] && shift
models=${*:-mlp cnn}
bench="$build/tools/clgrad-dist-bench"
[ -x "$bench" ] || { echo "bench_dist.sh: $bench not built" >&2; exit 1; }
export CLGRAD_BACKEND="${CLGRAD_BACKEND:-cpu}"
# mpirun as root needs these; ranks oversubscribe and yield when idle.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
# OPENBLAS_NUM_THREADS caps the cpu backend's GEMM threads (cpu_gemm.c), so
# each run sets it to its own thread count, as clgrad-bench --threads does:
# one process on 2 threads with a 1-thread cap ran its GEMMs on one core and
# flattered the ranks (CNN: 2,620 against 4,498 samples/s uncapped).
args=${BENCH_DIST_ARGS:-}

field() { # JSON line, key -> value
    python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

echo "clgrad-dist-bench on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %18s %18s %18s %7s %9s %8s %7s\n' model "1p x 2t" "1p x 1t" "2 ranks x 1t" ratio \
    "CPU ratio" "wait ms" hidden
for m in $models; do
    # shellcheck disable=SC2086
    p2=$(CLGRAD_CPU_THREADS=2 OPENBLAS_NUM_THREADS=2 POCL_CPU_MAX_CU_COUNT=2 "$bench" --model "$m" --json $args)
    # shellcheck disable=SC2086
    p1=$(CLGRAD_CPU_THREADS=1 OPENBLAS_NUM_THREADS=1 POCL_CPU_MAX_CU_COUNT=1 "$bench" --model "$m" --json $args)
    # shellcheck disable=SC2086
    r2=$(CLGRAD_CPU_THREADS=1 OPENBLAS_NUM_THREADS=1 POCL_CPU_MAX_CU_COUNT=1 mpirun -np 2 "$bench" --model "$m" --json $args)
    # shellcheck disable=SC2086
    r2n=$(CLGRAD_CPU_THREADS=1 OPENBLAS_NUM_THREADS=1 POCL_CPU_MAX_CU_COUNT=1 mpirun -np 2 "$bench" --model "$m" --json \
          --no-overlap $args)
    # shellcheck disable=SC2086
    r2s=$(CLGRAD_CPU_THREADS=1 OPENBLAS_NUM_THREADS=1 POCL_CPU_MAX_CU_COUNT=1 mpirun -np 2 "$bench" --model "$m" --json \
          --shard-optimizer $args)
    shard="$shard
$r2
$r2s"
    python3 - "$m" "$p2" "$p1" "$r2" "$r2n" <<'EOF'
import json, sys
m = sys.argv[1]
p2, p1, r2, r2n = (json.loads(a) for a in sys.argv[2:])
fmt = lambda d: "%.0f [%.0f-%.0f]" % (d["samples_per_s"], d["min"], d["max"])
hidden = 1 - r2["wait_ms"] / r2n["wait_ms"] if r2n["wait_ms"] > 0 else float("nan")
# CPU ratio: samples per CPU-second, 2 ranks (each rank's CPU time, the
# larger, twice) against one process with 2 threads: what the wall-clock
# ratio would be on two otherwise idle cores, if neither wasted time waiting.
cpu_ratio = p2["cpu_ms"] / (2 * r2["cpu_ms"])
print("%-6s %18s %18s %18s %6.2fx %8.2fx %8.2f %6.0f%%" % (
    m, fmt(p2), fmt(p1), fmt(r2), r2["samples_per_s"] / p2["samples_per_s"], cpu_ratio,
    r2["wait_ms"], 100 * hidden))
print("       CPU ms/step: 1p x 2t %.2f, 1p x 1t %.2f, per rank %.2f; gradients %.2f MB; "
      "all-reduce wait without overlap %.2f ms" % (p2["cpu_ms"], p1["cpu_ms"], r2["cpu_ms"],
                                                   p1["grad_mb"], r2n["wait_ms"]))
EOF
done
echo
echo "ZeRO-1, 2 ranks x 1 thread, Adam: without and with --shard-optimizer (medians [range])"
printf '%-12s %18s %18s %7s %22s %12s\n' model "samples/s" "sharded" ratio "Adam MB/rank: full" "gather ms"
python3 - "$shard" <<'EOF'
import json, sys
runs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
fmt = lambda d: "%.0f [%.0f-%.0f]" % (d["samples_per_s"], d["min"], d["max"])
for full, sh in zip(runs[0::2], runs[1::2]):
    print("%-12s %18s %18s %6.2fx %10.2f -> %7.2f %12.3f" % (
        full["model"], fmt(full), fmt(sh), sh["samples_per_s"] / full["samples_per_s"],
        full["state_mb"], sh["state_mb"], sh["gather_ms"]))
EOF
