#!/usr/bin/env python3
"""The malformed-input matrix of issue 17, through the command-line tools:
bad CSV and IDX files, checkpoints, model specs and environment values fed
to clgrad-train and clgrad-eval. Each case must end with its expected exit
status (never a signal) and a message naming what is wrong; each prints
one table row (case, status, first line of the message), the table of the
issue's report.

usage: test_malformed_cli.py PATH/TO/clgrad-train PATH/TO/clgrad-eval
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

TRAIN, EVAL = sys.argv[1], sys.argv[2]
failures = []
rows = []


def run(tool, args, env=None):
    e = dict(os.environ)
    e.setdefault("CLGRAD_BACKEND", "cpu")
    e.update(env or {})
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=600, env=e,
                       errors="replace")
    return p.returncode, p.stderr


def case(name, tool, args, needle, rc_want=1, env=None, forbid=None):
    """rc_want 0: must succeed, with needle (a warning) on stderr; else that
    status; None: any status but a signal. A needle None checks only the
    status; forbid: a text that must not appear."""
    rc, err = run(tool, args, env)
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("epoch")]
    first = next((l for l in lines if needle and needle in l), lines[0] if lines else "")
    ok = (rc == rc_want or rc_want is None) and rc >= 0 and (needle is None or needle in err)
    ok = ok and not (forbid and forbid in err)
    # in a sanitizer build, a report is a failure whatever the status
    ok = ok and "runtime error:" not in err and "Sanitizer" not in err
    rows.append((name, rc, first.strip()[:150]))
    if not ok:
        failures.append(name)
        print(f"not ok - {name}: rc={rc} (want {rc_want}); want {needle!r}\n{err}")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def idx(type_code, dims, payload):
    return (struct.pack(">BBBB", 0, 0, type_code, len(dims)) +
            struct.pack(">%dI" % len(dims), *dims) + payload)


def idx_folder(root, name, images, labels):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    for prefix in ("train", "t10k"):
        write(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), gzip.compress(images, mtime=0))
        write(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), gzip.compress(labels, mtime=0))
    return d


def st_file(path, header, body):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return write(path, struct.pack("<Q", len(h)) + h + body)


with tempfile.TemporaryDirectory() as tmp:
    P = lambda name: os.path.join(tmp, name)
    fast = ["--epochs", "1", "--quiet", "--no-progress", "--model", "linear 4 relu, linear 2"]
    good = write(P("good.csv"), "a,b,y\n" + "".join(f"{i % 7},{i % 3},{'yes' if i % 2 else 'no'}\n"
                                                   for i in range(40)))
    ck = P("good.safetensors")
    rc, err = run(TRAIN, ["--data", good, "--target", "y", "--save", ck, *fast])
    if rc != 0:
        print(f"setup: training the good model failed: {err}")
        sys.exit(1)

    # ---- CSV ---------------------------------------------------------------------------
    def csv(name, text, needle, extra=()):
        path = write(P(name + ".csv"), text)
        case("csv: " + name, TRAIN, ["--data", path, "--target", "y", *fast, *extra], needle)

    csv("empty", b"", "empty file")
    csv("header-only", "a,b,y\n", "only a header")
    csv("ragged", "a,b,y\n1,2,3\n4,5\n", "fields")
    csv("non-numeric", "a,b,y\n1,2,x\nabc,3,y\n", "non-numeric value \"abc\"")
    csv("nan", "a,b,y\n1,nan,x\n2,3,y\n", "non-finite value")
    csv("out-of-range", "a,b,y\n1,1e39,x\n2,3,y\n", "out of float32 range")
    csv("unterminated-quote", "a,b,y\n1,\"2,x\n", "unterminated")
    csv("no-target-column", "a,b,c\n1,2,3\n", "no target column named \"y\"")
    csv("duplicate-column", "a,a,y\n1,2,3\n", "duplicate column name")
    csv("latin1-header", b"caf\xe9,b,y\n1,2,x\n3,4,y\n", ":1:1: the column name is not valid UTF-8")
    csv("latin1-class", b"a,b,y\n1,2,caf\xe9\n3,4,tea\n", ":2:3: the class name is not valid UTF-8")
    csv("nul-byte", b"a,b\x00c,y\n1,2,x\n", "a NUL byte")
    csv("missing-cell", "a,b,y\n1,,x\n3,4,y\n", "missing value in column \"b\"")
    csv("only-target", "y\n" + "x\ny\n" * 20, "no feature columns")
    csv("binary", bytes(range(256)) * 4, None)
    csv("all-missing-category", "a,c,y\n1,,0\n,red,\n5,,1\n4,,0\n", "no values in the rows kept",
        ("--missing", "mean"))
    case("csv: no-such-file", TRAIN, ["--data", P("nope.csv"), "--target", "y", *fast],
         "No such file")

    # ---- IDX ---------------------------------------------------------------------------
    img = idx(0x08, [4, 2, 2], bytes(range(16)))
    lab = idx(0x08, [4], bytes([0, 1, 2, 1]))
    flat = ["--epochs", "1", "--quiet", "--no-progress", "--model", "flatten, linear 3"]

    def idxcase(name, images, labels, needle):
        d = idx_folder(tmp, name, images, labels)
        case("idx: " + name, TRAIN, ["--data", d, *flat], needle)

    idxcase("truncated", img[:-3], lab, "truncated")
    idxcase("wrong-magic", b"\x01" + img[1:], lab, "wrong magic number")
    idxcase("nan-float", idx(0x0D, [4, 1, 2], struct.pack(">8f", 0, 1, 2, float("nan"), 4, 5, 6, 7)),
            lab, "item 1, element 1: NaN value")
    idxcase("inf-float", idx(0x0D, [4, 1, 2], struct.pack(">8f", 0, 1, 2, 3, 4, 5, float("inf"), 7)),
            lab, "item 3, element 0: infinite value")
    idxcase("huge-label", img, idx(0x0C, [4], struct.pack(">4i", 0, 1, 16000000, 2)),
            "item 2: label 16000000 is out of range")
    idxcase("negative-label", img, idx(0x09, [4], bytes([0, 1, 0xFF, 2])), "label -1 is out of range")
    idxcase("count-mismatch", img, idx(0x08, [3], bytes([0, 1, 2])), "has 3 labels but")
    idxcase("float-labels", img, idx(0x0D, [4], struct.pack(">4f", 0, 1, 2, 1)),
            "labels must be a 1-d file of integers")
    idxcase("overflowing-dims", idx(0x0E, [0x40000000, 0x40000000], b""), lab,
            "the product of the dims overflows")
    idxcase("zero-dim", idx(0x08, [0, 2, 2], b""), lab, "dim 0 is 0")

    # ---- model specs -------------------------------------------------------------------
    def spec(name, text, needle, rc=1):
        case("spec: " + name, TRAIN, ["--data", good, "--target", "y", "--epochs", "1", "--quiet",
                                      "--no-progress", "--model", text], needle, rc)

    spec("unknown-layer", "linaer 3", "linaer")
    spec("negative-size", "linear -3", "linear")
    spec("conv-on-flat", "conv 4 3, linear 2", "conv")
    spec("empty", "", None)
    spec("bad-dropout", "linear 4, dropout 1.5, linear 2", "dropout")
    spec("trailing-word", "linear 4 relu extra, linear 2", "extra")
    # Items 3 and 4 (fixed by other helpers): no crash, and a spec over 511
    # characters is not cut short silently (it used to fail at column 511
    # or train another model).
    imgs = idx_folder(tmp, "images", idx(0x08, [20, 2, 2], bytes(range(80))),
                      idx(0x08, [20], bytes(i % 3 for i in range(20))))
    for name, text in [("overflowing-pad", "conv 4 3 pad 1000000000, flatten, linear 3"),
                       ("overflowing-conv", "conv 64 3 pad 3037000499, gap, linear 3")]:
        case("spec: " + name, TRAIN, ["--data", imgs, *flat[:-2], "--model", text], None)
    case("spec: 700-chars", TRAIN, ["--data", good, "--target", "y", *fast[:-2], "--model",
                                    ", ".join(["relu"] * 115) + ", linear 2"], None, None,
         forbid="column 511")

    # ---- checkpoints (clgrad-eval) -----------------------------------------------------------
    def ckcase(name, path, needle, tool=EVAL, extra=()):
        args = (["--checkpoint", path, "--data", good, "--target", "y", *extra] if tool == EVAL
                else ["--data", good, "--target", "y", *fast, "--resume", path, *extra])
        case("checkpoint: " + name, tool, args, needle)

    raw = open(ck, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, body = json.loads(raw[8:8 + n]), raw[8 + n:]
    ckcase("missing-file", P("nope.safetensors"), "No such file")
    ckcase("truncated", write(P("trunc.safetensors"), raw[:-7]), "truncated")
    ckcase("text-file", good, "header length")
    ckcase("huge-header-length", write(P("hlen.safetensors"), struct.pack("<Q", 1 << 40) + b"{}"),
           "over the 100000000-byte limit")
    ckcase("bad-json", write(P("json.safetensors"), struct.pack("<Q", 8) + b'{"a":[1,'),
           "invalid safetensors header")
    b = bytearray(body)
    off = header["0.weight"]["data_offsets"][0]
    b[off:off + 4] = struct.pack("<f", float("nan"))
    ckcase("nan-weight", st_file(P("nan.safetensors"), header, bytes(b)),
           "tensor \"0.weight\" holds NaN at element 0")
    h2 = json.loads(json.dumps(header))
    h2["__metadata__"]["clgrad.class_names"] = "[\"a\", 1]"
    ckcase("bad-class-names", st_file(P("cls.safetensors"), h2, body), "clgrad.class_names")
    h2 = json.loads(json.dumps(header))
    h2["__metadata__"]["clgrad.model_spec"] = "linear 4 relu, linear 3"
    ckcase("spec-mismatch", st_file(P("spec.safetensors"), h2, body), "does not fit the model")
    h2 = json.loads(json.dumps(header))
    end = len(body)
    h2["junk"] = {"dtype": "F32", "shape": [1 << 28], "data_offsets": [end, end + (1 << 30)]}
    p = st_file(P("junk.safetensors"), h2, body)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) + (1 << 30))        # sparse: 1 GiB never read
    ckcase("stray-1GiB-tensor", p, "unexpected: junk")
    h2 = json.loads(json.dumps(header))
    h2["__metadata__"]["clgrad.version"] = "9"
    ckcase("future-version", st_file(P("ver.safetensors"), h2, body), "format version")
    ckcase("resume-other-model", ck, "does not fit the model", TRAIN,
           ("--model", "linear 8 relu, linear 2"))
    # the save side: a folder that does not exist, a folder as the file
    case("checkpoint: save-to-missing-folder", TRAIN,
         ["--data", good, "--target", "y", *fast, "--save", P("no/such/x.safetensors")],
         "cannot create the temporary file")
    case("checkpoint: save-to-a-folder", TRAIN,
         ["--data", good, "--target", "y", *fast, "--save", tmp + "/"], "folder")
    # a stale temporary file of a dead process goes on the next save
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = P(f".good.safetensors.tmp-{dead.pid}-0")
    write(stale, b"x")
    os.utime(stale, (1, 1))
    rc, err = run(TRAIN, ["--data", good, "--target", "y", *fast, "--save", ck])
    gone = not os.path.exists(stale)
    rows.append(("checkpoint: stale-temp-removed", rc, "removed" if gone else "still there"))
    if rc != 0 or not gone:
        failures.append("checkpoint: stale-temp-removed")
        print(f"not ok - stale temp: rc={rc}, removed={gone}\n{err}")

    # ---- environment ---------------------------------------------------------------------
    def envcase(name, env, needle, rc=0):
        case("env: " + name, TRAIN, ["--data", good, "--target", "y", *fast], needle, rc, env)

    for v in ["-1", "0", "abc", "2x"]:
        envcase(f"CLGRAD_CPU_THREADS={v}", {"CLGRAD_CPU_THREADS": v},
                f"CLGRAD_CPU_THREADS={v} is not a thread count (accepted: an integer from 1 to")
    envcase("CLGRAD_CPU_THREADS=100000", {"CLGRAD_CPU_THREADS": "100000"},
            "CLGRAD_CPU_THREADS=100000 is over the limit of")
    envcase("CLGRAD_CPU_SPIN_US=abc", {"CLGRAD_CPU_SPIN_US": "abc"},
            "CLGRAD_CPU_SPIN_US=abc is not a spin time")
    envcase("CLGRAD_CPU_SPIN_US=-5", {"CLGRAD_CPU_SPIN_US": "-5"}, "CLGRAD_CPU_SPIN_US=-5")
    envcase("CLGRAD_CPU_HANDOFF=sometimes", {"CLGRAD_CPU_HANDOFF": "sometimes"},
            "CLGRAD_CPU_HANDOFF=sometimes is not auto, always or never")
    envcase("CLGRAD_BACKEND=bogus", {"CLGRAD_BACKEND": "bogus"}, "CLGRAD_BACKEND=bogus", 1)
    envcase("CLGRAD_DEVICE=bogus", {"CLGRAD_DEVICE": "bogus"}, "CLGRAD_DEVICE", 1)
    envcase("CLGRAD_DEVICE=99", {"CLGRAD_DEVICE": "99"}, "CLGRAD_DEVICE", 1)
    envcase("CLGRAD_PLUGIN_PATH=/nonexistent", {"CLGRAD_PLUGIN_PATH": "/nonexistent"},
            "CLGRAD_PLUGIN_PATH=/nonexistent: /nonexistent is not a folder")

    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  rc  message")
    for name, rc, msg in rows:
        print(f"{name.ljust(width)}  {rc:>2}  {msg}")
    print(f"{len(rows) - len(failures)} of {len(rows)} cases as expected")
    sys.exit(1 if failures else 0)
