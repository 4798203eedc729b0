#!/usr/bin/env bash
# gpu_acceptance.sh OUTDIR -- everything a machine with an NVIDIA GPU must prove, in one run.
#
#     pip install -e ".[cuda12,test,torch]"      # CuPy, pytest, PyTorch (the benchmarks' reference)
#     benchmarks/gpu_acceptance.sh /tmp/acceptance
#
# Steps (about 8 minutes from a cold CuPy kernel cache on one recent GPU):
#   1. check        minigan check --device cuda (every kernel vs its CPU twin, one step per model)
#   2. parity       the CUDA cases of tests/kernels (MINIGAN_DEVICE=cuda: the GPU alone)
#   3. gradcheck    the CUDA cases of tests/gradcheck (float64 on the GPU)
#   4. determinism  tests/faults/test_determinism.py's GPU test (same seed, same bits)
#   5. bench_step   bench_train_step.py --device cuda: sagan/dcgan/began, batches 5/64/256,
#                   PyTorch eager and CUDA-graph columns
#   6. bench_kernels bench_kernels.py --device cuda
#   7. train        a 300-step SAGAN 64x64 run; its last sample grid is copied to OUTDIR/samples.png
# OUTDIR gets report.json (each step: status, seconds, log file; the benchmarks' JSON inlined),
# one log per step, samples.png. The exit status is non-zero if any step failed; every step
# runs even after an earlier one failed, so one report shows everything.
set -uo pipefail

usage() { echo "usage: $0 OUTDIR   (an empty or new folder for report.json, logs and samples.png)" >&2; exit 2; }
[ $# -eq 1 ] || usage
case "$1" in -h|--help) usage ;; esac
OUT=$1
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then echo "gpu_acceptance: error: $OUT exists and is not a folder." >&2; exit 2; fi
mkdir -p "$OUT" || { echo "gpu_acceptance: error: cannot create $OUT." >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

# No GPU, no run: say so in one line before anything slow starts.
if ! "$PY" -c "from minigan import backend; import sys; sys.exit(0 if backend.cuda_available() else 1)" \
        2>/dev/null; then
    reason=$("$PY" -c "from minigan import backend; backend.cuda_available(); print(backend._cupy_error)" 2>&1 | tail -1)
    echo "gpu_acceptance: error: no usable CUDA GPU ($reason): run this on a machine with an NVIDIA GPU" \
         "and CuPy (pip install -e \".[cuda12,test,torch]\"); without one, minigan check --device cuda-emu" \
         "and the test suite prove the CUDA path on the emulator." >&2
    exit 2
fi

STEPS=()
status=0
run_step() {  # run_step NAME COMMAND...: log to OUT/NAME.log, record status and seconds
    local name=$1; shift
    local start end rc
    start=$(date +%s.%N)
    echo "== $name: $*"
    "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    echo "   $name: exit $rc, $(awk "BEGIN {printf \"%.1f\", $end - $start}") s (log: $OUT/$name.log)"
    [ $rc -eq 0 ] || status=1
    STEPS+=("$name $rc $start $end")
}

run_step check "$PY" -m minigan check --device cuda
run_step parity env MINIGAN_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider tests/kernels/test_parity.py
run_step gradcheck "$PY" -m pytest -q -p no:cacheprovider tests/gradcheck -k "cuda and not emu"
run_step determinism "$PY" -m pytest -q -p no:cacheprovider tests/faults/test_determinism.py -k gpu
run_step bench_step "$PY" benchmarks/bench_train_step.py --device cuda --models sagan dcgan began \
    --batches 5 64 256 --json "$OUT/bench_train_step.json"
run_step bench_kernels "$PY" benchmarks/bench_kernels.py --device cuda --json "$OUT/bench_kernels.json"
run_step train "$PY" -m minigan train --model sagan --device cuda --image-size 64 --iters 300 \
    --sample-every 100 --checkpoint-every 300 --out "$OUT/sagan64" --quiet
last_grid=$(ls "$OUT"/sagan64/samples/step_*.png 2>/dev/null | sort | tail -1)
[ -n "$last_grid" ] && cp "$last_grid" "$OUT/samples.png"

# report.json: the steps, the machine, the benchmarks' own JSON
"$PY" - "$OUT" "${STEPS[@]}" <<'PYTHON'
import json, os, platform, subprocess, sys
out, steps = sys.argv[1], sys.argv[2:]
report = {"steps": {}, "machine": {"python": platform.python_version(), "platform": platform.platform()}}
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    report["machine"].update(gpu=props["name"].decode(), cupy=cupy.__version__,
                             cuda_runtime=cupy.cuda.runtime.runtimeGetVersion())
except Exception as exc:  # the report is still written
    report["machine"]["gpu"] = f"unknown ({exc})"
for line in steps:
    name, rc, start, end = line.split()
    report["steps"][name] = {"exit": int(rc), "ok": rc == "0", "seconds": round(float(end) - float(start), 1),
                             "log": os.path.join(out, f"{name}.log")}
for name in ("bench_train_step", "bench_kernels"):
    path = os.path.join(out, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            report[name] = json.load(f)
report["samples"] = os.path.join(out, "samples.png") if os.path.exists(os.path.join(out, "samples.png")) else None
report["passed"] = all(s["ok"] for s in report["steps"].values())
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
print(f"report: {os.path.join(out, 'report.json')} ({'all passed' if report['passed'] else 'FAILURES'})")
PYTHON
exit $status
