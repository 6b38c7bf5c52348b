#!/usr/bin/env python3
"""clgrad-train from the outside: trains on small generated data (CSV and
IDX), and turns every kind of bad input into one clear line on stderr and a
non-zero exit, never a crash. usage: test_train_cli.py PATH/TO/clgrad-train"""
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

TOOL = sys.argv[1]
failures = []
passed = 0


def run(*args):
    p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failures.append(name)
        print(f"not ok - {name}\n{detail}")


def expect_error(name, args, needle, code=1):
    rc, out, err = run(*args)
    ok = rc == code and needle in err and "Segmentation" not in err
    check(name, ok, f"rc={rc} (want {code}); stderr={err!r}; want {needle!r}")


def write(path, text):
    with open(path, "w", newline="") as f:
        f.write(text)


def idx(path, type_code, dims, data):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, type_code, len(dims)))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(bytes(data))


with tempfile.TemporaryDirectory() as tmp:
    rng = random.Random(7)
    # A learnable regression: y = 2 a - 3 b + 0.5 c + noise.
    rows = ["a,b,c,y"]
    for _ in range(400):
        a, b, c = (rng.uniform(-1, 1) for _ in range(3))
        rows.append(f"{a:.5f},{b:.5f},{c:.5f},{2*a - 3*b + 0.5*c + rng.gauss(0, 0.05):.5f}")
    reg = os.path.join(tmp, "reg.csv")
    write(reg, "\n".join(rows) + "\n")
    rc, out, err = run("--data", reg, "--target", "y", "--epochs", "30", "--lr", "0.01",
                       "--batch", "32", "--backend", "cpu")
    check("regression trains", rc == 0 and "val RMSE" in out, out + err)
    if rc == 0:
        # the last line reports the held-out test rows (--test-split 0.1)
        last = [l for l in out.splitlines() if l.startswith("test loss")][-1]
        rmse = float(last.split("test RMSE")[1].split()[0])
        check("regression learns (RMSE < 0.3)", rmse < 0.3, last)
    check("epoch line names backend and speed", "samples/s  [cpu:" in out, out)

    # A classification with string labels, quoted fields and CRLF.
    rows = ['x1,x2,"label"']
    for _ in range(300):
        x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        lab = "inside" if x1 * x1 + x2 * x2 < 0.5 else "outside"
        rows.append(f'{x1:.4f},{x2:.4f},"{lab}"')
    cls = os.path.join(tmp, "cls.csv")
    write(cls, "\r\n".join(rows) + "\r\n")
    rc, out, err = run("--data", cls, "--target", "label", "--epochs", "40", "--lr", "0.01",
                       "--model", "linear 32 tanh, linear 2", "--backend", "cpu")
    check("classification trains", rc == 0 and "val acc" in out, out + err)
    if rc == 0:
        acc = float(out.strip().splitlines()[-1].split("test acc")[1].split("%")[0])
        check("classification learns (acc > 85%)", acc > 85, out)

    # A tiny IDX data set in a folder, as Fashion-MNIST is laid out.
    d = os.path.join(tmp, "idx")
    os.mkdir(d)
    for split, n in (("train", 200), ("t10k", 50)):
        labels = [rng.randrange(3) for _ in range(n)]
        pix = []
        for lab in labels:
            img = [rng.randrange(40) for _ in range(36)]
            for k in range(12):
                img[lab * 12 + k] = 200 + rng.randrange(50)
            pix += img
        idx(os.path.join(d, f"{split}-images-idx3-ubyte.gz"), 0x08, (n, 6, 6), pix)
        idx(os.path.join(d, f"{split}-labels-idx1-ubyte.gz"), 0x08, (n,), labels)
    rc, out, err = run("--data", d, "--epochs", "5", "--model", "linear 16 relu, linear 3",
                       "--backend", "cpu")
    check("IDX folder trains and reports test accuracy", rc == 0 and "test acc" in out, out + err)
    rc, out, err = run("--data", d, "--epochs", "2", "--model",
                       "flatten, linear 16 relu, linear 3", "--backend", "cpu")
    check("explicit flatten works", rc == 0, out + err)

    # CNNs on the IDX images, seen as (1, 6, 6): the bright band's row is the class.
    rc, out, err = run("--data", d, "--epochs", "12", "--lr", "0.01", "--model",
                       "conv 8 3 pad 1 relu, maxpool 2, flatten, linear 3", "--backend", "cpu")
    check("CNN trains on IDX images", rc == 0 and "test acc" in out, out + err)
    if rc == 0:
        acc = float(out.strip().splitlines()[-1].split("test acc")[1].split("%")[0])
        check("CNN learns (test acc > 80%)", acc > 80, out)
    rc, out, err = run("--data", d, "--epochs", "2", "--model",
                       "conv 4 3 stride 1 pad 1 dilation 1 groups 1 relu, batchnorm, "
                       "avgpool 2 stride 2, dropout 0.2, conv 6 1 nobias, maxpool 2 stride 1 "
                       "dilation 2, gap, linear 3", "--backend", "cpu")
    check("every CNN layer kind trains", rc == 0 and "test acc" in out, out + err)
    rc, out, err = run("--data", d, "--epochs", "1", "--model",
                       "conv 4 3 groups 1 relu, conv 4 3 groups 2 gelu, flatten, dropout 0.5, "
                       "linear 3", "--backend", "cpu")
    check("grouped conv and dropout train", rc == 0, out + err)
    expect_error("conv on a flat CSV row",
                 ["--data", reg, "--target", "y", "--model", "conv 8 3, flatten, linear 1"],
                 "'conv' needs an image sample (C, H, W)")
    expect_error("pool that leaves no pixels names its column",
                 ["--data", d, "--model", "maxpool 2, maxpool 2, maxpool 2, flatten, linear 3"],
                 "column 23")
    expect_error("pool that leaves no pixels says so",
                 ["--data", d, "--model", "maxpool 2, maxpool 2, maxpool 2, flatten, linear 3"],
                 "no pixels")
    expect_error("conv kernel larger than the image",
                 ["--data", d, "--model", "conv 4 7, flatten, linear 3"], "does not fit the image")
    expect_error("linear after conv needs flatten",
                 ["--data", d, "--model", "conv 4 3, linear 3"], "put 'flatten' before it")
    expect_error("unknown conv option",
                 ["--data", d, "--model", "conv 4 3 padd 1, flatten, linear 3"], "unexpected 'padd'")
    expect_error("bad groups", ["--data", d, "--model", "conv 4 3 groups 3, flatten, linear 3"],
                 "groups 3 must divide")
    expect_error("bad dropout", ["--data", d, "--model", "flatten, dropout 2, linear 3"],
                 "probability in [0, 1]")
    expect_error("CNN without flatten does not fit the data",
                 ["--data", d, "--model", "conv 3 6"], "does not fit the data")

    # Regression targets in large units train with the default settings (targets
    # standardized on the training split), and RMSE is reported in those units.
    rows = ["x1,x2,kind,price"]
    for i in range(600):
        x1, x2 = rng.uniform(0, 10), rng.uniform(-1, 1)
        kind = rng.choice(["a", "b", "c"])
        price = 50000 * x1 + 20000 * x2 + {"a": 0, "b": 100000, "c": -50000}[kind] + rng.gauss(0, 10000)
        cell = "" if i % 97 == 5 else f"{x2:.4f}"
        rows.append(f"{x1:.4f},{cell},{kind},{price:.0f}")
    price = os.path.join(tmp, "price.csv")
    write(price, "\n".join(rows) + "\n")
    expect_error("missing cells name the option that handles them",
                 ["--data", price, "--target", "price"], "--missing drop, mean or zero")
    rc, out, err = run("--data", price, "--target", "price", "--missing", "mean", "--epochs", "30",
                       "--backend", "cpu")
    ok = rc == 0 and "val RMSE" in out
    if ok:
        rmse = float(out.strip().splitlines()[-1].split("test RMSE")[1].split()[0])
        ok = 5000 < rmse < 40000   # the noise is 10000; the targets' spread ~170000
    check("standardized regression targets: RMSE in the target's units", ok, out + err)

    # Bad input: each one line, non-zero exit.
    expect_error("unknown layer", ["--data", reg, "--target", "y", "--model", "linear 8, conv2 3"],
                 "unknown layer 'conv2'")
    expect_error("unknown layer names its column",
                 ["--data", reg, "--target", "y", "--model", "linear 8, conv2 3"], "column 11")
    expect_error("shapes that do not connect",
                 ["--data", reg, "--target", "y", "--model", "linear 8 relu, linear 3"],
                 "does not fit the data")
    expect_error("linear after an image needs flatten",
                 ["--data", d, "--model", "relu, linear 3"], "put 'flatten' before it")
    expect_error("bad layer argument", ["--data", reg, "--target", "y", "--model", "linear x"],
                 "positive output size")
    expect_error("missing target column", ["--data", reg, "--target", "nope"], "nope")
    expect_error("CSV without --target", ["--data", reg], "--target", code=2)
    ragged = os.path.join(tmp, "ragged.csv")
    write(ragged, "a,b,y\n1,2,3\n4,5\n")
    expect_error("ragged CSV names file and line", ["--data", ragged, "--target", "y"],
                 "ragged.csv:3")
    bad = os.path.join(tmp, "bad.csv")
    write(bad, "a,b,y\n1,2,3\n4,zz,5\n")
    expect_error("non-numeric cell names line and column", ["--data", bad, "--target", "y"],
                 "bad.csv:3:2")
    empty = os.path.join(tmp, "empty.csv")
    write(empty, "")
    expect_error("empty CSV", ["--data", empty, "--target", "y"], "empty.csv")
    expect_error("missing file", ["--data", os.path.join(tmp, "none.csv"), "--target", "y"],
                 "none.csv")
    trunc = os.path.join(tmp, "trunc")
    os.mkdir(trunc)
    idx(os.path.join(trunc, "train-images-idx3-ubyte.gz"), 0x08, (10, 6, 6), [1] * 100)
    idx(os.path.join(trunc, "train-labels-idx1-ubyte.gz"), 0x08, (10,), [1] * 10)
    expect_error("truncated IDX", ["--data", trunc], "truncated")
    expect_error("unknown option", ["--data", reg, "--bogus", "1"], "unknown option '--bogus'",
                 code=2)
    expect_error("bad number", ["--data", reg, "--target", "y", "--lr", "abc"], "--lr", code=2)
    expect_error("unknown backend", ["--data", reg, "--target", "y", "--backend", "nosuch"],
                 "available backends: cpu")
    expect_error("bce needs two classes", ["--data", reg, "--target", "y", "--loss", "bce"],
                 "two classes")

    # Checkpoints, logs, plots, schedules (issue 7).
    import csv as csvmod
    import json
    import signal
    import time
    import xml.etree.ElementTree as ET

    def tensors(path):
        """name -> raw bytes of every tensor in a safetensors file."""
        with open(path, "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        return {k: raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]]
                for k, v in header.items() if k != "__metadata__"}

    common = ["--data", reg, "--target", "y", "--lr", "0.01", "--batch", "32", "--seed", "3",
              "--backend", "cpu", "--model", "linear 16 relu, linear 1"]
    full = os.path.join(tmp, "full.safetensors")
    log = os.path.join(tmp, "m.csv")
    svg = os.path.join(tmp, "curves.svg")
    rc, out, err = run(*common, "--epochs", "6", "--save", full, "--log", log, "--plot", svg,
                       "--schedule", "cosine", "--warmup", "5", "--clip-grad", "1.0")
    check("train with --save --log --plot --schedule --clip-grad", rc == 0, out + err)
    if rc == 0:
        with open(log) as f:
            rows = list(csvmod.DictReader(f))
        check("--log has one row per epoch",
              len(rows) == 6 and set(rows[0]) >= {"epoch", "train_loss", "val_loss", "val_rmse",
                                                  "lr", "samples_per_s", "seconds"}, rows)
        lrs = [float(r["lr"]) for r in rows]
        check("cosine schedule decays the lr", lrs[-1] < 0.002 and lrs[0] > lrs[-1], lrs)
        root = ET.parse(svg).getroot()
        check("--plot writes an SVG with curves",
              root.tag.endswith("svg") and len(root.findall(".//{*}polyline")) >= 2, svg)
        # A checkpoint per 3 epochs ({epoch} in the name); resuming the 6-epoch run from
        # epoch 3 ends with exactly the weights of the uninterrupted run.
        pat = os.path.join(tmp, "ck-{epoch}.safetensors")
        args = common + ["--epochs", "6", "--schedule", "cosine", "--warmup", "5",
                         "--clip-grad", "1.0"]
        rc1, o1, e1 = run(*args, "--save", pat, "--save-every", "3")
        ck3, ck6 = pat.replace("{epoch}", "3"), pat.replace("{epoch}", "6")
        check("--save with {epoch} keeps one file per save",
              rc1 == 0 and os.path.exists(ck3) and os.path.exists(ck6), e1)
        check("same seed, same weights", tensors(ck6) == tensors(full), e1)
        resumed = os.path.join(tmp, "resumed.safetensors")
        rc2, o2, e2 = run(*args, "--resume", ck3, "--save", resumed)
        check("resumed run equals the uninterrupted one, bit for bit",
              rc2 == 0 and "resumed from" in o2 and tensors(resumed) == tensors(ck6), o2 + e2)
    # Plots (issue 19): round ticks (1-2-5 steps), one panel without a
    # validation set, a point for a single epoch.
    import math

    def ticks(root, cls):
        """the labels of class cls, a list per panel"""
        panels = []
        for t in root.iter():
            if t.get("class") == "frame":
                panels.append([])
            elif t.get("class") == cls:
                panels[-1].append(t.text)
        return panels

    def round_steps(labels):
        vals = [float(v.rstrip("%")) for v in labels]
        if len(vals) < 2:
            return False
        step = vals[1] - vals[0]
        mant = step / 10 ** math.floor(math.log10(step))
        return (any(abs(mant - m) < 1e-6 for m in (1, 2, 5)) and
                all(abs(b - a - step) < 1e-6 * max(1, step) for a, b in zip(vals, vals[1:])) and
                all(abs(v / step - round(v / step)) < 1e-6 for v in vals))

    for epochs, extra in (("6", []), ("1", []), ("4", ["--val-split", "0"])):
        svg2 = os.path.join(tmp, f"plot{epochs}{len(extra)}.svg")
        rc, out, err = run(*common, "--epochs", epochs, "--plot", svg2, "--quiet", *extra)
        root = ET.parse(svg2).getroot() if rc == 0 else None
        what = f"--plot after {epochs} epoch(s){' without validation' if extra else ''}"
        check(what + ": round y ticks", root is not None
              and all(round_steps(p) for p in ticks(root, "ytick")),
              ticks(root, "ytick") if root is not None else err)
        if root is None:
            continue
        frames = [r for r in root.iter() if r.get("class") == "frame"]
        xt = ticks(root, "xtick")
        if extra:
            check(what + ": one panel, no validation", len(frames) == 1
                  and root.get("width") == "480" and b"validation" not in open(svg2, "rb").read(),
                  open(svg2).read())
        else:
            check(what + ": two panels", len(frames) == 2, len(frames))
        if epochs == "1":
            fr = frames[0]
            mid = float(fr.get("x")) + float(fr.get("width")) / 2
            cx = [float(c.get("cx")) for c in root.findall(".//{*}circle")]
            check(what + ": one epoch tick and a point per series, mid-panel",
                  xt == [["1"], ["1"]] and len(cx) == 3 and all(abs(x - mid) < 1 for x in cx[:2]),
                  (xt, open(svg2).read()))
        else:
            check(what + ": integer epoch ticks",
                  xt and all(p and all(t.isdigit() for t in p) for p in xt), xt)

    # The step schedule.
    step_log = os.path.join(tmp, "step.csv")
    rc, out, err = run(*common, "--epochs", "4", "--schedule", "step", "--step-size", "2",
                       "--gamma", "0.5", "--log", step_log)
    if rc == 0:
        with open(step_log) as f:
            lrs = [float(r["lr"]) for r in csvmod.DictReader(f)]
        check("step schedule halves the lr every 2 epochs",
              [round(x, 6) for x in lrs] == [0.01, 0.01, 0.005, 0.005], lrs)
    else:
        check("step schedule runs", False, err)

    # Ctrl-C saves a checkpoint and exits cleanly; --resume continues from it.
    rows = ["a,b,y"]
    for _ in range(20000):
        a_, b_ = rng.uniform(-1, 1), rng.uniform(-1, 1)
        rows.append(f"{a_:.4f},{b_:.4f},{a_ - b_:.4f}")
    big = os.path.join(tmp, "big.csv")
    write(big, "\n".join(rows) + "\n")
    ck = os.path.join(tmp, "int.safetensors")
    proc = subprocess.Popen([TOOL, "--data", big, "--target", "y", "--epochs", "1000",
                             "--batch", "8", "--save", ck, "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    while first and not first.startswith("epoch"):
        first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    check("Ctrl-C exits 130 and says it saved", proc.returncode == 130 and "saved" in err,
          f"rc={proc.returncode} {err}")
    rc, out, err = run("--data", big, "--target", "y", "--epochs", "2", "--batch", "256",
                       "--resume", ck, "--backend", "cpu")
    check("--resume continues after the saved epoch",
          rc == 0 and "resumed from" in out and "epoch  2/2" in out, out + err)

    # Early stopping on a target that cannot be learned.
    rows = ["a,y"] + [f"{rng.uniform(-1, 1):.4f},{rng.gauss(0, 1):.4f}" for _ in range(200)]
    noise = os.path.join(tmp, "noise.csv")
    write(noise, "\n".join(rows) + "\n")
    rc, out, err = run("--data", noise, "--target", "y", "--epochs", "60", "--lr", "0.05",
                       "--early-stop", "2", "--backend", "cpu", "--val-split", "0.3")
    n_epochs = sum(1 for l in out.splitlines() if l.startswith("epoch"))
    check("early stopping stops early", rc == 0 and "early stop" in out and n_epochs < 60,
          out + err)
    expect_error("bad schedule", ["--data", reg, "--target", "y", "--schedule", "wavy"],
                 "--schedule", code=2)
    expect_error("resume from a missing file",
                 ["--data", reg, "--target", "y", "--resume", os.path.join(tmp, "no.st")],
                 "no.st")
    expect_error("resume into another model",
                 ["--data", reg, "--target", "y", "--resume", full, "--model", "linear 8, linear 1"],
                 "shape mismatch")

    # A model trained on a text feature evaluates a file with fewer of its
    # categories, another column order and an extra column (the checkpoint's
    # csv.columns layout conforms it), and names a category it never saw.
    rows = ["shade,x,label"]
    for i in range(300):
        shade = ["dark", "light", "mid"][i % 3]
        x = rng.uniform(-1, 1)
        rows.append(f"{shade},{x:.4f},{'yes' if (shade == 'dark') != (x > 0) else 'no'}")
    shades = os.path.join(tmp, "shades.csv")
    write(shades, "\n".join(rows) + "\n")
    shade_ck = os.path.join(tmp, "shades.safetensors")
    rc, out, err = run("--data", shades, "--target", "label", "--epochs", "40", "--lr", "0.02",
                       "--model", "linear 16 relu, linear 2", "--save", shade_ck,
                       "--backend", "cpu", "--quiet")
    check("trains on a text feature", rc == 0, out + err)
    rows = ["note,label,x,shade"] + [f"n,{'yes' if x > 0 else 'no'},{x:.3f},light"
                                     for x in (-0.9, -0.5, 0.4, 0.8)]
    subset = os.path.join(tmp, "subset.csv")
    write(subset, "\n".join(rows) + "\n")
    ev = os.path.join(os.path.dirname(TOOL), "clgrad-eval")
    p = subprocess.run([ev, "--checkpoint", shade_ck, "--data", subset, "--target", "label",
                        "--backend", "cpu"], capture_output=True, text=True, timeout=120)
    acc = [l for l in p.stdout.splitlines() if "accuracy" in l]
    check("eval conforms a file with fewer categories to the training layout",
          p.returncode == 0 and acc and "100.0" in acc[0], p.stdout + p.stderr)
    write(subset, "shade,x,label\npurple,0.5,yes\n")
    p = subprocess.run([ev, "--checkpoint", shade_ck, "--data", subset, "--target", "label",
                        "--backend", "cpu"], capture_output=True, text=True, timeout=120)
    check("eval names a category the model never saw",
          p.returncode == 1 and 'category "purple" was not seen in training' in p.stderr,
          p.stdout + p.stderr)

    # Issue 17 item 4: user input longer than the fixed buffers the tools
    # had (a 512-byte model spec, 1024-byte IDX paths) is used whole.
    long_spec = ", ".join(["linear 4 relu"] * 45 + ["linear 1"])
    long_ck = os.path.join(tmp, "long.safetensors")
    rc, out, err = run("--data", reg, "--target", "y", "--epochs", "1", "--model", long_spec,
                       "--save", long_ck, "--backend", "cpu")
    # 3*4+4, then 44 x (4*4+4), then 4+1 parameters
    check("a --model of 600+ characters trains whole", len(long_spec) > 600 and rc == 0
          and f"{16 + 44 * 20 + 5} parameters" in out, out + err)
    if rc == 0:
        with open(long_ck, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n))["__metadata__"]
        check("the checkpoint stores the whole spec", meta.get("clgrad.model_spec") == long_spec,
              meta.get("clgrad.model_spec"))
    deep = os.path.join(tmp, *(["d" * 200] * 6))
    os.makedirs(deep)
    for name in os.listdir(d):
        os.symlink(os.path.join(d, name), os.path.join(deep, name))
    rc, out, err = run("--data", deep, "--epochs", "1", "--model", "linear 3",
                       "--save", long_ck, "--backend", "cpu")
    check("an IDX folder path of 1200+ characters loads", len(deep) > 1200 and rc == 0
          and "test acc" in out, out + err)
    ev = os.path.join(os.path.dirname(TOOL), "clgrad-eval")
    p = subprocess.run([ev, "--checkpoint", long_ck, "--data", deep, "--backend", "cpu"],
                       capture_output=True, text=True, timeout=120)
    check("clgrad-eval loads the same long IDX path", p.returncode == 0 and deep in p.stdout,
          p.stdout + p.stderr)

    # Fine-tuning and export (issue 19): --init takes the weights of a file
    # as PyTorch's save_file(model.state_dict()) writes it (written here by
    # the independent writer); an epoch at lr 0 leaves them as they were,
    # and --save-weights writes exactly the state_dict (names, shapes, F32,
    # nothing else), which load_state_dict(strict=True) accepts.
    here = os.path.dirname(os.path.abspath(__file__))
    torch_file = os.path.join(tmp, "torch_sd.safetensors")
    subprocess.run([sys.executable, os.path.join(here, "safetensors_check.py"), "write",
                    torch_file, "--weights-only"], check=True)
    exported = os.path.join(tmp, "exported.safetensors")
    mlp = ["--data", reg, "--target", "y", "--model", "linear 2 relu, linear 1",
           "--backend", "cpu", "--epochs", "1"]
    rc, out, err = run(*mlp, "--init", torch_file, "--lr", "0", "--save-weights", exported)
    check("--init from a PyTorch state_dict file", rc == 0 and "initialised the weights from"
          in out, out + err)
    if rc == 0:
        check("--init then an lr 0 epoch: --save-weights gives the same weights back",
              tensors(exported) == tensors(torch_file), err)
        with open(exported, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        weights = {k: (v["dtype"], v["shape"]) for k, v in hdr.items() if k != "__metadata__"}
        check("--save-weights holds exactly the state_dict",
              weights == {"0.weight": ("F32", [2, 3]), "0.bias": ("F32", [2]),
                          "2.weight": ("F32", [1, 2]), "2.bias": ("F32", [1])}, weights)
    rc, out, err = run(*mlp, "--lr", "0.01", "--save", os.path.join(tmp, "ft.safetensors"))
    rc2, out2, err2 = run(*mlp, "--init", os.path.join(tmp, "ft.safetensors"))
    check("--init from a full clgrad checkpoint (optimizer and scaler inside)", rc == 0
          and rc2 == 0, out + err + out2 + err2)
    expect_error("--init into another shape lists the mismatch",
                 ["--data", reg, "--target", "y", "--model", "linear 5 relu, linear 1",
                  "--init", torch_file], "0.weight is (2, 3) in the file, (5, 3) in the model")
    expect_error("--init and --resume exclude each other",
                 ["--data", reg, "--target", "y", "--init", torch_file, "--resume", torch_file],
                 "exclude each other", code=2)
    # BatchNorm: running statistics and num_batches_tracked are exported, and
    # PyTorch's int64 counter is read back.
    bn = ["--data", d, "--epochs", "1", "--batch", "16", "--backend", "cpu", "--model",
          "conv 4 3 pad 1, batchnorm, relu, flatten, linear 3"]
    rc, out, err = run(*bn, "--save-weights", exported)
    if rc == 0:
        with open(exported, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        keys = sorted(k for k in hdr if k != "__metadata__")
        check("--save-weights of a BatchNorm model: torch's state_dict keys",
              keys == sorted(["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                              "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"])
              and hdr["1.num_batches_tracked"]["shape"] == [], keys)
        # the same file with the counter as I64, as torch writes it
        raw = open(exported, "rb").read()
        base = 8 + n
        body = {k: raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]]
                for k, v in hdr.items() if k != "__metadata__"}
        count = struct.unpack("<f", body["1.num_batches_tracked"])[0]
        body["1.num_batches_tracked"] = struct.pack("<q", int(count))
        h2, blob, off = {}, b"", 0
        for k in keys:
            dt = "I64" if k.endswith("num_batches_tracked") else "F32"
            h2[k] = {"dtype": dt, "shape": hdr[k]["shape"],
                     "data_offsets": [off, off + len(body[k])]}
            blob += body[k]
            off += len(body[k])
        js = json.dumps(h2).encode()
        js += b" " * (-len(js) % 8)
        i64 = os.path.join(tmp, "i64.safetensors")
        with open(i64, "wb") as f:
            f.write(struct.pack("<Q", len(js)) + js + blob)
        rc, out, err = run(*bn, "--init", i64)
        check("--init reads PyTorch's int64 num_batches_tracked", rc == 0, out + err)
    else:
        check("BatchNorm model trains", False, out + err)

    rc, out, err = run("--help")
    opts = ["--data", "--target", "--task", "--delimiter", "--missing", "--scale",
            "--val-split", "--model", "--loss", "--label-smoothing", "--optim", "--lr",
            "--momentum", "--weight-decay", "--batch", "--epochs", "--seed", "--backend",
            "--device", "--progress", "--quiet", "--schedule", "--step-size", "--gamma",
            "--warmup", "--clip-grad", "--early-stop", "--save", "--save-every", "--save-best",
            "--resume", "--log", "--plot", "--scale-target", "--init", "--save-weights",
            "--test-split", "--skip-rows", "--no-header", "--drop", "--features", "--keep",
            "--threads", "--version"]
    check("--help documents every option", rc == 0 and all(o in out for o in opts),
          [o for o in opts if o not in out])

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
