#!/usr/bin/env bash
# tools/gpu-check.sh — clgrad on an NVIDIA GPU machine that has the driver
# but no package archive, in under 10 minutes (issue 18, section 4).
#
# Two halves, the first where apt works (a Debian 12 machine with clgrad
# built in build/), the second on the GPU machine, from the repository root,
# with build/ and the .debs carried over:
#
#   tools/gpu-check.sh fetch [--debs DIR] [--build DIR]
#       apt-get download the Debian packages the build's binaries need at run
#       time beyond the C runtime (found with ldd + dpkg -S: the OpenCL ICD
#       loader, CLBlast, OpenBLAS and its Fortran runtime, cmocka, ...), into
#       DIR (default gpu-debs/; untracked, so a copy of the work tree takes it).
#
#   tools/gpu-check.sh run [--debs DIR] [--build DIR] [--out DIR]
#                          [--icd-lib LIB] [--peak-tflops X] [--budget S]
#                          [--tune-budget S (60)] [--no-tests]
#       1. dpkg -x every .deb into OUT/root (ar + tar where dpkg-deb is
#          missing) and puts each folder of shared objects there on
#          LD_LIBRARY_PATH;
#       2. writes OUT/icd/nvidia.icd naming the driver's libnvidia-opencl.so.1
#          (or --icd-lib: PoCL's libpocl.so.2 makes a dry run on a machine
#          without a GPU) and points OCL_ICD_VENDORS at that folder, so the
#          unpacked loader sees exactly that driver;
#       3. records nvidia-smi and clgrad-info;
#       4. tunes CLBlast's GEMM with clgrad-tune (its result goes to
#          OUT/cache, CLGRAD_CACHE_DIR, where the backend finds it);
#       5. runs clgrad-bench on the opencl backend (quick, 3 reps, GEMM at
#          N = 1024, 2048, 4096, every model);
#       6. runs the opencl test suite (build/meson-info/intro-tests.json: the
#          tests meson would run, with their environment, without meson),
#          until the budget ends;
#       7. writes OUT/summary.txt and OUT/summary.json: GEMM TFLOP/s at
#          N = 4096 as a share of the card's fp32 peak (SMs x fp32 lanes per
#          SM for its compute capability x 2 x max SM clock, from nvidia-smi
#          and OpenCL; --peak-tflops overrides it), samples/s (tokens/s) of
#          every model, the tests' results, date and commit.
#       Every step runs under `timeout` with what is left of --budget
#       (default 600 s); the logs of every step are in OUT (default
#       gpu-results/<UTC date>).
set -u

die() { echo "gpu-check: $*" >&2; exit 1; }
say() { echo "gpu-check: $*" >&2; }

mode=${1:-}
[ -n "$mode" ] || die "usage: tools/gpu-check.sh fetch|run [options] (see the header of this file)"
shift

debs=gpu-debs
build=build
out=gpu-results/$(date -u +%Y%m%d-%H%M%S)
icd_lib=libnvidia-opencl.so.1
peak_tflops=
budget=600
tune_budget=60
tests=1
while [ $# -gt 0 ]; do
    case $1 in
    --debs) debs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --icd-lib) icd_lib=$2; shift 2 ;;
    --peak-tflops) peak_tflops=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --tune-budget) tune_budget=$2; shift 2 ;;
    --no-tests) tests=0; shift ;;
    *) die "unknown option $1" ;;
    esac
done

# ---- fetch ------------------------------------------------------------------

