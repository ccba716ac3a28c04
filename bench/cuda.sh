#!/bin/bash
# The CUDA checks of the trainer and the recipe's PCA, with `sedr-bench`
# built on another machine (bench/README.md, "CUDA"):
#   bash bench/cuda.sh <path to sedr-bench> [output folder]
# It takes libtorch from the `python3` that imports torch 2.11 there and
# preloads libtorch_cuda, which registers CUDA with libtorch: the binary
# itself links the CPU libraries only. Every run is bounded by `timeout`,
# so one hang does not take the rest with it.
set -u
B=${1:?path to sedr-bench}
OUT_DIR=${2:-.}
T=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$T${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_PRELOAD=$T/libtorch_cuda.so
export GOMP_SPINCOUNT=3000
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "torch $(python3 -c 'import torch; print(torch.__version__)'), $(nproc) CPUs"
# GPU memory in use, sampled every 0.2 s, for the peak of each run.
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT_DIR/gpu-mem.txt" 2>&1 &
SAMPLER=$!
run() {
  local limit=$1; shift
  echo; echo "\$ sedr-bench $* (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$B" "$@"
  echo "(exit $?, $((SECONDS - t0)) s wall; GPU memory in use peaked at $(sort -n "$OUT_DIR/gpu-mem.txt" | tail -1) MiB so far)"
}
S="--epochs 100 --dec-epochs 100 --check"
run 60 --device cuda --n 3639 --epochs 5 --dec-epochs 5 --check
# The same seed twice in one process: equal digests mean identical output.
run 60 --device cuda --n 3639,3639 $S --pca-genes 2000
run 60 --device cpu --threads 1 --n 3639,3639 $S --pca-genes 2000
run 150 --device cuda --n 20000,200000,1000000 $S --pca-genes 2000
run 90 --device cpu --threads 16 --n 3639,20000 $S --pca-genes 2000
run 90 --device cuda --n 1000000 --batch-size 100000 $S
kill $SAMPLER 2>/dev/null
