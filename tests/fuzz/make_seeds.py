#!/usr/bin/env python3
"""Writes the plain-file seeds of the fuzz corpus (tests/fuzz/corpus/):
small valid and invalid CSV, IDX, model-spec and safetensors inputs, each
with the mode bytes its target reads first (see tests/fuzz/fuzz_*.c), and
broken variants of the checkpoint seeds that make_seeds.c writes (run that
first). Deterministic: re-running rewrites the same bytes.

    build/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus/checkpoint
    python3 tests/fuzz/make_seeds.py tests/fuzz/corpus
"""
import gzip
import json
import os
import struct
import sys

root = sys.argv[1]


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)


# ---- CSV: byte 0 options, byte 1 target (fuzz_csv.c) -------------------------
# byte 0: bits 0-1 delimiter (, ; tab |), bits 2-3 task (auto, regression,
# classification), bits 4-5 missing (error, drop, mean, constant), bit 6
# reject_categorical. byte 1: bits 0-2 target (none, y, label, species, a, b,
# "", target).
# byte 1 also: bit 3 skip_rows 1, bit 4 no_header, bit 5 drop "b", bit 6
# features "a,c", bit 7 keep "c".
def csv(name, text, delim=0, task=0, missing=0, reject=0, target=0, flags=0):
    o = delim | task << 2 | missing << 4 | reject << 6
    put("csv", name, bytes([o, target | flags]) + (text.encode() if isinstance(text, str) else text))

iris = b"sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n6.3,6.0,virginica\n4.9,1.5,setosa\n"
csv("iris", iris, target=3)
csv("iris-classify", iris, task=2, target=3)
csv("regression", b"a,b,y\n1,2,3.5\n-1e3,0.25,7\n4,5,6\n", task=1, target=1)
csv("no-target", b"a,b\n1,2\n3,4\n", target=0)
csv("categorical", b"color,size,label\nred,1,yes\nblue,2,no\nred,3,yes\n\"gr,een\",4,no\n", target=2)
csv("quoted", b'\xef\xbb\xbfa,"b ""x""",y\r\n1,"2",cat\r\n3,4,"dog\nhouse"\r\n', target=1)
csv("semicolon", b"a;b;y\n1,5;2;0\n3;4;1\n", delim=1, target=1)
csv("tab", b"a\tb\ty\n1\t2\t0\n3\t4\t1\n", delim=2, target=1)
csv("missing-mean", b"a,b,y\n1,,0\n,4,1\nNA,N/A,1\n5,6,\n", missing=2, target=1)
csv("missing-drop", b"a,b,y\n1,,0\n3,4,1\n5,6,\n", missing=1, target=1)
csv("missing-const", b"a,c,y\n1,,0\n,x,1\n", missing=3, target=1)
csv("numeric-classes", b"a,y\n1,3\n2,10\n3,2\n", task=2, target=1)
csv("reject-cat", b"a,b,y\n1,x,0\n", reject=1, target=1)
csv("utf8", b"caf\xc3\xa9,th\xc3\xa9,y\n1,2,\xe6\x97\xa5\n3,4,\xe2\x82\xac\n", target=1)
csv("skip-rows", b"# exported by a tool\na,b,y\n1,2,x\n3,4,y\n", target=1, flags=1 << 3)
csv("no-header", b"1.5,a\n2.5,b\n3.5,a\n", target=7, flags=1 << 4)
csv("drop-features-keep", b"a,b,c,y\n1,u,p,0\n2,v,q,1\n3,w,r,0\n", target=1,
    flags=1 << 5 | 1 << 6 | 1 << 7)
csv("target-last", b"a,b,t\n1,2,x\n3,4,y\n", target=6)
csv("dates", b"d,a,y\n2024-01-05,1,x\n2024-02-10,2,y\n2024-03-15,3,x\n", target=1)
csv("id-column", b"id,a,y\nk1,1,x\nk2,2,y\nk3,3,x\nk4,4,y\nk5,5,x\n", target=1)
# invalid
csv("bad-latin1-header", b"caf\xe9,b,y\n1,2,a\n", target=1)
csv("bad-latin1-class", b"a,y\n1,caf\xe9\n2,tea\n", target=1)
csv("bad-ragged", b"a,b,y\n1,2\n", target=1)
csv("bad-nonnumeric", b"a,y\n1,0\nabc,1\n", target=1)
csv("bad-nan", b"a,y\nnan,0\n", target=1)
csv("bad-inf", b"a,y\n1e39,0\n", target=1)
csv("bad-quote", b'a,y\n"1,0\n', target=1)
csv("bad-empty", b"", target=1)
csv("bad-header-only", b"a,b,y\n", target=1)
csv("bad-no-target", b"a,b\n1,2\n", target=1)
csv("bad-dup", b"a,a,y\n1,2,3\n", target=1)
csv("bad-only-target", b"y\n1\n2\n", task=2, target=1)

