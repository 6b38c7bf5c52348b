#!/usr/bin/env python3
"""Data-parallel training over MPI (include/clgrad/dist.h), through mpirun.

    test_dist.py DIST_TRAIN MPIRUN CLGRAD_TRAIN CLGRAD_CHARLM WORKDIR

For the MLP, a CNN with BatchNorm and dropout, and an LSTM (tests/dist_train.c),
the losses of a few steps and the final parameters at -np 1, 2 and 4 must equal
those of one plain process (no MPI at all) at the same global batch, to 1e-5
relative; dist_train itself checks that every rank ends with bitwise the same
parameters. Then the failure cases: a global batch that does not divide by the
ranks, a data set smaller than the ranks, a model that differs between ranks,
and one rank failing alone: each must print its message and end with a status
below 128, within a timeout (no hang). Last, the tools: clgrad-train under
mpirun logs the losses of one process, only rank 0 prints and writes, a run
saved on 4 ranks resumes on 2, a checkpoint that only rank 0 fails to read
ends the job; clgrad-charlm prints the losses of one process.

ZeRO-1 optimizer sharding (--shard, --shard-optimizer): the same losses and
parameters as one process for SGD with momentum and Adam(W), each rank
holding 1/N of the optimizer state (the parameters flattened and cut into N
equal ranges, to one element), and a
sharded checkpoint that resumes on another number of ranks. On opencl only
dist_train at -np 2, one optimizer per model (PoCL under ASan is slow; the
tools' part of sharding does not depend on the backend).

CLGRAD_BACKEND picks the backend. With opencl (PoCL on CPUs) each rank gets
POCL_CPU_MAX_CU_COUNT = cores / ranks (at least 1), so 4 ranks on 2 cores do
not start 8 busy workers.
"""
import csv
import os
import random
import subprocess
import sys