# The packages of the shared objects the build's ELF files load, less the C
# runtime every machine has; the ICD loader and CLBlast always.
needed_packages() {
    local own
    own=$(readlink -f "$build")
    find "$build" -type f \( -perm -u+x -o -name '*.so*' \) -print 2>/dev/null |
    while read -r f; do
        head -c 4 "$f" 2>/dev/null | grep -q ELF && ldd "$f" 2>/dev/null
    done | awk '$3 ~ /^\// {print $3}' | sort -u |
    while read -r lib; do
        case $(readlink -f "$lib") in "$own"/*) continue ;; esac    # the build's own
        real=$(readlink -f "$lib")
        for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
            pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && {
                echo "$pkg"; break; }
        done
    done
    echo ocl-icd-libopencl1
    echo libclblast1
}

if [ "$mode" = fetch ]; then
    [ -d "$build" ] || die "no build folder $build: build clgrad first (meson setup $build && ninja -C $build)"
    command -v apt-get >/dev/null || die "fetch needs apt-get (a Debian machine)"
    mkdir -p "$debs" || die "cannot make $debs"
    pkgs=$(needed_packages | sort -u | grep -v -x -e libc6 -e libgcc-s1 -e libstdc++6)
    say "downloading into $debs: $(echo $pkgs)"
    (cd "$debs" && apt-get download $pkgs) || die "apt-get download failed"
    ls -l "$debs"
    exit 0
fi
[ "$mode" = run ] || die "unknown mode $mode (fetch or run)"

# ---- run --------------------------------------------------------------------

t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
# step NAME SECONDS CMD...: CMD under timeout (at most SECONDS, never past
# the budget less a 20 s reserve for the summary), output in OUT/NAME.log.
step() {
    local name=$1 secs=$2; shift 2
    local l=$(( $(left) - 20 ))
    [ "$secs" -gt "$l" ] && secs=$l
    if [ "$secs" -le 5 ]; then
        say "$name: skipped, the budget is spent"
        echo "skipped: budget spent" > "$out/$name.log"
        return 124
    fi
    say "$name (at most ${secs}s) ..."
    timeout "$secs" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "$rc" > "$out/$name.rc"
    say "$name: exit $rc ($(( $(date +%s) - t0 ))s in)"
    return $rc
}

[ -d "$build" ] || die "no build folder $build (build it where the packages are, carry it here)"
ls "$debs"/*.deb >/dev/null 2>&1 || die "no .debs in $debs: run 'tools/gpu-check.sh fetch' on a machine with apt first"
mkdir -p "$out/root" "$out/icd" "$out/cache" || die "cannot make $out"
out=$(cd "$out" && pwd)
build=$(cd "$build" && pwd)

# 1. Unpack.
for deb in "$debs"/*.deb; do
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$deb" "$out/root" || die "dpkg-deb -x $deb failed"
    else
        tmp=$(mktemp -d)
        (cd "$tmp" && ar x "$(readlink -f "$OLDPWD/$deb")" && tar -xf data.tar.* -C "$out/root") ||
            die "cannot unpack $deb (no dpkg-deb; ar + tar failed)"
        rm -rf "$tmp"
    fi
done
libdirs=$(find "$out/root" \( -path '*/lib/*' -o -path '*/lib64/*' \) \( -name '*.so' -o -name '*.so.[0-9]*' \) \
    \( -type f -o -type l \) \
    -printf '%h\n' | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:-}"

# 2. The ICD file: the driver's OpenCL library, by its full path.
find_lib() {
    case $1 in /*) [ -e "$1" ] && echo "$1"; return ;; esac
    local p
    p=$(ldconfig -p 2>/dev/null | awk -v l="$1" '$1 == l && /x86-64|x86_64|64bit/ {print $NF; exit}')
    [ -n "$p" ] && { echo "$p"; return; }
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib/x86_64-linux-gnu /lib64 \
             /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu/nvidia/current; do
        [ -e "$d/$1" ] && { echo "$d/$1"; return; }
    done
}
vendor=$(find_lib "$icd_lib")
[ -n "$vendor" ] || die "cannot find $icd_lib (the NVIDIA driver's OpenCL library; --icd-lib PATH names another)"
echo "$vendor" > "$out/icd/nvidia.icd"
export OCL_ICD_VENDORS="$out/icd"
export CLGRAD_PLUGIN_PATH="$build/backends/opencl"
export CLGRAD_CACHE_DIR="$out/cache"
export CLGRAD_BACKEND=opencl
say "ICD $out/icd/nvidia.icd -> $vendor; LD_LIBRARY_PATH $libdirs"

# 3. What is here.
{
    date -u '+date %Y-%m-%d %H:%M:%S UTC'
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "debs: $(cd "$debs" && ls *.deb | tr '\n' ' ')"
} > "$out/about.txt"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,memory.total \
        --format=csv,noheader > "$out/nvidia-smi.csv" 2>&1
step info 60 "$build/tools/clgrad-info" || die "clgrad-info failed: $(tail -5 "$out/info.log")"
grep -q "opencl" "$out/info.log" || die "no opencl backend: $(cat "$out/info.log")"

# 4. Tune CLBlast (GPUs use it for GEMM), then 5. measure.
step tune $(( tune_budget + 60 )) "$build/tools/clgrad-tune" --budget "$tune_budget" --quiet
step bench 240 "$build/tools/clgrad-bench" --backends opencl --quick --reps 3 \
    --gemm-sizes 1024,2048,4096 --json "$out/bench.json"

# 6. The opencl test suite, as meson would run it (each test's command and
# environment from intro-tests.json, the build folder's old path mapped to
# this one), until the budget ends.
cat > "$out/run_tests.py" <<'EOF'
import json, os, subprocess, sys, time
build, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.time() + secs
info = json.load(open(os.path.join(build, "meson-info", "meson-info.json")))
old_build, old_src = info["directories"]["build"], info["directories"]["source"]
src = os.path.dirname(build)
def remap(s):
    return s.replace(old_build, build).replace(old_src, src)
tests = [t for t in json.load(open(os.path.join(build, "meson-info", "intro-tests.json")))
         if any(s.endswith(":opencl") for s in t["suite"])]
res = {"passed": [], "failed": [], "not_run": []}
for t in tests:
    left = deadline - time.time()
    if left < 10:
        res["not_run"].append(t["name"])
        continue
    env = dict(os.environ)
    for k, v in t["env"].items():
        v = remap(v)
        env[k] = v + ":" + os.environ[k] if k == "LD_LIBRARY_PATH" and os.environ.get(k) else v
    env.pop("POCL_CPU_MAX_CU_COUNT", None)
    cmd = [remap(c) for c in t["cmd"]]
    t1 = time.time()
    try:
        p = subprocess.run(cmd, env=env, cwd=t["workdir"] and remap(t["workdir"]) or build,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=min(left, t["timeout"]))
        rc, log = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, log = "timeout", e.stdout or b""
    with open(os.path.join(out, "tests", t["name"] + ".log"), "wb") as f:
        f.write(log)
    if rc == "timeout" and left < t["timeout"]:     # cut by the budget, not its own limit
        res["not_run"].append(t["name"])
        print("%-28s cut by the budget after %.1fs" % (t["name"], time.time() - t1), flush=True)
        continue
    (res["passed"] if rc == 0 else res["failed"]).append(t["name"])
    print("%-28s %-8s %.1fs" % (t["name"], "OK" if rc == 0 else "FAIL(%s)" % rc, time.time() - t1),
          flush=True)
json.dump(res, open(os.path.join(out, "tests.json"), "w"), indent=1)
print("passed %d, failed %d, not run or cut (budget) %d" % (len(res["passed"]), len(res["failed"]),
                                                      len(res["not_run"])))
sys.exit(1 if res["failed"] else 0)
EOF
if [ "$tests" = 1 ]; then
    mkdir -p "$out/tests"
    step tests "$(( $(left) - 20 ))" python3 "$out/run_tests.py" "$build" "$out" "$(( $(left) - 30 ))"
fi

# 7. The summary.
python3 - "$out" "$peak_tflops" <<'EOF' || say "summary failed"
import json, os, re, sys
out, forced = sys.argv[1], sys.argv[2]
def read(name):
    try:
        return open(os.path.join(out, name)).read()
    except OSError:
        return ""
s = {"about": read("about.txt").strip().splitlines()}
smi = read("nvidia-smi.csv").strip().split(", ")
info = read("info.log")
# OpenCL compute units of the opencl backend's device 0 (SMs on NVIDIA).
m = re.search(r"opencl .*?\n\s+\[0\] (.*?)\n.*?(\d+) compute units", info, re.S)
dev, sms = (m.group(1).strip(), int(m.group(2))) if m else ("?", 0)
s["device"] = dev
peak, how = None, ""
if forced:
    peak, how = float(forced), "given (--peak-tflops)"
elif len(smi) >= 4 and sms:
    # fp32 lanes per SM by compute capability (NVIDIA CUDA C Programming
    # Guide, "Arithmetic Instructions" throughput table).
    cc = smi[2].strip()
    lanes = {"6.0": 64, "6.1": 128, "7.0": 64, "7.5": 64, "8.0": 64, "8.6": 128, "8.7": 128,
             "8.9": 128, "9.0": 128}.get(cc)
    mhz = float(re.sub(r"[^0-9.]", "", smi[3]) or 0)
    if lanes and mhz:
        peak = 2.0 * sms * lanes * mhz * 1e6 / 1e12
        how = "%d SMs x %d fp32 lanes x 2 x %.0f MHz (compute capability %s)" % (sms, lanes, mhz, cc)
    s["gpu"] = smi
s["fp32_peak_tflops"], s["fp32_peak_from"] = peak, how
try:
    b = json.load(open(os.path.join(out, "bench.json")))
    r = b["backends"]["opencl"]["results"]
except (OSError, KeyError, ValueError):
    r = {}
lines = []
for n in (1024, 2048, 4096):
    g = r.get("gemm_%d" % n)
    if g:
        tf = g["median"] / 1000.0
        share = " = %.0f%% of %.1f TFLOP/s" % (100 * tf / peak, peak) if peak else ""
        lines.append("GEMM N=%d: %.2f TFLOP/s [%.2f - %.2f]%s" % (n, tf, g["min"] / 1000, g["max"] / 1000, share))
        s["gemm_%d_tflops" % n] = tf
        if peak:
            s["gemm_%d_share_of_peak" % n] = tf / peak
for k in ("ffn", "mlp", "cnn", "lstm", "transformer", "mlp_cold_start", "mlp_warm_start"):
    if k in r:
        lines.append("%s: %.6g %s [%.6g - %.6g]" % (k, r[k]["median"], r[k]["unit"], r[k]["min"], r[k]["max"]))
        s[k] = r[k]
t = read("tests.log").strip().splitlines()
s["tests"] = t[-1] if t else "not run"
lines.append("opencl tests: " + s["tests"])
text = "\n".join(s["about"] + ["device: %s (%s)" % (dev, ", ".join(smi)),
                               "fp32 peak: %s" % (("%.1f TFLOP/s, " % peak + how) if peak else "unknown (give --peak-tflops)")] + lines)
open(os.path.join(out, "summary.txt"), "w").write(text + "\n")
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(text)
EOF
say "done in $(( $(date +%s) - t0 ))s; results in $out"
