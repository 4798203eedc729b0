#!/bin/bash
# One measured run: train with the given flags, then `minigan eval` (1,000 samples) into OUT/eval.json.
#   benchmarks/quality/run_one.sh CODE_DIR OUT DATA SEED [train flags...]
# CODE_DIR: a checkout of minigan (the example script is run from it); single-threaded as the table's runs.
set -e
code=$1; out=$2; data=$3; seed=$4; shift 4
export NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$code
py=${PYTHON:-/work/venv/bin/python}
start=$(date +%s)
$py $code/examples/train_melicon.py --data "$data" --seed "$seed" --out "$out" --quiet "$@" > "$out.train.log" 2>&1
end=$(date +%s)
echo "{\"train_wall_s\": $((end - start))}" > "$out.time.json"
$py -m minigan eval --ckpt "$out" --n 1000 --json > "$out.eval.json" 2> "$out.eval.log"
