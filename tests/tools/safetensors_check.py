#!/usr/bin/env python3
"""An independent safetensors reader and writer, using only json and struct.

Used by tests/test_checkpoint.c to check clgrad's files against a second
implementation of the format (huggingface.co/docs/safetensors, "Format"):

  safetensors_check.py check FILE EXPECT.json
      parses FILE strictly and compares it with EXPECT.json:
      {"metadata": {key: value, ...},            (each must be present)
       "tensors": {name: {"shape": [...], "bits": [u32, ...]}, ...}}
      (each must be present, F32, with exactly these float32 bit patterns)

  safetensors_check.py write FILE [--weights-only]
      writes what safetensors.torch.save_file would for the state_dict of
      Sequential(Linear(3, 2), ReLU(), Linear(2, 1)) with weights
      k/10 - 0.3 (k counting over 0.weight, 0.bias, 2.weight, 2.bias), and
      unless --weights-only F16, BF16 and F64 tensors "extra.*".

  safetensors_check.py eval CLGRAD_EVAL DIR
      writes a classifier and a regression checkpoint (model spec, scaler,
      class names in the metadata) and CSV files into DIR, runs clgrad-eval
      on them and compares its loss, accuracy, confusion matrix, RMSE, MAE
      and R^2 and its predictions CSV with values computed here.

Exit status 0 on success; a message on stderr and 1 otherwise.
"""
import json
import struct
import sys

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
         "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def fail(msg):
    sys.stderr.write("safetensors_check: %s\n" % msg)
    sys.exit(1)


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            fail("duplicate key %r" % k)
        d[k] = v
    return d


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("%s: shorter than 8 bytes" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        fail("%s: header length %d past the end" % (path, n))
    raw = blob[8:8 + n]
    if n % 8 != 0:
        fail("%s: header length %d is not a multiple of 8" % (path, n))
    text = raw.decode("utf-8")
    if not text.rstrip(" ").endswith("}"):
        fail("%s: padding is not spaces after the object" % path)
    header = json.loads(text, object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        fail("%s: header is not an object" % path)
    meta = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        fail("%s: metadata must map strings to strings" % path)
    buf = blob[8 + n:]
    spans = []
    tensors = {}
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            fail("%s: %s: fields %s" % (path, name, sorted(info)))
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        numel = 1
        for d in shape:
            if not isinstance(d, int) or d < 0:
                fail("%s: %s: bad shape %r" % (path, name, shape))
            numel *= d
        if dtype not in SIZES:
            fail("%s: %s: unknown dtype %s" % (path, name, dtype))
        if not (0 <= b <= e <= len(buf)) or e - b != numel * SIZES[dtype]:
            fail("%s: %s: offsets [%d, %d] do not fit shape %r %s in %d bytes"
                 % (path, name, b, e, shape, dtype, len(buf)))
        spans.append((b, e, name))
        tensors[name] = (dtype, shape, buf[b:e])
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            fail("%s: %s starts at %d, expected %d (gap or overlap)" % (path, name, b, pos))
        pos = e
    if pos != len(buf):
        fail("%s: tensors cover %d of %d buffer bytes" % (path, pos, len(buf)))
    return meta, tensors


def check(path, expect_path):
    meta, tensors = read(path)
    with open(expect_path) as f:
        expect = json.load(f)
    for k, v in expect.get("metadata", {}).items():
        if meta.get(k) != v:
            fail("metadata %s is %r, expected %r" % (k, meta.get(k), v))
    for name, want in expect["tensors"].items():
        if name not in tensors:
            fail("tensor %s is missing (have %s)" % (name, sorted(tensors)))
        dtype, shape, data = tensors[name]
        if dtype != "F32" or shape != want["shape"]:
            fail("tensor %s is %s %r, expected F32 %r" % (name, dtype, shape, want["shape"]))
        bits = list(struct.unpack("<%dI" % (len(data) // 4), data))
        if bits != want["bits"]:
            fail("tensor %s: values differ" % name)
    print("safetensors_check: %s: %d tensors, %d metadata keys OK"
          % (path, len(tensors), len(meta)))


def write(path, weights_only):
    k = 0
    tensors = []
    for name, shape in (("0.weight", [2, 3]), ("0.bias", [2]), ("2.weight", [1, 2]),
                        ("2.bias", [1])):
        n = 1
        for d in shape:
            n *= d
        vals = [j / 10.0 - 0.3 for j in range(k, k + n)]
        k += n
        tensors.append((name, "F32", shape, struct.pack("<%df" % n, *vals)))
    if not weights_only:
        tensors.append(("extra.half", "F16", [3], struct.pack("<3e", 1.0, -2.5, 2.0 ** -14)))
        bf = b"".join(struct.pack("<f", v)[2:] for v in (1.0, -3.0, 0.15625))
        tensors.append(("extra.bf16", "BF16", [3], bf))
        tensors.append(("extra.f64", "F64", [2], struct.pack("<2d", 0.1, -1e-3)))
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def save(path, tensors, meta):
    h = {"__metadata__": meta}
    off = 0
    blobs = []
    for n, shape, vals in tensors:
        d = struct.pack("<%df" % len(vals), *vals)
        h[n] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(d)]}
        off += len(d)
        blobs.append(d)
    t = json.dumps(h).encode()
    t += b" " * (-len(t) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(t)) + t + b"".join(blobs))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def run(cmd):
    import subprocess
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr))
    return r.stdout


def expect_in(out, text):
    if text not in out:
        fail("expected %r in the output:\n%s" % (text, out))


