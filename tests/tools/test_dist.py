#!/usr/bin/env python3
"""Data-parallel training over MPI (include/clgrad/dist.h), through mpirun.

    test_dist.py DIST_TRAIN MPIRUN

For the MLP, a CNN with BatchNorm and dropout, and an LSTM (tests/dist_train.c),
the losses of a few steps and the final parameters at -np 1, 2 and 4 must equal
those of one plain process (no MPI at all) at the same global batch, to 1e-5
relative; dist_train itself checks that every rank ends with bitwise the same
parameters. Then the failure cases: a global batch that does not divide by the
ranks, a data set smaller than the ranks, a model that differs between ranks,
and one rank failing alone: each must print its message and end with a status
below 128, within a timeout (no hang).

CLGRAD_BACKEND picks the backend. With opencl (PoCL on CPUs) each rank gets
POCL_CPU_MAX_CU_COUNT = cores / ranks (at least 1), so 4 ranks on 2 cores do
not start 8 busy workers.
"""
import os
import subprocess
import sys

EXE, MPIRUN = sys.argv[1], sys.argv[2]
TIMEOUT = 300
RTOL = 1e-5
failures = []


def env_for(np_):
    env = dict(os.environ)
    # CI runs as root; Open MPI refuses that unless told.
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    # Ranks yield the CPU while they wait (oversubscribed: 4 ranks, 2 cores).
    env["OMPI_MCA_mpi_yield_when_idle"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["CLGRAD_CPU_THREADS"] = "1" if np_ > 1 else env.get("CLGRAD_CPU_THREADS", "1")
    cores = os.cpu_count() or 1
    env["POCL_CPU_MAX_CU_COUNT"] = str(max(1, cores // max(np_, 1)))
    return env


def run(np_, args):
    """np_ 0: one plain process without mpirun."""
    cmd = [EXE] + args if np_ == 0 else [MPIRUN, "--oversubscribe", "-np", str(np_), EXE] + args
    try:
        p = subprocess.run(cmd, env=env_for(np_), capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s: %s" % (TIMEOUT, " ".join(cmd))
    return p.returncode, p.stdout, p.stderr


def parse(out):
    losses, params = [], None
    for line in out.splitlines():
        w = line.split()
        if len(w) == 4 and w[0] == "step" and w[2] == "loss":
            losses.append(float(w[3]))
        elif len(w) == 2 and w[0] == "params":
            params = float(w[1])
    return losses, params


def close(a, b):
    return abs(a - b) <= RTOL * max(abs(a), abs(b), 1e-30)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


STEPS, BATCH = 5, 8
for model in ("mlp", "cnn", "lstm"):
    args = [model, str(STEPS), str(BATCH)]
    rc, out, err = run(0, args)
    ref, ref_p = parse(out)
    check(rc == 0 and len(ref) == STEPS and ref_p is not None,
          "%s: one plain process trains (rc %s) %s" % (model, rc, err.strip()[-300:]))
    if rc != 0:
        continue
    # The steps must change the model, or equal losses would prove little.
    check(not close(ref[0], ref[-1]), "%s: the loss moves (%g -> %g)" % (model, ref[0], ref[-1]))
    for np_ in (1, 2, 4):
        rc, out, err = run(np_, args)
        losses, p = parse(out)
        ok = rc == 0 and len(losses) == STEPS and p is not None
        check(ok, "%s -np %d: runs, parameters identical on every rank (rc %s) %s"
              % (model, np_, rc, err.strip()[-400:]))
        if not ok:
            continue
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(ref, losses)) if not close(a, b)]
        check(not bad, "%s -np %d: losses equal one process to %g (first differences %s)"
              % (model, np_, RTOL, bad[:3]))
        check(close(ref_p, p), "%s -np %d: parameters equal one process (%r vs %r)"
              % (model, np_, ref_p, p))


def expect_error(np_, args, text, what):
    rc, out, err = run(np_, args)
    check(rc is not None and 0 < rc < 128 and text in err,
          "%s: status %s (want 1..127) and %r in: %s" % (what, rc, text, err.strip()[-600:]))


expect_error(4, ["mlp", "3", "6"], "does not divide by the 4 ranks", "batch 6 on 4 ranks")
expect_error(4, ["mlp", "3", "4", "--samples", "2"], "fewer than the 4 ranks",
             "2 samples on 4 ranks")
expect_error(2, ["mlp", "3", "8", "--mismatch"], "the model differs between ranks",
             "a model that differs on rank 1")
expect_error(2, ["cnn", "4", "8", "--fail-rank", "1"], "rank 1: cannot read",
             "rank 1 failing alone")

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