# ---- IDX: byte 0 mode, bytes 1-2 split (fuzz_idx.c) --------------------------
def idx(type_, dims, payload):
    return struct.pack(">BBBB", 0, 0, type_, len(dims)) + struct.pack(">%dI" % len(dims), *dims) + payload

def idx_seed(name, data, gz=0, pair=0, scale=0, cut=0):
    put("idx", name, bytes([gz | pair << 1 | scale << 2, cut & 255, cut >> 8]) + data)

img = idx(0x08, [3, 2, 2], bytes(range(0, 240, 20)))
lab = idx(0x08, [3], bytes([0, 2, 1]))
idx_seed("u8-images", img)
idx_seed("u8-images-gz", img, gz=1)
idx_seed("gz-file", gzip.compress(img, mtime=0))
idx_seed("pair", img + lab, pair=1, scale=1, cut=len(img))
idx_seed("pair-gz", img + lab, gz=1, pair=1, cut=len(img))
idx_seed("i8", idx(0x09, [2, 2], bytes([0x80, 0x7f, 1, 0xff])))
idx_seed("i16", idx(0x0B, [2], struct.pack(">hh", -300, 300)))
idx_seed("i32-labels", idx(0x08, [2, 1], b"\x01\x02") + idx(0x0C, [2], struct.pack(">ii", 5, 0)),
         pair=1, cut=10)
idx_seed("f32", idx(0x0D, [2, 2], struct.pack(">4f", 0.5, -1, 3e38, 0)))
idx_seed("f64", idx(0x0E, [2], struct.pack(">2d", 1.5, -2.25)))
idx_seed("f32-pair", idx(0x0D, [2, 1, 2], struct.pack(">4f", 1, 2, 3, 4)) + idx(0x08, [2], b"\x00\x01"),
         pair=1, cut=20)
# invalid
idx_seed("bad-f32-nan", idx(0x0D, [2, 2], struct.pack(">4f", 0.5, float("nan"), 1, 0)))
idx_seed("bad-f32-inf", idx(0x0D, [2], struct.pack(">2f", float("inf"), 0)))
idx_seed("bad-f64-big", idx(0x0E, [1], struct.pack(">d", 1e300)))
idx_seed("bad-label-huge", idx(0x08, [1, 1], b"\x00") + idx(0x0C, [1], struct.pack(">i", 16000000)),
         pair=1, cut=9)
idx_seed("bad-label-negative", idx(0x08, [1, 1], b"\x00") + idx(0x09, [1], b"\xff"), pair=1, cut=9)
idx_seed("bad-magic", b"\x01\x02\x03\x04" + b"\x00" * 8)
idx_seed("bad-type", struct.pack(">BBBB", 0, 0, 0x0A, 1) + struct.pack(">I", 1) + b"\x00")
idx_seed("bad-truncated", idx(0x08, [10, 10], b"\x00" * 50))
idx_seed("bad-trailing", idx(0x08, [2], b"\x00" * 3))
idx_seed("bad-zero-dim", idx(0x08, [0, 2], b""))
idx_seed("bad-overflow", idx(0x08, [0xFFFFFFFF] * 4, b""))
idx_seed("bad-truncated-gz", gzip.compress(idx(0x08, [100], b"\x00" * 100), mtime=0)[:30])
idx_seed("bad-pair-count", img + idx(0x08, [2], b"\x00\x01"), pair=1, cut=len(img))
idx_seed("bad-pair-float-labels", img + idx(0x0D, [3], struct.pack(">3f", 0, 1, 2)), pair=1, cut=len(img))

# ---- model specs: byte 0 input shape (16) (1,8,8) (3,6,5) (4,6) --------------
def spec(name, which, text):
    put("spec", name, bytes([which]) + text.encode())

spec("mlp", 0, "linear 32 relu, linear 16 tanh, linear 3")
spec("cnn", 1, "conv 4 3 pad 1 relu, maxpool 2, conv 8 3 pad 1 gelu, maxpool 2, flatten, linear 10")
spec("cnn-options", 2, "conv 6 3 stride 2 pad 1 dilation 1 groups 3 nobias, batchnorm, relu, "
     "avgpool 2 stride 1, gap, dropout 0.5, linear 4 sigmoid softmax")
