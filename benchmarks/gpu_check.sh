#!/usr/bin/env bash
# GPU check (issue 19): img/s of a training step (fwd + bwd + fused AdamW, batch 8 x 3 x 128^2) in fp32, bf16,
# bf16 + channels_last and bf16 + torch.compile for Restormer, PromptIR and NAFNet, peak CUDA memory per case,
# and the ratio against the official code when clones are given. Runs in under 8 minutes on one H100/H200
# (a hard `timeout` guards it); writes benchmarks/results/train_step_gpu.txt (+ .json).
#
#   benchmarks/gpu_check.sh [RESTORMER_CLONE] [PROMPTIR_CLONE]
#   PYTHON=/path/to/python BATCH=16 REPS=20 benchmarks/gpu_check.sh ~/src/Restormer ~/src/PromptIR
#
# The clones are github.com/swz30/Restormer and github.com/va1shn9v/PromptIR (they need `einops`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
args=()
if [ -n "${1:-}" ]; then args+=(--official-restormer "$1"); fi
if [ -n "${2:-}" ]; then args+=(--official-promptir "$2"); fi
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
timeout "${LIMIT_S:-470}" "$PYTHON" benchmarks/train_step.py --device cuda \
  --models "${MODELS:-Restormer,PromptIR,NAFNet}" --modes fp32,bf16,bf16_cl,bf16_compile \
  --batch "${BATCH:-8}" --size 128 --reps "${REPS:-10}" \
  --out benchmarks/results/train_step_gpu.txt "${args[@]}"
echo "gpu_check.sh: done in $(( $(date +%s) - start )) s"
