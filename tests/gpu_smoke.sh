#!/usr/bin/env bash
# The first run on a GPU: every figure a CPU cannot give, on one GPU (H100/H200), in under 10 minutes.
#   bash tests/gpu_smoke.sh 2>&1 | tee gpu_smoke.log
# Each command has its own time limit (LIMIT seconds, default 150) and the script goes on after a failure,
# so one hang or crash costs only its own figures; the exit code counts the failed commands.
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-150}
WORK=${WORK:-/tmp/lorat_smoke}
mkdir -p "$WORK"
failed=0
step() {
  echo; echo "== $*"
  local start=$SECONDS
  timeout "$LIMIT" "$@"; local rc=$?
  echo "   (exit $rc, $((SECONDS - start)) s)"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(),
'bf16 in hardware:', torch.cuda.is_bf16_supported(including_emulation=False))"

# the GPU tests (CPU vs CUDA forward, a bf16 LoRA step, the tracker's boxes, --deterministic resume)
step python -m pytest -q -rs tests/test_gpu.py
# the paper's inference-efficiency table: params, MACs, batch-1 fps; then torch.compile with CUDA graphs
step python evaluate.py efficiency --device cuda --sizes B,L,g --res 224,378
step python evaluate.py efficiency --device cuda --sizes B,L --res 224 --compile
# training: LoRA vs full fine-tuning, step time and max allocated memory (batch 16, bf16)
step python train.py --benchmark --size B --res 224
step python train.py --benchmark --size L --res 224
step python train.py --benchmark --size L --res 378
step python train.py --benchmark --size g --res 224 --batch-size 16
step python train.py --benchmark --size g --res 378 --batch-size 16 --grad-checkpoint   # the paper: 25.8 GB
# a short real LoRA run: DINOv2-layout random B weights, the synthetic world, 8 loader workers
step python - "$WORK/dinov2_vitb14_random.pth" <<'PY'
import sys, torch, lorat
with torch.device('cuda'):  # drawn on the GPU: quick
    model = lorat.build_model('B', lora_rank=0)
sd = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith(('head.', 'token_type_embed', 'pos_embed'))}
sd.update(cls_token=torch.zeros(1, 1, 768), mask_token=torch.zeros(1, 768), pos_embed=torch.randn(1, 1 + 37 * 37, 768) * 0.02)
torch.save(sd, sys.argv[1])
print('wrote', sys.argv[1])
PY
step python train.py --size B --res 224 --weights "$WORK/dinov2_vitb14_random.pth" --data synthetic,synthetic_stills \
  --epochs 1 --samples-per-epoch 4096 --batch-size 64 --warmup-epochs 0.1 --val-samples 256 --workers 8 --log-every 16 \
  --out "$WORK/runs" --name b224-smoke
echo; echo "== total $SECONDS s, $failed command(s) failed"
exit $failed
