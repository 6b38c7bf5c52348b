#!/usr/bin/env python3
"""clgrad-charlm from the command line (cpu backend): on a small periodic
text both architectures must drive the loss well down within a few steps,
print tokens/s and a sample of the requested length; bad input must give
one line on stderr and exit status 1 or 2."""
import os
import re
import subprocess
import sys
import tempfile

exe = sys.argv[1]
env = dict(os.environ, CLGRAD_BACKEND="cpu")


def run(*args):
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)


def check(cond, msg, p=None):
    if not cond:
        print("FAIL:", msg)
        if p is not None:
            print(p.stdout, p.stderr, sep="\n")
        sys.exit(1)


with tempfile.TemporaryDirectory() as d:
    text = os.path.join(d, "text.txt")
    with open(text, "w") as f:
        f.write("the cat sat on the mat. " * 200)
    for arch, extra in (("lstm", ["--embed", "16", "--hidden", "32"]),
                        ("transformer", ["--d-model", "32", "--heads", "2", "--blocks", "1"])):
        p = run("--text", text, "--arch", arch, "--steps", "120", "--print-every", "20",
                "--batch", "8", "--seq", "24", "--lr", "1e-2", "--sample", "60",
                "--prompt", "the ", "--temperature", "0.5", "--seed", "3", *extra)
        check(p.returncode == 0, f"{arch}: exit {p.returncode}", p)
        losses = [float(x) for x in re.findall(r"loss (\d+\.\d+) \| \d+ tokens/s", p.stdout)]
        check(len(losses) == 6, f"{arch}: expected 6 loss lines", p)
        # vocabulary of 11 characters: ln 11 = 2.4 at the start; the text is
        # periodic, so the model must get close to certain
        check(losses[-1] < 0.3 and losses[-1] < losses[0] / 4, f"{arch}: loss {losses}", p)
        m = re.search(r"--- sample \(temperature 0.5\) ---\n(.*)\n--- end of sample ---",
                      p.stdout, re.S)
        check(m and len(m.group(1)) == 4 + 60 and m.group(1).startswith("the "),
              f"{arch}: sample", p)
        print(f"{arch}: losses {losses}; sample {m.group(1)!r}")

    # --save, --load and the sample-only mode: a greedy sample (temperature 0)
    # from the loaded model is the one the trained model gives, without the
    # text; training goes on from the file.
    for arch, extra in (("lstm", ["--embed", "16", "--hidden", "32"]),
                        ("transformer", ["--d-model", "32", "--heads", "2", "--blocks", "1"])):
        ck = os.path.join(d, f"{arch}.safetensors")
        greedy = ["--sample", "40", "--prompt", "the ", "--temperature", "0"]
        p = run("--text", text, "--arch", arch, "--steps", "60", "--batch", "8", "--seq", "24",
                "--lr", "1e-2", "--seed", "3", "--save", ck, *greedy, *extra)
        check(p.returncode == 0 and "saved " + ck in p.stdout and os.path.exists(ck),
              f"{arch}: --save", p)
        trained = p.stdout.split("--- sample")[1]
        p = run("--load", ck, "--text", os.path.join(d, "absent.txt"), *greedy)
        check(p.returncode == 0 and "loaded " + ck in p.stdout and "step" not in p.stdout
              and p.stdout.split("--- sample")[1] == trained,
              f"{arch}: --load alone samples what the trained model sampled, reading no text", p)
        p = run("--load", ck, "--text", text, "--steps", "20", "--print-every", "10",
                "--batch", "8", "--seq", "24", "--sample", "0")
        losses = [float(x) for x in re.findall(r"loss (\d+\.\d+) \|", p.stdout)]
        check(p.returncode == 0 and len(losses) == 2 and losses[0] < 1.0,
              f"{arch}: --load --steps trains on from the saved model: {losses}", p)
        print(f"{arch}: save/load OK, losses on {losses}")
    ck = os.path.join(d, "lstm.safetensors")
    other = os.path.join(d, "other.txt")
    with open(other, "w") as f:
        f.write("ZZZ the cat " * 50)
    for args, rc, needle in ((["--load", ck, "--hidden", "8"], 2,
                              "option '--hidden' conflicts with --load"),
                             (["--load", ck, "--steps", "5", "--text", other], 1,
                              "byte 90 ('Z') at offset 0 is not in the loaded model's vocabulary"),
                             (["--load", text], 1, "text.txt"),
                             (["--load", os.path.join(d, "none.safetensors")], 1,
                              "none.safetensors")):
        p = run(*args)
        check(p.returncode == rc and needle in p.stderr, f"{args}: exit {p.returncode}", p)

    for args, rc, needle in ((["--arch", "rnn"], 2, "option '--arch': 'rnn' is not lstm"),
                             (["--steps", "-1"], 2, "option '--steps': '-1' is not an integer"),
                             (["--bogus", "1"], 2, "unknown option"),
                             (["--text", os.path.join(d, "missing")], 1, "cannot open"),
                             (["--text", text, "--seq", "100000"], 1, "needs at least"),
                             (["--text", text, "--steps", "0", "--prompt", "Q"], 1,
                              "not in the text's vocabulary")):
        p = run(*args)
        check(p.returncode == rc and needle in p.stderr, f"{args}: exit {p.returncode}", p)
print("ok")
