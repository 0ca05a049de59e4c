#!/usr/bin/env bash
# One prepared GPU session: correctness first, then timings, each bounded. For a machine with
# an NVIDIA GPU and this repo's dependencies installed (README). Writes everything to
# ${OUT:-gpu_out}/ so the numbers can be copied into the README with the card's name.
#
#   bash benchmarks/gpu_check.sh            # ~6 minutes on one H200
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$OUT/card.txt"

# 1. CUDA tests: envs on the device, the no-sync training loop under set_sync_debug_mode.
timeout 90 python3 -m pytest -q -x -p no:cacheprovider tests/test_fast_path.py tests/test_envs_base.py \
  tests/test_envs_classic.py -k "cuda or device or sync" 2>&1 | tail -15 | tee "$OUT/tests.txt"

# 2. Env throughput on the GPU (eager and compiled), N up to 2^20.
timeout 100 python3 benchmarks/env_throughput.py --device cuda --dtype float32 \
  --sizes 4096 65536 1048576 --repeats 3 2>&1 | tail -20 | tee "$OUT/env_throughput.txt"

# 3. Steady-state training throughput while learning (ours on the GPU; SB3 on the CPU beside it).
timeout 150 python3 benchmarks/solve_time.py --throughput --device cuda --throughput-envs 4096 65536 262144 \
  2>&1 | tail -12 | tee "$OUT/train_throughput.txt"

# 4. Time to solve on the GPU with the CPU defaults (16 envs: kernel-launch bound, for the record).
timeout 90 python3 benchmarks/solve_time.py --only ours --device cuda --seeds 0 1 2 --ours-steps 30000 \
  2>&1 | tail -12 | tee "$OUT/solve_cuda.txt"
