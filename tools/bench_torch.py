#!/usr/bin/env python3
"""bench_torch.py — clgrad-bench's PyTorch side (clgrad-bench --compare-torch).

Runs the configurations clgrad-bench measures, in PyTorch on the cpu, and
prints them in clgrad-bench's child protocol on stdout:

    stat NAME UNIT V1 V2 ...      one value per repetition
    info KEY VALUE
    unavailable REASON            (torch cannot be imported; exit status 0)

The configurations mirror tools/clgrad-bench.c exactly: the same shapes,
batch sizes, optimizer (Adam, lr 1e-3, PyTorch defaults otherwise), synthetic
data, no host read of the loss inside the timed steps, and the same timing
method (calibrate a count to ~0.6 s per repetition, 0.15 s with --quick).
With --threads N, torch.set_num_threads(N). The environment is
clgrad-bench's choice, one run per configuration (--config names it, for
the record): torch as installed (OPENBLAS_NUM_THREADS=N beside
torch.set_num_threads(N)), and tuned environments (OPENBLAS_NUM_THREADS=1,
so OpenBLAS's own pool does not fight torch's OpenMP pool; glibc's
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ raised, so large
temporaries are not mapped and page-faulted every step; OMP_WAIT_POLICY=
PASSIVE). clgrad-bench takes the fastest per measurement.
"""
import argparse
import resource
import sys
import time


def now():
    return time.perf_counter()


def emit_stat(name, unit, values):
    print("stat %s %s %s" % (name, unit, " ".join("%.6g" % v for v in values)), flush=True)


def emit_info(key, value):
    print("info %s %s" % (key, value), flush=True)


def calibrate(fn, min_count, rep_s):
    n = min_count
    while True:
        t0 = now()
        fn(n)
        dt = now() - t0
        if dt >= 0.25 * rep_s or n >= (1 << 40):
            per = dt / n
            return max(min_count, int(rep_s / per) if per > 0 else n)
        n *= 4


def time_reps(fn, count, reps):
    secs = []
    for _ in range(reps):
        t0 = now()
        fn(count)
        secs.append(now() - t0)
    return secs


def bench_gemm(torch, args, rep_s):
    for n in (int(v) for v in args.gemm_sizes.split(",")):
        a = torch.rand(n, n) * 2 - 1
        b = torch.rand(n, n) * 2 - 1
        c = torch.empty(n, n)

        def work(count):
            for _ in range(count):
                torch.mm(a, b, out=c)

        work(1)
        count = calibrate(work, 1, rep_s)
        secs = time_reps(work, count, args.reps)
        emit_stat("gemm_%d" % n, "GFLOP/s", [2.0 * n ** 3 * count / s * 1e-9 for s in secs])


def bench_op(torch, args, rep_s):
    a = torch.tensor([1.5], requires_grad=True)
    b = torch.tensor([-0.25])

    def fwd(count):
        for _ in range(count):
            a + b

    def fwd_bwd(count):
        for _ in range(count):
            (a + b).backward()

    for name, fn in (("op_fwd", fwd), ("op_fwd_bwd", fwd_bwd)):
        count = calibrate(fn, 100, rep_s)
        secs = time_reps(fn, count, args.reps)
        emit_stat(name, "us", [s / count * 1e6 for s in secs])


VOCAB, SEQ = 65, 64


def make_seq_model(torch, name):
    nn = torch.nn

    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, 64)
            self.rnn = nn.LSTM(64, 128, 1, batch_first=True)
            self.out = nn.Linear(128, VOCAB)

        def forward(self, x):
            return self.out(self.rnn(self.emb(x))[0])

    class CharTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, 64)
            self.pos = nn.Parameter(torch.randn(SEQ, 64))
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
                for _ in range(2))
            self.out = nn.Linear(64, VOCAB)
            self.register_buffer("mask", torch.triu(torch.full((SEQ, SEQ), float("-inf")), 1))

        def forward(self, x):
            h = self.emb(x) + self.pos[: x.shape[1]]
            for b in self.blocks:
                h = b(h, src_mask=self.mask)
            return self.out(h)

    return CharLSTM() if name == "lstm" else CharTransformer()


def bench_train(torch, args, rep_s, name):
    """The models of tools/clgrad-bench.c's build_model, in PyTorch."""
    nn = torch.nn
    torch.manual_seed(1234)
    batches = 16
    seq = False
    if name == "ffn":
        batch, unit = 32, "steps/s"
        model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 1))
        xs = torch.rand(batches, batch, 10)
        ys = torch.randn(batches, batch, 1)
        loss_fn = nn.MSELoss()
    elif name == "mlp":
        batch, unit = 64, "samples/s"
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10))
        xs = torch.rand(batches, batch, 784)
        ys = torch.randint(0, 10, (batches, batch))
        loss_fn = nn.CrossEntropyLoss()
    elif name == "cnn":
        batch, unit = 64, "samples/s"
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                              nn.Linear(128, 10))
        xs = torch.rand(batches, batch, 1, 28, 28)
        ys = torch.randint(0, 10, (batches, batch))
        loss_fn = nn.CrossEntropyLoss()
    else:  # lstm, transformer: (32, 64) token ids, one target per token
        batch, unit, seq = 32, "tokens/s", True
        model = make_seq_model(torch, name)
        xs = torch.randint(0, VOCAB, (batches, batch, SEQ))
        ys = torch.randint(0, VOCAB, (batches, batch * SEQ))
        ce = nn.CrossEntropyLoss()
        loss_fn = lambda out, y: ce(out.reshape(-1, VOCAB), y)  # noqa: E731
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = {"next": 0, "loss": 0.0}

    def work(count):
        for i in range(count):
            k = state["next"] % batches
            state["next"] += 1
            loss = loss_fn(model(xs[k]), ys[k])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == count - 1:
                state["loss"] = loss.item()

    work(1)
    count = calibrate(work, 5 if args.quick else 20, rep_s)
    secs = time_reps(work, count, args.reps)
    per = 1.0 if unit == "steps/s" else float(batch * (SEQ if seq else 1))
    emit_stat(name, unit, [count * per / s for s in secs])
    # ru_maxrss is in KiB on Linux; the whole process so far (monotone).
    emit_stat(name + "_peak_rss", "MiB",
              [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--groups", default="gemm,op,ffn,mlp,cnn,lstm,transformer")
    p.add_argument("--gemm-sizes", default="256,512,1024,2048")
    p.add_argument("--config", default="", help="the environment's name, reported only")
    args = p.parse_args()
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install
        print("unavailable python3 cannot import torch (%s)" % e, flush=True)
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    emit_info("version", "PyTorch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    emit_info("device", "cpu")
    emit_info("config", args.config or "as given")
    rep_s = 0.15 if args.quick else 0.6
    for g in args.groups.split(","):
        if g == "gemm":
            bench_gemm(torch, args, rep_s)
        elif g == "op":
            bench_op(torch, args, rep_s)
        elif g in ("ffn", "mlp", "cnn", "lstm", "transformer"):
            bench_train(torch, args, rep_s, g)
        else:
            print("bench_torch.py: unknown group %s" % g, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