EXE, MPIRUN, TRAIN, CHARLM, WORK = sys.argv[1:6]
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
    # Under ASan, Open MPI's leaks come from components it has unloaded by
    # exit; only the slow unwinder reaches a frame in a library that
    # tests/lsan.supp names.
    for k in ("ASAN_OPTIONS", "LSAN_OPTIONS"):
        if k in env:
            env[k] += ":fast_unwind_on_malloc=0"
    cores = os.cpu_count() or 1
    env["POCL_CPU_MAX_CU_COUNT"] = str(max(1, cores // max(np_, 1)))
    return env


def run(np_, args, exe=None):
    """np_ 0: one plain process without mpirun."""
    exe = exe or EXE
    cmd = [exe] + args if np_ == 0 else [MPIRUN, "--oversubscribe", "-np", str(np_), exe] + args
    try:
        p = subprocess.run(cmd, env=env_for(np_), capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s: %s" % (TIMEOUT, " ".join(cmd))
    return p.returncode, p.stdout, p.stderr


def why(err, n):
    """The ranks' own messages: stderr without mpirun's banner (its dashed
    box and 'mpirun detected...' lines), first and last n characters, so an
    ASan report or a rank's error is not cut off by mpirun's trailer."""
    keep, box = [], False
    for line in err.splitlines():
        if line.startswith("-----"):
            box = not box
            continue
        if not box:
            keep.append(line)
    text = "\n".join(keep).strip()
    return text if len(text) <= 2 * n else text[:n] + "\n[...]\n" + text[-n:]


def parse(out):
    losses, params = [], None
    for line in out.splitlines():
        w = line.split()
        if len(w) == 4 and w[0] == "step" and w[2] == "loss":
            losses.append(float(w[3]))
        elif len(w) == 2 and w[0] == "params":
            params = float(w[1])
    return losses, params


def parse_state(out):
    """dist_train's optimizer state bytes: (largest on a rank, sum over
    ranks, largest one tensor's), or None."""
    st = lg = None
    for line in out.splitlines():
        w = line.split()
        if len(w) == 3 and w[0] == "state":
            st = (float(w[1]), float(w[2]))
        elif len(w) == 2 and w[0] == "largest":
            lg = float(w[1])
    return st + (lg,) if st and lg is not None else None


def close(a, b):
    return abs(a - b) <= RTOL * max(abs(a), abs(b), 1e-30)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


STEPS, BATCH = 5, 8
OPENCL = os.environ.get("CLGRAD_BACKEND") == "opencl"
refs = {}  # (model, optimizer): the plain process's (losses, params, state)
for model in ("mlp", "cnn", "lstm"):
    args = [model, str(STEPS), str(BATCH)]
    rc, out, err = run(0, args)
    ref, ref_p = parse(out)
    refs[(model, "sgd")] = (ref, ref_p, parse_state(out))
    check(rc == 0 and len(ref) == STEPS and ref_p is not None,
          "%s: one plain process trains (rc %s) %s" % (model, rc, why(err, 300)))
    if rc != 0:
        continue
    # The steps must change the model, or equal losses would prove little.
    check(not close(ref[0], ref[-1]), "%s: the loss moves (%g -> %g)" % (model, ref[0], ref[-1]))
    for np_ in (1, 2, 4):
        rc, out, err = run(np_, args)
        losses, p = parse(out)
        ok = rc == 0 and len(losses) == STEPS and p is not None
        check(ok, "%s -np %d: runs, parameters identical on every rank (rc %s) %s"
              % (model, np_, rc, why(err, 400)))
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
          "%s: status %s (want 1..127) and %r in: %s" % (what, rc, text, why(err, 600)))


# ---- ZeRO-1: the optimizer sharded over the ranks --------------------------
if OPENCL:
    SHARDED = [("mlp", "adamw", (2,)), ("cnn", "sgd", (2,)), ("lstm", "sgd", (2,))]
else:
    SHARDED = [(m, o, (2, 4)) for m in ("mlp", "cnn", "lstm") for o in ("sgd", "adamw")]
for model, opt, nps in SHARDED:
    args = [model, str(STEPS), str(BATCH), "--optim", opt]
    if (model, opt) not in refs:
        rc, out, err = run(0, args)
        refs[(model, opt)] = parse(out) + (parse_state(out),)
        check(rc == 0 and len(refs[(model, opt)][0]) == STEPS,
              "%s %s: one plain process trains (rc %s) %s" % (model, opt, rc, why(err, 300)))
    ref, ref_p, ref_st = refs[(model, opt)]
    if len(ref) != STEPS or ref_p is None or ref_st is None:
        continue
    for np_ in nps:
        rc, out, err = run(np_, args + ["--shard"])
        losses, p = parse(out)
        st = parse_state(out)
        ok = rc == 0 and len(losses) == STEPS and p is not None and st is not None
        check(ok, "%s %s -np %d --shard: runs, parameters identical on every rank (rc %s) %s"
              % (model, opt, np_, rc, why(err, 400)))
        if not ok:
            continue
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(ref, losses)) if not close(a, b)]
        check(not bad, "%s %s -np %d --shard: losses equal one process to %g (first "
              "differences %s)" % (model, opt, np_, RTOL, bad[:3]))
        # Not for the CNN with Adam: its conv bias, before BatchNorm, does
        # not change the loss, so its gradient is rounding noise that Adam
        # scales to full steps of random sign, and its value follows the
        # order of the sums (as it does between -np 2 and 4 unsharded). The
        # losses above check that model; dist_train checks that every rank
        # holds the same parameters.
        if not (model == "cnn" and opt != "sgd"):
            check(close(ref_p, p), "%s %s -np %d --shard: parameters equal one process "
                  "(%r vs %r)" % (model, opt, np_, ref_p, p))
        # Every element's state is on exactly one rank; the ranges differ
        # by at most one element (4 bytes a state buffer, at most 3).
        st_max, st_sum, _ = st
        check(st_sum == ref_st[1] and st_max <= ref_st[1] / np_ + 12,
              "%s %s -np %d --shard: optimizer state per rank 1/%d of one process's %g bytes "
              "(+ 12): largest %g, sum %g" % (model, opt, np_, np_, ref_st[1], st_max, st_sum))