spec("flat", 3, "flatten, linear 5")
spec("dilated", 1, "conv 2 3 dilation 2, maxpool 2 stride 1 pad 1 dilation 1, flatten, linear 2")
spec("bad-kind", 0, "linaer 3")
spec("bad-number", 0, "linear -3")
spec("bad-conv-flat", 0, "conv 4 3")
spec("bad-kernel", 1, "conv 4 9")
spec("bad-empty", 0, "")
spec("bad-commas", 0, "linear 3,, linear 2")
spec("bad-groups", 2, "conv 4 3 groups 2")
spec("bad-dropout", 0, "dropout 1.5")
spec("bad-trailing", 0, "linear 3 relu extra")

# ---- safetensors --------------------------------------------------------------
def st(header, body, pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body

f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
put("safetensors", "f32", st({"__metadata__": {"format": "pt"},
                              "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
put("safetensors", "mixed", st({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                                "b": {"dtype": "BF16", "shape": [], "data_offsets": [4, 6]},
                                "c": {"dtype": "F64", "shape": [1], "data_offsets": [6, 14]},
                                "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [14, 14]}},
                               struct.pack("<2H", 0x3C00, 0x7C00) + struct.pack("<H", 0x3F80) +
                               struct.pack("<d", 0.1)))
put("safetensors", "unicode", st({"__metadata__": {"caf\u00e9": "\u65e5\u672c"},
                                  "\u00e9": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                                 f32[:4]))
put("safetensors", "empty", st({}, b""))
put("safetensors", "bad-overlap", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                     f32[:12]))
put("safetensors", "bad-gap", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, f32[:8]))
put("safetensors", "bad-dtype", st({"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}, f32[:4]))
put("safetensors", "bad-shape", st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32[:8]))
put("safetensors", "bad-utf8", struct.pack("<Q", 8) + b'{"\xe9":1}' [:8] + b"")
put("safetensors", "bad-json", struct.pack("<Q", 8) + b'{"a":[1,')
put("safetensors", "bad-length", struct.pack("<Q", 1 << 40) + b"{}")
put("safetensors", "bad-dup", struct.pack("<Q", 96) + (b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
                                                       b'"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}').ljust(96) + f32[:8])
put("safetensors", "bad-truncated", b"\x10\x00\x00")

# ---- checkpoints: variants of make_seeds.c's valid files -----------------------
ckdir = os.path.join(root, "checkpoint")

def parse(raw):
    n = struct.unpack("<Q", raw[1:9])[0]
    return raw[0], json.loads(raw[9:9 + n]), raw[9 + n:]

def build(mode, header, body):
    return bytes([mode]) + st(header, body)

src = os.path.join(ckdir, "valid-full-0")
if os.path.exists(src):
    mode, h, body = parse(open(src, "rb").read())
    # A NaN weight: the first float of 0.weight.
    b = bytearray(body)
    off = h["0.weight"]["data_offsets"][0]
    b[off:off + 4] = struct.pack("<f", float("nan"))
    put("checkpoint", "bad-nan-weight", build(mode, h, bytes(b)))
    # A NaN in the optimizer state.
    b = bytearray(body)
    off = h["optim.0.weight.exp_avg"]["data_offsets"][0]
    b[off:off + 4] = struct.pack("<f", float("inf"))
    put("checkpoint", "bad-inf-optim", build(mode, h, bytes(b)))
    # Class names that are not valid JSON strings, and a broken scaler.
    for key, val, name in [("clgrad.class_names", '["a"]', "bad-class-count"),
                           ("clgrad.class_names", '["a", 1]', "bad-class-json"),
                           ("clgrad.rng", "0,0,0,0", "bad-rng"),
                           ("clgrad.input_shape", "1,,2", "bad-input-shape"),
                           ("optim.group.0", "lr=nan", "bad-group"),
                           ("clgrad.version", "2", "bad-version"),
                           ("scaler.kind", "robust", "bad-scaler-kind")]:
        h2 = json.loads(json.dumps(h))
        h2["__metadata__"][key] = val
        put("checkpoint", name, build(mode, h2, body))
    # An unexpected tensor whose data is a hole after the real ones.
    h2 = json.loads(json.dumps(h))
    end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
    h2["junk"] = {"dtype": "F32", "shape": [4], "data_offsets": [end, end + 16]}
    put("checkpoint", "bad-unexpected", build(mode, h2, body + b"\x00" * 16))
    # A shape that does not fit the model.
    h2 = json.loads(json.dumps(h))
    h2["2.bias"]["shape"] = [1, 2]
    put("checkpoint", "bad-shape", build(mode, h2, body))
    put("checkpoint", "bad-truncated", open(src, "rb").read()[:-5])
