#!/usr/bin/env bash
# One prepared GPU session: correctness first, then timings, each step bounded. For a machine
# with an NVIDIA GPU and this repo's dependencies installed (README). Writes everything to
# ${OUT:-gpu_out}/ so the numbers can be copied into the README with the card's name.
#
#   bash benchmarks/gpu_check.sh            # ~6 minutes on one H200
#   SKIP_ENVS=1 bash benchmarks/gpu_check.sh  # without the env-only throughput table
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$OUT/card.txt"

# 1. CUDA tests: the loop under set_sync_debug_mode("error"), CUDA-graph capture == eager, envs on the device.
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_fast_path.py \
  tests/test_envs_base.py tests/test_envs_classic.py -k "cuda or device or sync or graph" 2>&1 | tail -25 | tee "$OUT/tests.txt"

# 2. Env throughput on the GPU (eager and compiled), N up to 2^20.
if [ -z "${SKIP_ENVS:-}" ]; then
  timeout 100 python3 benchmarks/env_throughput.py --device cuda --dtype float32 \
    --sizes 4096 65536 1048576 --repeats 3 2>&1 | tail -20 | tee "$OUT/env_throughput.txt"
fi

# 3. Steady-state training throughput while learning: eager updates, then CUDA graphs (+ SB3 on the CPU).
timeout 90 python3 benchmarks/solve_time.py --throughput --device cuda --only ours \
  --throughput-envs 16 4096 65536 2>&1 | tail -8 | tee "$OUT/train_throughput.txt"
timeout 90 python3 benchmarks/solve_time.py --throughput --device cuda --cuda-graphs --only ours ppo dqn \
  --throughput-envs 16 4096 65536 2>&1 | tail -10 | tee -a "$OUT/train_throughput.txt"

# 4. Time to solve with the CPU defaults (16 envs) on the GPU with CUDA graphs, SB3 PPO beside it.
timeout 150 python3 benchmarks/solve_time.py --only ours ppo --device cuda --cuda-graphs --seeds 0 1 2 \
  --ours-steps 24000 2>&1 | tail -16 | tee "$OUT/solve_cuda.txt"
