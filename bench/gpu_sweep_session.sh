#!/usr/bin/env bash
# The sweep on a GPU, in one go, for a lent CUDA machine (figures: BENCHMARKS.md, "GPU: sweeps").
#   [STEPS=tests,long,startup,rerun] [USE_GPU=false] bash bench/gpu_sweep_session.sh OUTDIR [SITE.tar.xz]
# SITE.tar.xz: the packages the machine's image lacks (Ray, MLflow, Optuna, ...), unpacked into a
# temporary site directory put on PYTHONPATH (the lent image has PyTorch and transformers, not Ray).
# Steps (STEPS, comma-separated; all by default):
#   tests:   the CUDA-marked tests: fused head and evaluation on CUDA, and a 2-trial sweep whose Ray Train
#            workers hold a GPU and shard with FSDP2;
#   long:    bench/long_trials.yaml with scaling.use_gpu=true and 15 epochs (2 trials, ~1.5 min each on an
#            H200), then bench.sweep_overhead on it: the sweep overhead when trials run on a GPU;
#   startup: bench.ray_startup --gpu: where a Ray Train run's start-up goes when its worker holds a GPU;
#   rerun:   the README demo space on the GPU (2 trials), report / export-best / `run` of its best trial
#            on the GPU (reproduction, same seed), metrics side by side.
set -u
out=${1:-bench/results}
mkdir -p "$out"
if [ -n "${2:-}" ]; then
    mkdir -p /tmp/site && tar -C /tmp/site -xJf "$2" || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
steps=",${STEPS:-tests,long,startup,rerun},"
use_gpu=${USE_GPU:-true}  # false: the same steps on CPU (to try the script before device time is spent)
sweep="$py -m sweeps"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  $py -c "import torch, transformers, ray, mlflow, optuna; print('torch', torch.__version__, 'transformers', transformers.__version__,
'ray', ray.__version__, 'mlflow', mlflow.__version__, 'optuna', optuna.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/gpu_sweep_env.txt"
if [[ $steps == *,tests,* ]]; then
t0=$(date +%s)
timeout 180 $py -m pytest -q -p no:cacheprovider -rs -m gpu tests 2>&1 | tail -15 | tee "$out/gpu_sweep_tests.log"
echo "tests: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu_sweep_tests.log"
fi
if [[ $steps == *,long,* ]]; then
dir=/tmp/gpu_long
rm -rf $dir  # a warm machine keeps /tmp: start clean
t0=$(date +%s)
timeout ${SWEEP_TIMEOUT:-300} $sweep launch bench/long_trials.yaml base.scaling.use_gpu=$use_gpu \
    ${SWEEP_ARGS:-base.optim.epochs=15} \
    --out $dir --quiet > "$out/gpu_sweep_launch.log" 2>&1
echo "launch rc=$? wall $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu_sweep_launch.log"
tail -25 "$out/gpu_sweep_launch.log"
$py -m bench.sweep_overhead $dir --json "$out/sweep_overhead_gpu.json" 2>&1 | tail -25
$sweep report $dir 2>&1 | tail -8
fi
if [[ $steps == *,startup,* ]]; then
timeout 240 $py -m bench.ray_startup --runs 4 $([ "$use_gpu" = true ] && echo --gpu) --json "$out/ray_startup_gpu.json" 2>&1 | grep -v "^\x1b\|^(" \
    | tail -12 | tee "$out/ray_startup_gpu.log"
fi
if [[ $steps == *,rerun,* ]]; then
dir=/tmp/gpu_demo
rm -rf $dir /tmp/gpu_rerun  # a warm machine keeps /tmp: start clean
t0=$(date +%s)
timeout ${RERUN_TIMEOUT:-240} $sweep launch satimp base.scaling.use_gpu=$use_gpu budget.num_samples=2 budget.max_concurrent=1 \
    --out $dir --quiet > "$out/gpu_demo_launch.log" 2>&1
echo "launch rc=$? wall $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu_demo_launch.log"
tail -12 "$out/gpu_demo_launch.log"
$py -m bench.sweep_overhead $dir --json "$out/sweep_overhead_gpu_demo.json" 2>&1 | tail -12
$sweep report $dir > "$out/gpu_sweep_report.txt" 2>&1; cat "$out/gpu_sweep_report.txt" | tail -12
$sweep export-best $dir --out /tmp/gpu_best.yaml --force > /dev/null 2>&1 \
    && timeout 150 $sweep run /tmp/gpu_best.yaml --out /tmp/gpu_rerun > "$out/gpu_rerun.log" 2>&1
$py - "$dir" /tmp/gpu_rerun <<'EOF' 2>&1 | tee "$out/gpu_rerun_compare.log"
import json, sys
from pathlib import Path
from sweeps.report import collect_trials, pick_best
from sweeps.space import load_space
root = Path(sys.argv[1])
best, _ = pick_best(load_space(root / "space.yaml"), collect_trials(root))
rerun = json.loads((Path(sys.argv[2]) / "results.json").read_text())
print("best trial", best.trial_id, "rerun on", rerun.get("device"))
for k in ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "forget_es", "train/loss"):
    print(f"{k}: sweep {best.metrics[k]:.6g}  rerun {rerun['final'][k]:.6g}")
EOF
fi
