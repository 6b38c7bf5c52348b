#!/usr/bin/env python3
"""Real-world tables through clgrad-train and clgrad-eval (issue 19): each
case writes its own file. A counts line before headerless rows, no header,
the target by number and 'last', dropped and chosen columns, a date column,
an ID column, integer labels, a single class, and the held-out test split
that clgrad-eval --split test finds again.
usage: test_csv_cli.py PATH/TO/clgrad-train PATH/TO/clgrad-eval"""
import os
import random
import re
import subprocess
import sys
import tempfile

TRAIN, EVAL = sys.argv[1], sys.argv[2]
env = dict(os.environ, CLGRAD_BACKEND="cpu")
failures = []


def run(tool, *args):
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def check(name, cond, detail=""):
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failures.append(name)
        print(detail)


def write(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def params(out):
    m = re.search(r"(\d+) parameters", out)
    return int(m.group(1)) if m else -1


def test_metric(out, what):
    m = re.search(rf"^test loss \S+  test {what} ([\d.]+)", out, re.M)
    return float(m.group(1)) if m else None


rng = random.Random(19)
with tempfile.TemporaryDirectory() as tmp:
    def path(name):
        return os.path.join(tmp, name)

    fast = ["--epochs", "30", "--lr", "0.02", "--model", "linear 16 relu, linear 3"]

    # 1. A counts line (rows, features, class names) before headerless rows,
    #    as sklearn's iris.csv: the first line is taken for a header, and the
    #    reader warns that it looks like data and names the options.
    rows = ["150,4,setosa,versicolor,virginica"]
    for i in range(150):
        c = i % 3
        rows.append(",".join(f"{c + rng.gauss(0, 0.3):.2f}" for _ in range(4)) + f",{c}")
    iris = path("iris.csv")
    write(iris, rows)
    rc, out, err = run(TRAIN, "--data", iris, "--target", "last", "--epochs", "1")
    check("a counts line is flagged with the options that fix it",
          "--skip-rows 1 --no-header" in err, out + err)
    rc, out, err = run(TRAIN, "--data", iris, "--skip-rows", "1", "--no-header", "--target",
                       "last", *fast)
    check("--skip-rows 1 --no-header reads the rows", rc == 0 and "150 test" not in out
          and "135 training" not in out and ", 15 test samples" in out, out + err)
    check("... and names the columns column1..N",
          'integer target "column5" with 3 distinct values' in out, out)
    acc = test_metric(out, "acc")
    check("... and learns (test acc > 90%)", acc is not None and acc > 90, out)
    # A counts line with fewer fields than the rows: an error that says so.
    write(path("counts.csv"), ["150,4"] + rows[1:])
    rc, out, err = run(TRAIN, "--data", path("counts.csv"), "--target", "last")
    check("a first line with fewer fields than the rows is an error naming --skip-rows",
          rc == 1 and "--skip-rows" in err and "fields" in err, err)

    # 2. No header at all; 3. the target by number and by 'last'.
    write(path("nohead.csv"), rows[1:])
    outs = {}
    for tgt in ("5", "last"):
        rc, out, err = run(TRAIN, "--data", path("nohead.csv"), "--no-header", "--target", tgt,
                           "--quiet", *fast)
        outs[tgt] = out
        check(f"--no-header --target {tgt}", rc == 0 and test_metric(out, "acc") is not None,
              out + err)
    check("--target 5 and --target last are the same column", outs["5"] == outs["last"], outs)
    rc, out, err = run(TRAIN, "--data", path("nohead.csv"), "--no-header", "--target", "7")
    check("a target number past the last column is an error", rc == 1 and "7" in err, err)
    rc, out, err = run(TRAIN, "--data", path("nohead.csv"), "--no-header", "--target", "1",
                       "--epochs", "1")
    check("--target 1 predicts the first column (a regression)",
          rc == 0 and 'regression: target "column1"' in out, out + err)

    # 4. Dropping and choosing columns: fewer inputs, fewer parameters.
    hdr = ["a,b,noise,y"]
    body = []
    for _ in range(200):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        body.append(f"{a:.4f},{b:.4f},{rng.uniform(-1, 1):.4f},{a - 2 * b:.4f}")
    write(path("cols.csv"), hdr + body)
    base = ["--data", path("cols.csv"), "--target", "y", "--epochs", "1", "--model", "linear 1"]
    p_all = params(run(TRAIN, *base)[1])
    rc, out, err = run(TRAIN, *base, "--drop", "noise")
    check("--drop noise: one input fewer", rc == 0 and params(out) == p_all - 1 == 3, out + err)
    rc, out, err = run(TRAIN, *base, "--drop", "3")
    check("--drop 3 (by number) is the same", rc == 0 and params(out) == 3, out + err)
    rc, out, err = run(TRAIN, *base, "--features", "a")
    check("--features a: one input", rc == 0 and params(out) == 2, out + err)
    rc, out, err = run(TRAIN, *base, "--drop", "nope")
    check("--drop of an unknown column names it", rc == 1 and '"nope"' in err, err)
    rc, out, err = run(TRAIN, *base, "--drop", "y")
    check("--drop of the target is an error", rc == 1 and "target" in err, err)

    # 5. A date column becomes numeric features, with a note.
    lines = ["when,x,y"]
    for i in range(120):
        x = rng.uniform(-1, 1)
        lines.append(f"2012-{1 + i % 12:02d}-{1 + i % 28:02d},{x:.3f},{2 * x:.3f}")
    write(path("dates.csv"), lines)
    rc, out, err = run(TRAIN, "--data", path("dates.csv"), "--target", "y", "--epochs", "1",
                       "--model", "linear 1")
    check("a date column becomes numeric features with a note",
          rc == 0 and 'column "when" holds dates' in err and params(out) == 8, out + err)

    # 6. An ID column is dropped with a warning; --keep keeps it.
    lines = ["id,x,label"]
    for i in range(100):
        x = rng.uniform(-1, 1)
        lines.append(f"row{i:04d},{x:.3f},{'pos' if x > 0 else 'neg'}")
    write(path("ids.csv"), lines)
    base = ["--data", path("ids.csv"), "--target", "label", "--epochs", "1", "--model",
            "linear 2"]
    rc, out, err = run(TRAIN, *base)
    check("an ID column is dropped with a warning naming --keep",
          rc == 0 and 'dropped column "id"' in err and "--keep id" in err and params(out) == 4,
          out + err)
    rc, out, err = run(TRAIN, *base, "--keep", "id")
    check("--keep id one-hot encodes it", rc == 0 and params(out) > 100, out + err)

    # 7. Integer labels with few values are classes, and the reason says so;
    #    --task regression overrides.
    lines = ["x,y"] + [f"{i % 3 + rng.gauss(0, 0.1):.3f},{i % 3}" for i in range(90)]
    write(path("ints.csv"), lines)
    rc, out, err = run(TRAIN, "--data", path("ints.csv"), "--target", "y", "--epochs", "1")
    check("integer labels: classification, with the reason",
          rc == 0 and 'classification: integer target "y" with 3 distinct values '
                      '(--task regression to override)' in out, out + err)
    rc, out, err = run(TRAIN, "--data", path("ints.csv"), "--target", "y", "--epochs", "1",
                       "--task", "regression")
    check("--task regression overrides", rc == 0 and "regression: set by --task" in out
          and "RMSE" in out, out + err)

    # 8. One class is an error, not 100% accuracy.
    write(path("one.csv"), ["x,y"] + [f"{i},a" for i in range(20)])
    rc, out, err = run(TRAIN, "--data", path("one.csv"), "--target", "y")
    check("a single class is an error", rc == 1 and "single class" in err, out + err)

    # 9. The held-out test split: reported after training; clgrad-eval
    #    --split test evaluates exactly those rows (same accuracy, same count).
    lines = ["f1,f2,kind"]
    for i in range(400):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        lines.append(f"{a:.4f},{b:.4f},{'in' if a * a + b * b < 0.5 else 'out'}")
    write(path("split.csv"), lines)
    ck = path("split.safetensors")
    rc, out, err = run(TRAIN, "--data", path("split.csv"), "--target", "kind", "--test-split",
                       "0.25", "--seed", "4", "--epochs", "20", "--lr", "0.02", "--save", ck)
    acc = test_metric(out, "acc")
    check("--test-split 0.25 holds out 100 rows and reports them",
          rc == 0 and ", 100 test samples" in out and acc is not None, out + err)
    rc, out2, err2 = run(EVAL, "--checkpoint", ck, "--data", path("split.csv"), "--split", "test")
    m = re.search(r"accuracy ([\d.]+)% \((\d+)/(\d+)\)", out2)
    check("clgrad-eval --split test: the same rows, the same accuracy (no --target needed)",
          rc == 0 and m and int(m.group(3)) == 100 and acc is not None
          and abs(float(m.group(1)) - acc) < 0.01, out + out2 + err2)
    rc, out2, err2 = run(EVAL, "--checkpoint", ck, "--data", path("split.csv"))
    check("clgrad-eval without --split reads every row", rc == 0 and "(400/400)" not in out2
          and re.search(r"\(\d+/400\)", out2), out2 + err2)
    ck0 = path("nosplit.safetensors")
    rc, out, err = run(TRAIN, "--data", path("split.csv"), "--target", "kind", "--test-split",
                       "0", "--epochs", "1", "--save", ck0)
    check("--test-split 0: no test rows, the validation set is reported",
          rc == 0 and ", 0 test samples" in out and "val loss" in out.splitlines()[-1], out + err)
    rc, out, err = run(EVAL, "--checkpoint", ck0, "--data", path("split.csv"), "--split", "test")
    check("--split test without recorded test rows is an error", rc == 1
          and "--split test" in err, err)
    # a table too small for 10% still holds out a row (rounded up, as
    # scikit-learn's train_test_split)
    write(path("tiny.csv"), ["x,y"] + [f"{i},{i * 0.5 + 0.25}" for i in range(4)])
    rc, out, err = run(TRAIN, "--data", path("tiny.csv"), "--target", "y", "--epochs", "1",
                       "--val-split", "0.5")
    check("4 rows: the default test split holds out one", rc == 0
          and ", 1 test samples" in out, out + err)
    # the file's format options are recorded: a headerless file evaluates as it trained
    ck1 = path("nohead.safetensors")
    rc, out, err = run(TRAIN, "--data", path("nohead.csv"), "--no-header", "--target", "last",
                       "--quiet", "--save", ck1, *fast)
    rc, out2, err2 = run(EVAL, "--checkpoint", ck1, "--data", path("nohead.csv"), "--split",
                         "test")
    m = re.search(r"accuracy ([\d.]+)%", out2)
    check("a --no-header model evaluates its test rows with no options",
          rc == 0 and m and abs(float(m.group(1)) - test_metric(out, "acc")) < 0.01,
          out + out2 + err2)

if failures:
    print(f"{len(failures)} failed: {failures}")
    sys.exit(1)
print("all passed")
