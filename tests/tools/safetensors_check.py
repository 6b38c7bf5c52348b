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


def main(argv):
    if len(argv) == 4 and argv[1] == "check":
        check(argv[2], argv[3])
    elif len(argv) in (3, 4) and argv[1] == "write":
        write(argv[2], len(argv) == 4 and argv[3] == "--weights-only")
    else:
        fail("usage: safetensors_check.py check FILE EXPECT.json | write FILE [--weights-only]")


if __name__ == "__main__":
    main(sys.argv)