expect_error(4, ["mlp", "3", "6"], "does not divide by the 4 ranks", "batch 6 on 4 ranks")
expect_error(4, ["mlp", "3", "4", "--samples", "2"], "fewer than the 4 ranks",
             "2 samples on 4 ranks")
expect_error(2, ["mlp", "3", "8", "--mismatch"], "the model differs between ranks",
             "a model that differs on rank 1")
expect_error(2, ["cnn", "4", "8", "--fail-rank", "1"], "rank 1: cannot read",
             "rank 1 failing alone")

# ---- the tools -------------------------------------------------------------
os.makedirs(WORK, exist_ok=True)
data = os.path.join(WORK, "d.csv")
rng = random.Random(5)
with open(data, "w") as f:
    f.write("a,b,c,d,label\n")
    for i in range(256):
        a, b, c, d = (rng.uniform(-1, 1) for _ in range(4))
        f.write("%.6f,%.6f,%.6f,%.6f,%s\n" % (a, b, c, d, "yes" if a + b * c > 0 else "no"))


def train_args(tag, epochs, *extra):
    # 256 rows, a quarter held out: 192 = 12 batches of 16, which 2 and 4
    # ranks share evenly, so every run takes the same steps.
    log = os.path.join(WORK, tag + ".csv")
    if os.path.exists(log):
        os.remove(log)
    return log, ["--data", data, "--target", "label", "--val-split", "0.25", "--batch", "16",
                 "--epochs", str(epochs), "--log", log] + list(extra)


def read_log(path):
    try:
        with open(path) as f:
            return [(float(r["train_loss"]), float(r["val_loss"])) for r in csv.DictReader(f)]
    except OSError:
        return []


# The log prints 6 significant digits: equal values may differ by one unit
# in the last, so compare to 2e-5 (the runs themselves agree far closer).
def close_printed(a, b):
    return abs(a - b) <= 2e-5 * max(abs(a), abs(b))


log0, args = train_args("plain", 3)
rc, out, err = run(0, args, TRAIN)
ref = ref_plain = read_log(log0)
check(rc == 0 and len(ref) == 3, "clgrad-train alone (rc %s) %s" % (rc, why(err, 300)))
for np_ in (2, 4):
    log, args = train_args("np%d" % np_, 3)
    rc, out, err = run(np_, args, TRAIN)
    got = read_log(log)
    same = len(got) == len(ref) and all(close_printed(x, y) for a, b in zip(ref, got)
                                        for x, y in zip(a, b))
    check(rc == 0 and same, "clgrad-train -np %d logs the losses of one process (rc %s): %s vs %s %s"
          % (np_, rc, got, ref, why(err, 300)))
    check(out.count("epoch  1/3") == 1 and out.count("clgrad-train: ") == 1,
          "clgrad-train -np %d: only rank 0 prints: %r" % (np_, out[-600:]))

ck = os.path.join(WORK, "ck.safetensors")
log, args = train_args("resume", 2, "--save", ck)
rc, out, err = run(4, args, TRAIN)
check(rc == 0 and os.path.exists(ck), "clgrad-train saves on 4 ranks (rc %s) %s" % (rc, why(err, 300)))
# The resumed epoch against one process resuming the same checkpoint (a
# resumed run draws its shuffles afresh from the seed, alone or not).
resumed = []
for np_ in (0, 2):
    log, args = train_args("resume%d" % np_, 3, "--resume", ck)
    rc, out, err = run(np_, args, TRAIN)
    got = read_log(log)
    check(rc == 0 and "resumed from" in out and len(got) == 1,
          "clgrad-train resumes a 4-rank checkpoint %s (rc %s): %s %s"
          % ("on 2 ranks" if np_ else "alone", rc, got, why(err, 300)))
    resumed.append(got)