def eval_cli(exe, d):
    import math
    import os
    import random
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(1)
    names = ["cat", "dog", "eel"]
    rows = [(rnd.uniform(-2, 2), rnd.uniform(-2, 2), rnd.randrange(3)) for _ in range(50)]
    csv = os.path.join(d, "cls.csv")
    with open(csv, "w") as f:
        f.write("a,b,label\n")
        for a, b, c in rows:
            f.write("%.6f,%.6f,%s\n" % (a, b, names[c]))
    W = [[rnd.uniform(-1, 1) for _ in range(2)] for _ in range(3)]
    B = [rnd.uniform(-1, 1) for _ in range(3)]
    ck = os.path.join(d, "cls.safetensors")
    save(ck, [("0.weight", [3, 2], sum(W, [])), ("0.bias", [3], B),
              ("scaler.offset", [2], [0.5, -0.5]), ("scaler.scale", [2], [2.0, 4.0])],
         {"format": "pt", "clgrad.version": "1", "clgrad.model_spec": "linear 3",
          "clgrad.input_shape": "2", "clgrad.task": "classification", "clgrad.n_classes": "3",
          "clgrad.class_names": json.dumps(names), "scaler.kind": "standard",
          "clgrad.epoch": "7"})
    loss, correct, conf, preds = 0.0, 0, [[0] * 3 for _ in range(3)], []
    for a, b, t in rows:
        x = [(f32(float("%.6f" % a)) - 0.5) / 2, (f32(float("%.6f" % b)) + 0.5) / 4]
        z = [W[k][0] * x[0] + W[k][1] * x[1] + B[k] for k in range(3)]
        m = max(z)
        lse = m + math.log(sum(math.exp(v - m) for v in z))
        loss += lse - z[t]
        p = z.index(m)
        correct += p == t
        conf[t][p] += 1
        preds.append(p)
    pred_csv = os.path.join(d, "pred.csv")
    out = run([exe, "--checkpoint", ck, "--data", csv, "--target", "label", "--backend", "cpu",
               "--predictions", pred_csv])
    expect_in(out, "loss %.4f (cross-entropy)  accuracy %.2f%% (%d/50)"
              % (loss / 50, 100.0 * correct / 50, correct))
    for t in range(3):
        expect_in(out, "%8d %6d %6d %6d" % (t, conf[t][0], conf[t][1], conf[t][2]))
    with open(pred_csv) as f:
        lines = f.read().splitlines()
    if lines[0] != "index,target,predicted,probability" or len(lines) != 51:
        fail("predictions CSV: %r..." % lines[:2])
    for i, line in enumerate(lines[1:]):
        idx, tgt, pr, _ = line.split(",")
        if int(idx) != i or tgt != names[rows[i][2]] or pr != names[preds[i]]:
            fail("predictions CSV line %d: %r" % (i + 1, line))

    rows = [(rnd.uniform(-1, 1), rnd.uniform(-1, 1)) for _ in range(40)]
    csv = os.path.join(d, "reg.csv")
    ys, ps = [], []
    with open(csv, "w") as f:
        f.write("x1,x2,y\n")
        for a, b in rows:
            y = 3 * a - b + 0.1 * rnd.uniform(-1, 1)
            f.write("%.6f,%.6f,%.6f\n" % (a, b, y))
            ys.append(f32(float("%.6f" % y)))
            ps.append(3 * f32(float("%.6f" % a)) - f32(float("%.6f" % b)) + 0.25)
    ck = os.path.join(d, "reg.safetensors")
    save(ck, [("0.weight", [1, 2], [3.0, -1.0]), ("0.bias", [1], [0.25])],
         {"clgrad.model_spec": "linear 1", "clgrad.task": "regression"})
    n = len(ys)
    mse = sum((p - y) ** 2 for p, y in zip(ps, ys)) / n
    mae = sum(abs(p - y) for p, y in zip(ps, ys)) / n
    my = sum(ys) / n
    r2 = 1 - mse * n / sum((y - my) ** 2 for y in ys)
    out = run([exe, "--checkpoint", ck, "--data", csv, "--target", "y", "--backend", "cpu"])
    got = dict(zip(["MSE", "RMSE", "MAE", "R^2"],
                   [float(v) for v in out.split("loss (MSE) ")[1].split()[0:7:2]]))
    for k, v in (("MSE", mse), ("RMSE", math.sqrt(mse)), ("MAE", mae), ("R^2", r2)):
        if abs(got[k] - v) > 1e-4 * max(1, abs(v)):
            fail("%s is %g, expected %g:\n%s" % (k, got[k], v, out))
    r = __import__("subprocess").run([exe, "--checkpoint", os.path.join(d, "nope"), "--data", csv],
                                     stderr=__import__("subprocess").PIPE, text=True)
    if r.returncode != 1 or "No such file" not in r.stderr:
        fail("a missing checkpoint: status %d, %r" % (r.returncode, r.stderr))
    print("safetensors_check: clgrad-eval OK")


def main(argv):
    if len(argv) == 4 and argv[1] == "check":
        check(argv[2], argv[3])
    elif len(argv) in (3, 4) and argv[1] == "write":
        write(argv[2], len(argv) == 4 and argv[3] == "--weights-only")
    elif len(argv) == 4 and argv[1] == "eval":
        eval_cli(argv[2], argv[3])
    else:
        fail("usage: safetensors_check.py check FILE EXPECT.json | write FILE [--weights-only]")


if __name__ == "__main__":
    main(sys.argv)
