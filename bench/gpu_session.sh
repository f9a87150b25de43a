#!/usr/bin/env bash
# Every GPU check of this project in one go, for a lent CUDA machine (figures: BENCHMARKS.md, "GPU").
#   bash bench/gpu_session.sh OUTDIR
# 1. the loss tests and the CUDA-marked tests (fused head on CUDA; evaluation on CUDA and in bf16);
# 2. bench.loss_head on CUDA, fp32 and bf16;
# 3. bench.gpu_check: ~1 B Llama, FSDP2 (the product's strategy), bf16, fused vs naive head.
# Packages the machine lacks (rouge_score, nltk) may be put on PYTHONPATH by the caller.
set -u
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_env.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/gpu_env.txt"
timeout 180 python3 -m pytest -q -p no:cacheprovider -rs tests/unlearn/losses tests/unlearn/metrics/test_evaluate.py 2>&1 \
    | tail -15 | tee "$out/gpu_tests.log"
timeout 120 python3 -m bench.loss_head --device cuda --tokens 8192 --hidden 2048 --reps 3 --json "$out/loss_head_cuda_fp32.json" 2>&1 | tail -8
timeout 120 python3 -m bench.loss_head --device cuda --tokens 8192 --hidden 2048 --dtype bfloat16 --reps 3 --json "$out/loss_head_cuda_bf16.json" 2>&1 | tail -8
timeout 300 python3 -m bench.gpu_check --json "$out/gpu_check.json" 2>&1 | tail -20
