#!/usr/bin/env python3
"""The command-line conventions every clgrad tool shares (tools/cli.h):
getopt_long forms ("--epochs 3", "--epochs=3", "-e 3", "-e3"), the short
options, one wording for every usage error (exit status 2), --version from
cg_version(), and --threads / --backend / --device beside the environment
variables they override, each listed in --help.
usage: test_cli_options.py VERSION clgrad-train clgrad-eval clgrad-charlm
       clgrad-seed clgrad-info [clgrad-tune]"""
import os
import re
import subprocess
import sys
import tempfile

VERSION = sys.argv[1]
TOOLS = {os.path.basename(t): t for t in sys.argv[2:]}
env = dict(os.environ, CLGRAD_BACKEND="cpu")
failures = []


def run(tool, *args, **kw):
    e = dict(env, **kw.pop("env", {}))
    p = subprocess.run([TOOLS[tool], *args], capture_output=True, text=True, timeout=300,
                       env=e)
    return p.returncode, p.stdout, p.stderr


def check(name, cond, detail=""):
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failures.append(name)
        print(detail)


def usage_error(tool, args, message):
    """exit 2 and exactly '<tool>: <message> (see --help)' on stderr"""
    rc, out, err = run(tool, *args)
    want = f"{tool}: {message} (see --help)\n"
    check(f"{tool} {' '.join(args)}: {message}", rc == 2 and err == want,
          f"rc={rc}; stderr={err!r}; want {want!r}")


# --version and --help in every tool; the help names the variables
for tool in TOOLS:
    rc, out, err = run(tool, "--version")
    check(f"{tool} --version", rc == 0 and out == f"{tool} (clgrad) {VERSION}\n", out + err)
    rc, out, err = run(tool, "--help")
    check(f"{tool} --help", rc == 0 and "--version" in out and "usage:" in out, out + err)
    if tool not in ("clgrad-info", "clgrad-tune"):
        for var in ("CLGRAD_CPU_THREADS", "CLGRAD_BACKEND", "CLGRAD_DEVICE"):
            check(f"{tool} --help lists (env: {var})", f"(env: {var})" in out, out)
        check(f"{tool} --help lists -t, --threads", "-t, --threads N" in out, out)
    usage_error(tool, ["--bogus"], "unknown option '--bogus'")
    usage_error(tool, ["--bogus=1"], "unknown option '--bogus'")
    usage_error(tool, ["-Z"], "unknown option '-Z'")
    usage_error(tool, ["--version=2"], "option '--version' takes no value")
    if tool != "clgrad-info":
        usage_error(tool, ["--device"], "option '--device' needs a value")
    if tool not in ("clgrad-info", "clgrad-tune"):
        usage_error(tool, ["--threads", "0"], "option '--threads': '0' is not an integer in [1, 1024]")
        usage_error(tool, ["-t", "x"], "option '--threads': 'x' is not an integer in [1, 1024]")
        usage_error(tool, ["--threads=-1"], "option '--threads': '-1' is not an integer in [1, 1024]")

for tool in ("clgrad-train", "clgrad-charlm", "clgrad-seed"):
    usage_error(tool, ["stray"], "unexpected argument 'stray'")

# clgrad-seed: the same run through each form gives the same losses
forms = [["--epochs", "2", "--seed", "5", "--lr", "0.002", "--batch-size", "64"],
         ["--epochs=2", "--seed=5", "--lr=0.002", "--batch-size=64"],
         ["-e", "2", "-s", "5", "-l", "0.002", "-b", "64"],
         ["-e2", "-s5", "-l0.002", "-b64"],
         ["--ep", "2", "--se=5", "--lr", "2e-3", "--batch", "64", "--threads", "1",
          "--backend", "cpu"]]
outs = []
for f in forms:
    rc, out, err = run("clgrad-seed", *f)
    check("clgrad-seed " + " ".join(f), rc == 0 and out.count("Epoch") == 2, out + err)
    outs.append(out)
check("every option form gives the same run", len(set(outs)) == 1, "\n".join(outs))
# --threads N runs as CLGRAD_CPU_THREADS=N does, whatever the variable says
same = ["-e", "2", "-s", "5", "-l", "0.002", "-b", "64"]
rc, out, err = run("clgrad-seed", *same, "-t", "2", env={"CLGRAD_CPU_THREADS": "1"})
rc2, out2, err2 = run("clgrad-seed", *same, env={"CLGRAD_CPU_THREADS": "2"})
check("--threads 2 is CLGRAD_CPU_THREADS=2", rc == 0 and rc2 == 0 and out == out2,
      out + err + out2 + err2)
# --backend overrides CLGRAD_BACKEND
rc, out, err = run("clgrad-seed", "-e", "1", "--backend", "cpu", env={"CLGRAD_BACKEND": "nosuch"})
check("--backend overrides CLGRAD_BACKEND", rc == 0 and "backend cpu" in err, out + err)
rc, out, err = run("clgrad-seed", "-e", "1", "--backend", "nosuch")
check("--backend nosuch fails naming it", rc == 1 and "nosuch" in err, out + err)
rc, out, err = run("clgrad-info", "--backend", "cpu")
check("clgrad-info --backend cpu opens it", rc == 0 and "selected (backend cpu" in out, out + err)

# ambiguous prefixes are an error; unique ones are taken
usage_error("clgrad-train", ["--s", "1"], "ambiguous option '--s'")
usage_error("clgrad-train", ["--data", "x", "--epochs"], "option '--epochs' needs a value")
usage_error("clgrad-train", ["--data", "x", "-e"], "option '--epochs' needs a value")
usage_error("clgrad-train", ["--data", "x", "--epochs", "abc"],
            "option '--epochs': 'abc' is not an integer in [1, 1000000]")
usage_error("clgrad-train", ["--data", "x", "-l", "-1"],
            "option '--lr': '-1' is not a number in [0, 1000]")
usage_error("clgrad-train", ["--epochs", "2"], "option '--data' is required")
usage_error("clgrad-eval", ["--data", "x"], "option '--checkpoint' is required")
usage_error("clgrad-charlm", ["--arch", "rnn"], "option '--arch': 'rnn' is not lstm or transformer")

with tempfile.TemporaryDirectory() as tmp:
    csv = os.path.join(tmp, "d.csv")
    with open(csv, "w") as f:
        f.write("a,b,y\n" + "".join(f"{i % 7},{i % 5},{(i % 7) - (i % 5) + 0.1 * (i % 3):.1f}\n"
                                     for i in range(60)))
    base = ["--data", csv, "--target", "y", "--quiet"]
    a = run("clgrad-train", *base, "--epochs", "2", "--batch", "8", "--seed", "3", "--lr", "0.01")
    b = run("clgrad-train", *base, "-e2", "-b", "8", "--seed=3", "-l", "0.01", "-t", "1")
    check("clgrad-train short and long forms agree", a[0] == 0 and a[1] == b[1]
          and "test RMSE" in a[1], f"{a}\n{b}")
    ck = os.path.join(tmp, "m.safetensors")
    rc, out, err = run("clgrad-train", *base, "-e", "1", "-o", ck)
    check("-o saves the checkpoint", rc == 0 and os.path.exists(ck), out + err)
    rc, out, err = run("clgrad-eval", "--checkpoint=" + ck, "--data=" + csv, "--target=y",
                       "-b", "16", "-t", "1")
    check("clgrad-eval with = forms", rc == 0 and "RMSE" in out, out + err)

if failures:
    print(f"{len(failures)} failed: {failures}")
    sys.exit(1)
print("all passed")