check(len(resumed[0]) == 1 and len(resumed[1]) == 1 and
      all(close_printed(x, y) for x, y in zip(resumed[0][0], resumed[1][0])),
      "the epoch resumed on 2 ranks equals the one resumed alone: %s vs %s" % tuple(resumed))

# Sharded (dist_train above clips every step, so the global norm from the
# ranks' shares is checked there): the losses of one process, and a
# checkpoint saved sharded that resumes sharded on another number of ranks
# (rank 0 gathered every rank's optimizer state). The tools' part of
# sharding does not depend on the backend: cpu only, to keep the opencl
# run (PoCL under ASan) short.
if not OPENCL:
    cks = os.path.join(WORK, "cks.safetensors")
    log, args = train_args("shardsave", 2, "--save", cks, "--shard-optimizer")
    rc, out, err = run(4, args, TRAIN)
    got = read_log(log)
    same = len(got) == 2 and len(ref_plain) == 3 and all(
        close_printed(x, y) for a, b in zip(ref_plain, got) for x, y in zip(a, b))
    check(rc == 0 and os.path.exists(cks) and same,
          "clgrad-train --shard-optimizer -np 4 logs the losses of one process and saves "
          "(rc %s): %s vs %s %s" % (rc, got, ref_plain[:2], why(err, 300)))
    # Saved on 4 ranks, resumed sharded on 2, against the epoch resumed
    # alone from the unsharded 4-rank save.
    log, args = train_args("shardresume", 3, "--resume", cks, "--shard-optimizer")
    rc, out, err = run(2, args, TRAIN)
    got = read_log(log)
    check(rc == 0 and len(got) == 1 and len(resumed[0]) == 1 and
          all(close_printed(x, y) for x, y in zip(resumed[0][0], got[0])),
          "a sharded 4-rank checkpoint resumed sharded on 2 equals the unsharded one resumed "
          "alone (rc %s): %s vs %s %s" % (rc, got, resumed[0], why(err, 300)))

bad = os.path.join(WORK, "bad.safetensors")
with open(bad, "wb") as f:
    f.write(b"not a checkpoint")
log, args = train_args("bad", 2, "--resume", bad)
rc, out, err = run(2, args, TRAIN)
check(rc is not None and 0 < rc < 128 and "rank 0/2: " in err,
      "a checkpoint only rank 0 reads fails: status %s, message %s" % (rc, why(err, 400)))

cargs = ["--steps", "6", "--print-every", "3", "--sample", "0", "--batch", "8", "--seq", "16",
         "--text", data]
rc, out, err = run(0, cargs, CHARLM)
want = [l for l in out.splitlines() if l.startswith("step")]
check(rc == 0 and len(want) == 2, "clgrad-charlm alone (rc %s) %s" % (rc, why(err, 300)))
for arch in ("lstm", "transformer"):
    rc0, out0, _ = run(0, cargs + ["--arch", arch, "--dropout", "0.1"] if arch == "transformer"
                       else cargs, CHARLM)
    rc, out, err = run(4, cargs + ["--arch", arch, "--dropout", "0.1"] if arch == "transformer"
                       else cargs, CHARLM)
    a = [l.split("|")[1] for l in out0.splitlines() if l.startswith("step")]
    b = [l.split("|")[1] for l in out.splitlines() if l.startswith("step")]
    check(rc0 == 0 and rc == 0 and a and a == b,
          "clgrad-charlm %s -np 4 prints the losses of one process: %s vs %s %s"
          % (arch, b, a, why(err, 300)))

# Adam sharded, clipped to norm 1 (charlm's default), prints the same losses.
if not OPENCL:
    rc, out, err = run(4, cargs + ["--shard-optimizer"], CHARLM)
    b = [l.split("|")[1] for l in out.splitlines() if l.startswith("step")]
    a = [l.split("|")[1] for l in want]
    check(rc == 0 and a and a == b, "clgrad-charlm --shard-optimizer -np 4 prints the losses of "
          "one process: %s vs %s %s" % (b, a, why(err, 300)))

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
