"""What only a GPU shows. Every CUDA test skips where no GPU is visible; tests/gpu_smoke.sh runs them with
the efficiency table and the training benchmark on one GPU. The first test runs anywhere: a CPU stand-in
for what `evaluate.py efficiency --compile` needs (the whole model captured as one graph)."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import evaluate  # noqa: E402
import lorat  # noqa: E402
import train  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


def inputs(cfg, batch=1, device='cpu', seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=g)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=g)
    z_mask = torch.zeros(batch, cfg.template_grid, cfg.template_grid, dtype=torch.long)
    z_mask[:, 1:3, 1:3] = 1
    return z.to(device), x.to(device), z_mask.to(device)


def test_the_model_compiles_as_one_graph_and_equals_eager_on_the_cpu():
    """fullgraph=True fails on any graph break, which CUDA graphs ('reduce-overhead') could not replay as one
    launch. The 'eager' backend checks the capture without inductor's code generation (which takes ~4 minutes
    for size T on this project's 2-core CPU: too slow for a test; gpu_smoke.sh times the real one)."""
    torch.manual_seed(0)
    model = lorat.build_model('T').merge().eval()
    compiled = evaluate.compile_for_inference(model, 'cpu', backend='eager')
    assert evaluate.compiled_max_diff(model, compiled, inputs(model.cfg)) == 0.0


@pytest.fixture
def no_tf32():
    """fp32 on the GPU as on the CPU: no TF32 for convolutions (on by default) or matmuls."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@cuda
@pytest.mark.parametrize('size', ['T', 'B'])
def test_cpu_and_cuda_fp32_forwards_agree(size, no_tf32):
    """Tolerance: scores (logits) within 1e-3, boxes (normalized) within 1e-4: fp32 sums in another order."""
    torch.manual_seed(0)
    model = lorat.build_model(size).eval()  # with LoRA, unmerged: the fused LoRA forward on both
    with torch.no_grad():
        score, boxes = model(*inputs(model.cfg, batch=2))
        score_gpu, boxes_gpu = model.cuda()(*inputs(model.cfg, batch=2, device='cuda'))
    torch.testing.assert_close(score_gpu.cpu(), score, atol=1e-3, rtol=0)
    torch.testing.assert_close(boxes_gpu.cpu(), boxes, atol=1e-4, rtol=0)


@cuda
def test_a_bf16_lora_step_on_cuda_is_finite_and_lowers_the_loss():
    torch.manual_seed(0)
    with torch.device('cuda'):
        model = lorat.build_model('B').train()
    optimizer = torch.optim.AdamW(train.param_groups(model, 0.1, 1.0), lr=1e-4, fused=True)
    batch = inputs(model.cfg, batch=8, device='cuda')
    gt = torch.tensor([[0.3, 0.35, 0.6, 0.7]], device='cuda').repeat(8, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for _ in range(5):
        with torch.autocast('cuda', dtype=torch.bfloat16):
            score, boxes = model(*batch)
        loss, _ = lorat.lorat_loss(score, boxes, gt)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    losses = torch.stack(losses).tolist()
    assert all(torch.isfinite(torch.tensor(losses))) and torch.isfinite(norm), losses
    assert losses[-1] < losses[0], losses


@cuda
def test_the_tracker_on_cuda_gives_the_cpus_boxes(no_tf32):
    """Tolerance: every frame's box within 0.5 px of the CPU's (fp32 both, a 12-frame synthetic clip)."""
    import copy
    import numpy as np
    import track
    torch.manual_seed(0)
    model = lorat.build_model('T')
    lorat.load_dinov2(model, lorat.default_backbone('T'))
    model.merge().eval()
    seq = evaluate.open_sequences('synthetic', split='test', num=1, length=12)[0]
    boxes = {}
    for device in ('cpu', 'cuda'):  # a copy each: the tracker moves its model to its device
        boxes[device], _ = evaluate.track_sequence(track.Tracker(copy.deepcopy(model), device, torch.float32), seq)
    assert np.abs(boxes['cuda'] - boxes['cpu']).max() <= 0.5, np.abs(boxes['cuda'] - boxes['cpu']).max(1)


@cuda
def test_deterministic_resume_on_one_gpu_is_bit_identical(tmp_path):
    flags = [sys.executable, 'train.py', '--scratch', '--samples-per-epoch', '16', '--batch-size', '8', '--epochs', '3',
             '--val-samples', '8', '--workers', '1', '--log-every', '1000', '--device', 'cuda', '--deterministic',
             '--out', str(tmp_path)]
    env = {**os.environ, 'PYTHONPATH': ROOT}
    run = lambda *more: subprocess.run([*flags, *more], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run('--name', 'whole').returncode == 0
    assert run('--name', 'cut', '--kill-at', '5').returncode == -9
    resumed = run('--name', 'cut', '--resume', str(tmp_path / 'cut'))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(tmp_path / n / 'ckpt.pt', weights_only=True) for n in ('whole', 'cut'))
    assert a['step'] == b['step'] == 6 and a['args']['dtype'] in ('bf16', 'fp16')  # autocast on the GPU
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    log = [json.loads(line) for line in open(tmp_path / 'cut' / 'log.jsonl')]
    assert [r['step'] for r in log if 'loss' in r] == list(range(1, 7))
