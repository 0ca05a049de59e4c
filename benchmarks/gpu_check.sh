#!/usr/bin/env bash
# One prepared GPU session: correctness first, then timings, each bounded. For a machine with
# an NVIDIA GPU and this repo's venv (or run the README install first). Writes everything to
# ${OUT:-gpu_out}/ so the numbers can be copied into the README with the card's name.
#
#   bash benchmarks/gpu_check.sh            # ~6-8 minutes on one H100
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$OUT/card.txt"

# 1. CUDA tests: envs on the device, the no-sync training loop under set_sync_debug_mode.
timeout 240 python -m pytest -q -x tests/test_fast_path.py tests/test_envs_base.py tests/test_envs_classic.py \
  -k "cuda or device or sync" 2>&1 | tail -15 | tee "$OUT/tests.txt"

# 2. Env throughput on the GPU, N up to 2^20 (eager and compiled).
timeout 240 python benchmarks/env_throughput.py --device cuda --dtype float32 \
  --sizes 4096 65536 262144 1048576 --repeats 3 2>&1 | tail -25 | tee "$OUT/env_throughput.txt"

# 3. Training throughput while learning, native trainer on the GPU.
for n in 4096 65536; do
  timeout 120 python train.py --env gumbel_ac/CartPole-v1 --device cuda --num-envs $n \
    --total-steps $((n * 200)) --learning-starts $((n * 4)) --eval-every 0 --final-eval-episodes 10 \
    --checkpoint-every 0 --log-every $((n * 50)) --no-progress --runs-dir "$OUT/runs" --run-name n$n \
    2>&1 | tail -2 | tee -a "$OUT/train_throughput.txt"
  grep '"charts/sps"' "$OUT/runs/n$n/metrics.jsonl" | tail -2 | tee -a "$OUT/train_throughput.txt"
done
