"""Tests of lorat.py: LoRA, the DINOv2 backbone, the decoupled embedding, the heads, the losses, loading."""
import math
import os
import subprocess
import sys
from pathlib import Path
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import common  # noqa: E402
import lorat  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..')


def inputs(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=g)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=g)
    z_mask = torch.randint(0, 2, (batch, cfg.template_grid, cfg.template_grid), generator=g)
    return z, x, z_mask


def dinov2_state_dict(size='T', seed=0):
    """A state dict in the official DINOv2 layout (37x37 grid + cls, cls/mask tokens, fused qkv)."""
    torch.manual_seed(seed)
    dim, depth, ffn = lorat.SIZES[size].dim, lorat.SIZES[size].depth, lorat.SIZES[size].ffn
    hidden = lorat.make_config(size).ffn_hidden
    sd = {'cls_token': torch.randn(1, 1, dim), 'mask_token': torch.randn(1, dim),
          'pos_embed': torch.randn(1, 1 + 37 * 37, dim) * 0.02,
          'patch_embed.proj.weight': torch.randn(dim, 3, 14, 14) * 0.02, 'patch_embed.proj.bias': torch.randn(dim) * 0.02,
          'norm.weight': 1 + 0.1 * torch.randn(dim), 'norm.bias': 0.1 * torch.randn(dim)}
    fc = [('fc1', hidden, dim), ('fc2', dim, hidden)] if ffn == 'mlp' else [('w12', 2 * hidden, dim), ('w3', dim, hidden)]
    for i in range(depth):
        b = f'blocks.{i}.'
        for name, shape in [('norm1.weight', (dim,)), ('norm1.bias', (dim,)), ('norm2.weight', (dim,)), ('norm2.bias', (dim,)),
                            ('attn.qkv.weight', (3 * dim, dim)), ('attn.qkv.bias', (3 * dim,)),
                            ('attn.proj.weight', (dim, dim)), ('attn.proj.bias', (dim,)),
                            ('ls1.gamma', (dim,)), ('ls2.gamma', (dim,))]:
            sd[b + name] = torch.randn(shape) * 0.05 + (1.0 if 'norm' in name and 'weight' in name else 0.0)
        for name, out_f, in_f in fc:
            sd[b + f'mlp.{name}.weight'] = torch.randn(out_f, in_f) * 0.05
            sd[b + f'mlp.{name}.bias'] = torch.randn(out_f) * 0.05
    return sd


# ----------------------------------------------------------------------------- LoRA

@pytest.mark.parametrize('init', ['bert', 'lora'])
def test_lora_linear_merge_is_exact(init):
    torch.manual_seed(0)
    layer = lorat.Linear(48, 80)
    layer.add_lora(r=8, alpha=16, init=init)
    with torch.no_grad():  # make the update non-zero for both inits
        layer.lora.B.normal_(0, 0.05)
    x = torch.randn(5, 7, 48)
    before = layer(x)
    expected = F.linear(x, layer.weight + 2.0 * layer.lora.B @ layer.lora.A, layer.bias)  # alpha/r = 2
    layer.merge()
    assert not layer.has_lora and not hasattr(layer, 'lora')
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)
    torch.testing.assert_close(before, expected, atol=1e-5, rtol=0)


def test_lora_inits():
    bert = lorat.LoRA(64, 64, r=16, alpha=16, init='bert')
    classic = lorat.LoRA(64, 64, r=16, alpha=16, init='lora')
    assert bert.B.abs().sum() > 0 and bert.A.std() < 0.03  # LoRAT's init: the update is not zero at step 0
    assert classic.B.abs().sum() == 0 and classic.A.abs().sum() > 0


def test_lora_module_is_the_formula_and_the_fused_layer_adds_it():
    torch.manual_seed(0)
    layer = lorat.Linear(24, 40)
    layer.add_lora(r=4, alpha=8)
    x = torch.randn(3, 5, 24)
    delta = layer.lora(x)  # the module alone: x A^T B^T alpha / r
    torch.testing.assert_close(delta, x @ layer.lora.A.T @ layer.lora.B.T * 2.0, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias) + delta, atol=1e-6, rtol=0)


def test_fused_qkv_has_three_adapters_and_merges():
    torch.manual_seed(0)
    qkv = lorat.FusedQKV(32, 96)
    qkv.add_lora(r=4, alpha=4)
    names = sorted(n for n, _ in qkv.named_parameters())
    assert names == ['bias', 'k.lora.A', 'k.lora.B', 'q.lora.A', 'q.lora.B', 'v.lora.A', 'v.lora.B', 'weight']
    x = torch.randn(3, 32)
    out = qkv(x)
    # the k slice of the output gets only k's update
    k_only = F.linear(x, qkv.weight[32:64], qkv.bias[32:64]) + x @ qkv.k.lora.A.T @ qkv.k.lora.B.T
    torch.testing.assert_close(out[:, 32:64], k_only, atol=1e-5, rtol=0)
    qkv.merge()
    torch.testing.assert_close(qkv(x), out, atol=1e-5, rtol=0)


def old_lora_formula(layer, x):
    """The textbook LoRA forward this project had before the fused one: W x + b + (x A^T B^T) * scale, one
    adapter at a time, q/k/v concatenated."""
    lora = lambda m: (x @ m.A.T @ m.B.T) * m.scale
    delta = (torch.cat([lora(layer.q.lora), lora(layer.k.lora), lora(layer.v.lora)], -1)
             if isinstance(layer, lorat.FusedQKV) else lora(layer.lora))
    return F.linear(x, layer.weight, layer.bias) + delta


def lora_layers(seed=0):
    torch.manual_seed(seed)
    plain, qkv = lorat.Linear(48, 80), lorat.FusedQKV(48, 144)
    for layer in (plain, qkv):
        layer.add_lora(r=8, alpha=16)  # scale 2: the fold of the scale into the matmul is tested too
    return plain, qkv


def outputs_and_grads(layer, x, fn, autocast=False):
    x = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        y = fn(layer, x)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    grads = [x.grad] + [p.grad for n, p in sorted(layer.named_parameters()) if '.lora.' in f'.{n}']
    layer.zero_grad(set_to_none=True)
    return [y.float()] + grads


@pytest.mark.parametrize('which', [0, 1])
def test_fused_lora_equals_the_textbook_formula_in_fp32_and_bf16(which):
    """One A matmul for q, k, v, the update added in place: the same outputs and gradients (x, every A
    and B) as the formula; fp32 to rounding, bf16 autocast within 2% of the output's scale (the fused
    form rounds once where the formula rounds the update before adding it)."""
    layer = lora_layers()[which]
    x = torch.randn(2, 5, 48)
    new, old = outputs_and_grads(layer, x, lambda m, t: m(t)), outputs_and_grads(layer, x, old_lora_formula)
    assert len(new) == (4 if which == 0 else 8)  # y, x's gradient, each A and B
    for a, b in zip(new, old):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    new = outputs_and_grads(layer, x, lambda m, t: m(t), autocast=True)
    old = outputs_and_grads(layer, x, old_lora_formula, autocast=True)
    assert layer(x).dtype == torch.float32
    for a, b in zip(new, old):
        assert (a.float() - b.float()).abs().max() <= 0.02 * b.float().abs().max()


def test_lora_keys_are_the_official_releases():
    """The authors' release loads key by key: the fused forward must not rename a tensor."""
    plain, qkv = lora_layers()
    assert sorted(plain.state_dict()) == ['bias', 'lora.A', 'lora.B', 'weight']
    assert sorted(qkv.state_dict()) == ['bias', 'k.lora.A', 'k.lora.B', 'q.lora.A', 'q.lora.B', 'v.lora.A', 'v.lora.B', 'weight']
    assert qkv.state_dict()['k.lora.B'].shape == (48, 8) and qkv.state_dict()['q.lora.A'].shape == (8, 48)


VIEW_OPS = ('view', 't', 'transpose', 'permute', 'unbind', 'detach', '_unsafe_view', 'as_strided', 'expand', 'slice',
            'split', 'unsqueeze', 'squeeze', 'alias')


def count_block_ops(size, lora_rank, tokens=80):
    """aten ops of one block's training forward under CPU bf16 autocast: (all, kernels), kernels being the ops
    that are not views (a view moves no memory and launches nothing on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    model = lorat.build_model(size, lora_rank=lora_rank).train()
    x = torch.randn(1, tokens, model.cfg.dim)
    with torch.autocast('cpu', dtype=torch.bfloat16), Count() as counter:
        model.blocks[-1](x)  # the last block: the largest drop path
    return len(counter.ops), sum(op not in VIEW_OPS for op in counter.ops)


def test_a_lora_block_costs_few_ops_more_than_a_merged_one():
    """What LoRA adds over a merged block is what a GPU pays for in launches and memory traffic. The textbook
    LoRA block ran 115 aten ops (61 not views) against 40 (22) merged: x cast per adapter, a scale multiply
    per adapter, q/k/v concatenated then added."""
    total, kernels = count_block_ops('T', lora_rank=16)
    merged_total, merged_kernels = count_block_ops('T', lora_rank=0)
    assert merged_kernels == 22
    assert kernels - merged_kernels <= 18 and total <= 72, (total, kernels)


def test_whole_model_merge_is_exact():
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=16).eval()
    z, x, m = inputs(model.cfg)
    score, boxes = model(z, x, m)
    model.merge()
    assert not any('.lora.' in n for n, _ in model.named_parameters())
    score2, boxes2 = model(z, x, m)
    torch.testing.assert_close(score2, score, atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes2, boxes, atol=1e-5, rtol=0)


def test_only_lora_type_table_and_head_are_trainable_and_count_matches_card():
    model = lorat.build_model('T', lora_rank=16)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all('.lora.' in n or n == 'token_type_embed' or n.startswith('head.') for n in trainable)
    # every linear inside the blocks has LoRA: q, k, v, proj, fc1, fc2 = 6 pairs per block
    assert sum(n.endswith('.lora.A') for n in trainable) == 6 * model.cfg.depth
    card = lorat.model_card('T', lora_rank=16)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) == round(card['params_trainable_M'] * 1e6)
    assert sum(p.numel() for p in model.parameters()) == round(card['params_total_M'] * 1e6)


def test_swiglu_size_gets_lora_on_w12_and_w3():
    with torch.device('meta'):
        model = lorat.build_model('g')
    names = {n for n, _ in model.named_parameters()}
    assert 'blocks.39.mlp.w12.lora.B' in names and 'blocks.39.mlp.w3.lora.A' in names
    assert dict(model.named_parameters())['blocks.0.mlp.w12.lora.B'].shape == (8192, 64)


def test_gradients_reach_exactly_the_trainable_parameters():
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=8)
    z, x, m = inputs(model.cfg)
    score, boxes = model(z, x, m)
    loss, _ = lorat.lorat_loss(score, boxes, torch.tensor([[0.2, 0.3, 0.6, 0.7], [0.4, 0.1, 0.9, 0.5]]))
    loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_bf16_autocast_forward_backward_is_finite():
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=8)
    z, x, m = inputs(model.cfg)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        score, boxes = model(z, x, m)
        loss, _ = lorat.lorat_loss(score, boxes, torch.tensor([[0.2, 0.3, 0.6, 0.7], [0.4, 0.1, 0.9, 0.5]]))
    loss.backward()
    assert score.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- the ViT against a reference

def reference_forward(model, z, x, z_mask):
    """The same network written out with explicit softmax attention and unfolded patches."""
    sd, cfg = model.state_dict(), model.cfg
    C, nh = cfg.dim, cfg.num_heads

    def patches(img):  # (B, 3, H, W) -> (B, N, C)
        cols = F.unfold(img, 14, stride=14).transpose(1, 2)  # (B, N, 3*14*14)
        return cols @ sd['patch_embed.proj.weight'].reshape(C, -1).T + sd['patch_embed.proj.bias']

    gz, gx = cfg.template_grid, cfg.search_grid
    pos = sd['pos_embed'].reshape(gx, gx, C)
    t = torch.cat([patches(z) + pos[:gz, :gz].reshape(-1, C) + sd['token_type_embed'][z_mask.flatten(1)],
                   patches(x) + pos.reshape(-1, C) + sd['token_type_embed'][2]], dim=1)
    for i in range(cfg.depth):
        p = lambda name: sd[f'blocks.{i}.{name}']
        h = F.layer_norm(t, (C,), p('norm1.weight'), p('norm1.bias'), eps=1e-6)
        q, k, v = (h @ p('attn.qkv.weight').T + p('attn.qkv.bias')).chunk(3, dim=-1)
        split = lambda a: a.unflatten(-1, (nh, C // nh)).transpose(1, 2)  # (B, nh, N, hs)
        att = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(C // nh)).softmax(-1)
        h = (att @ split(v)).transpose(1, 2).flatten(2) @ p('attn.proj.weight').T + p('attn.proj.bias')
        t = t + p('ls1.gamma') * h
        h = F.layer_norm(t, (C,), p('norm2.weight'), p('norm2.bias'), eps=1e-6)
        h = F.gelu(h @ p('mlp.fc1.weight').T + p('mlp.fc1.bias')) @ p('mlp.fc2.weight').T + p('mlp.fc2.bias')
        t = t + p('ls2.gamma') * h
    t = F.layer_norm(t, (C,), sd['norm.weight'], sd['norm.bias'], eps=1e-6)[:, -gx * gx:]

    def mlp(name, a):
        for j in range(3):
            a = a @ sd[f'head.{name}.layers.{j}.weight'].T + sd[f'head.{name}.layers.{j}.bias']
            a = F.gelu(a) if j < 2 else a
        return a
    score = mlp('cls_mlp', t).reshape(-1, gx, gx)
    l, tp, r, b = mlp('reg_mlp', t).sigmoid().reshape(-1, gx, gx, 4).unbind(-1)
    cy, cx = torch.meshgrid((torch.arange(gx) + 0.5) / gx, (torch.arange(gx) + 0.5) / gx, indexing='ij')
    return score, torch.stack([cx - l, cy - tp, cx + r, cy + b], -1)


def test_forward_matches_reference_implementation():
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=0).eval()
    lorat.load_dinov2(model, _save(dinov2_state_dict(), 'dino_ref.pth'))
    z, x, m = inputs(model.cfg)
    score, boxes = model(z, x, m)
    ref_score, ref_boxes = reference_forward(model, z, x, m)
    torch.testing.assert_close(score, ref_score, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- DINOv2 loading

_tmp = {}


def _save(obj, name):
    import tempfile
    folder = _tmp.setdefault('dir', tempfile.mkdtemp())
    path = os.path.join(folder, name)
    torch.save(obj, path)
    return path


def test_dinov2_checkpoint_loads_strictly(tmp_path):
    sd = dinov2_state_dict()
    path = tmp_path / 'dinov2_vitt14_pretrain.pth'
    torch.save(sd, path)
    model = lorat.build_model('T', lora_rank=8)
    lorat.load_dinov2(model, str(path))
    ours = model.state_dict()
    torch.testing.assert_close(ours['blocks.3.attn.qkv.weight'], sd['blocks.3.attn.qkv.weight'])
    torch.testing.assert_close(ours['blocks.1.ls2.gamma'], sd['blocks.1.ls2.gamma'])
    expected_pos = lorat.resize_pos_embed(sd['pos_embed'][:, 1:], model.cfg.search_grid)
    torch.testing.assert_close(ours['pos_embed'], expected_pos)
    assert ours['pos_embed'].shape == (1, model.cfg.search_grid ** 2, 128) == (1, 10 * 10, 128)  # T-140's search grid


@pytest.mark.parametrize('damage, message', [
    (lambda sd: sd.pop('blocks.2.mlp.fc1.bias'), 'missing'),
    (lambda sd: sd.update(extra=torch.zeros(1)), 'unexpected'),
    (lambda sd: sd.update({'blocks.0.attn.proj.weight': torch.zeros(128, 64)}), 'shape'),
])
def test_wrong_dinov2_checkpoint_fails_clearly(tmp_path, damage, message):
    sd = dinov2_state_dict()
    damage(sd)
    torch.save(sd, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=message):
        lorat.load_dinov2(lorat.build_model('T'), str(tmp_path / 'bad.pth'))


def test_dinov2_of_another_size_fails_naming_both_sizes(tmp_path):
    torch.save(dinov2_state_dict('T'), tmp_path / 't.pth')
    with torch.device('meta'):
        model = lorat.build_model('B')
    with pytest.raises(ValueError, match=r'ViT-T .* size B'):
        lorat.load_dinov2(model, str(tmp_path / 't.pth'))


def test_unreadable_file_and_unreachable_url_fail_clearly(tmp_path):
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='cannot read weights file'):
        lorat.read_state_dict(str(tmp_path / 'junk.pth'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        lorat.read_state_dict(str(tmp_path / 'nope.pth'))
    with pytest.raises(OSError, match='cannot download'):
        lorat.read_state_dict('http://127.0.0.1:9/dinov2_vitb14_pretrain.pth')


def test_unknown_size_or_resolution_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown model size'):
        lorat.make_config('XL')
    with pytest.raises(ValueError, match='112, 140, 168, 224, 378'):
        lorat.make_config('B', 300)


def test_train_checkpoint_and_official_release_load_to_the_same_tracker(tmp_path):
    """Our LoRA checkpoint and the official safetensors layout both load (and merge) to one model."""
    from safetensors.torch import save_file
    torch.save(dinov2_state_dict(), tmp_path / 'dino.pth')
    torch.manual_seed(1)
    model = lorat.build_model('T', 224, lora_rank=8)
    lorat.load_dinov2(model, str(tmp_path / 'dino.pth'))
    trained = lorat.trainable_state_dict(model)
    torch.save({'config': asdict(model.cfg), 'model': trained, 'weights': str(tmp_path / 'dino.pth')}, tmp_path / 'ckpt.pt')
    save_file({**{k: v.contiguous() for k, v in trained.items()}, 'lora_alpha': torch.tensor(64)}, tmp_path / 'official.bin')
    z, x, m = inputs(model.cfg, batch=1)
    with torch.no_grad():
        expected = model.eval()(z, x, m)
        ours = lorat.load_model(str(tmp_path / 'ckpt.pt'))(z, x, m)
        official = lorat.load_official_lorat(str(tmp_path / 'official.bin'), backbone=str(tmp_path / 'dino.pth'), res=224)(z, x, m)
    for got in (ours, official):
        torch.testing.assert_close(got[0], expected[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- decoupled positional embedding

def test_pos_embed_resize_matches_hand_computed_bicubic():
    # 2x2 -> 1x1: the one output sample sits between the four inputs; bicubic (a = -0.75) weights at
    # t = 0.5 are (-0.09375, 0.59375, 0.59375, -0.09375), with borders clamped -> the plain mean.
    grid = torch.tensor([[1.0], [2.0], [4.0], [8.0]]).view(1, 4, 1)
    assert lorat.resize_pos_embed(grid, 1).item() == pytest.approx(3.75)
    # 1-D ramp along x in a 4x4 grid -> 2x2: samples at x = 0.5 and 2.5
    ramp = torch.arange(4.0).repeat(4).view(1, 16, 1)
    w = [-0.09375, 0.59375, 0.59375, -0.09375]
    left = w[0] * 0 + w[1] * 0 + w[2] * 1 + w[3] * 2  # indices -1, 0, 1, 2 with -1 clamped to 0
    right = w[0] * 1 + w[1] * 2 + w[2] * 3 + w[3] * 3  # indices 1, 2, 3, 4 with 4 clamped to 3
    out = lorat.resize_pos_embed(ramp, 2).view(2, 2)
    torch.testing.assert_close(out, torch.tensor([[left, right], [left, right]]))
    assert lorat.resize_pos_embed(ramp, 4) is ramp  # unchanged grid: returned as is


def test_template_takes_the_top_left_slice_of_the_search_grid():
    model = lorat.build_model('T', 224)
    z_pos = model.template_positions().view(8, 8, -1)
    x_pos = model.pos_embed.view(16, 16, -1)
    torch.testing.assert_close(z_pos, x_pos[:8, :8])


def test_foreground_mask_of_a_known_box():
    # 56 px template, stride 14 -> 4x4 cells; box x 14..28 covers column 1 only (28 is the border),
    # y 14..30 reaches into row 2
    mask = lorat.template_fg_mask(torch.tensor([[14.0, 14.0, 28.0, 30.0]]), grid=4)
    expected = torch.zeros(1, 4, 4, dtype=torch.long)
    expected[0, 1:3, 1] = 1
    assert torch.equal(mask, expected)
    # a box larger than the crop is clipped to the grid, a sliver still claims its cell
    assert lorat.template_fg_mask(torch.tensor([[-10.0, -10.0, 100.0, 100.0]]), grid=4).sum() == 16
    assert lorat.template_fg_mask(torch.tensor([[20.0, 20.0, 20.5, 20.5]]), grid=4).sum() == 1


def test_fg_flag_and_type_embedding_change_what_they_claim():
    torch.manual_seed(0)
    full = lorat.build_model('T', lora_rank=0).eval()
    z, x, m = inputs(full.cfg, batch=1)
    with torch.no_grad():
        assert not torch.allclose(full(z, x, m)[0], full(z, x, 1 - m)[0])  # the mask matters
        no_fg = lorat.build_model('T', lora_rank=0, fg=False).eval()
        no_fg.load_state_dict(full.state_dict())
        torch.testing.assert_close(no_fg(z, x, m)[0], no_fg(z, x, 1 - m)[0])  # ... and not without fg
        torch.testing.assert_close(no_fg(z, x, m)[0], full(z, x, torch.zeros_like(m))[0])  # all background
    assert 'token_type_embed' not in dict(lorat.build_model('T', type_emb=False).named_parameters())


def test_separate_positional_embedding_is_its_own_and_trainable():
    model = lorat.build_model('T', 224, pos_emb='separate')
    params = dict(model.named_parameters())
    assert params['template_pos_embed'].shape == (1, 64, 128) and params['template_pos_embed'].requires_grad
    assert params['pos_embed'].requires_grad
    assert not lorat.build_model('T', 224).pos_embed.requires_grad  # decoupled: the grid is frozen
    assert model.template_positions() is params['template_pos_embed']


def test_classic_lora_init_starts_from_the_pretrained_function():
    torch.manual_seed(0)
    lora = lorat.build_model('T', lora_rank=8, lora_init='lora').eval()
    plain = lorat.build_model('T', lora_rank=0).eval()
    plain.load_state_dict({k: v for k, v in lora.state_dict().items() if '.lora.' not in k})
    z, x, m = inputs(lora.cfg, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(lora(z, x, m)[0], plain(z, x, m)[0])


# ----------------------------------------------------------------------------- heads

def test_conv_and_mlp_heads_give_the_same_shapes_and_valid_boxes():
    torch.manual_seed(0)
    outs = []
    for head in ('mlp', 'conv'):
        model = lorat.build_model('T', 224, head=head, lora_rank=0).eval()
        z, x, m = inputs(model.cfg)
        outs.append(model(z, x, m))
    assert outs[0][0].shape == outs[1][0].shape == (2, 16, 16)
    assert outs[0][1].shape == outs[1][1].shape == (2, 16, 16, 4)
    for _, boxes in outs:
        assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()


def test_decode_ltrb_around_cell_centers():
    ltrb = torch.zeros(1, 2, 2, 4)
    ltrb[0, 1, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # row 1, column 0: center (0.25, 0.75)
    boxes = lorat.decode_ltrb(ltrb)
    torch.testing.assert_close(boxes[0, 1, 0], torch.tensor([0.15, 0.55, 0.55, 1.15]))
    torch.testing.assert_close(boxes[0, 0, 1], torch.tensor([0.75, 0.25, 0.75, 0.25]))


# ----------------------------------------------------------------------------- boxes, labels, losses

def test_iou_and_giou_hand_values_and_degenerate_boxes():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert lorat.box_iou(a, b).item() == pytest.approx(1 / 7, abs=1e-6)
    assert lorat.box_giou(a, b).item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    far = torch.tensor([4.0, 0.0, 5.0, 1.0])
    assert lorat.box_giou(a, far).item() == pytest.approx(0 - (10 - 5) / 10, abs=1e-6)
    empty = torch.zeros(4)
    inverted = torch.tensor([2.0, 2.0, 1.0, 1.0])
    for bad in (empty, inverted):
        assert torch.isfinite(lorat.box_iou(bad, a)) and torch.isfinite(lorat.box_giou(bad, bad))
    torch.testing.assert_close(lorat.box_xywh_to_xyxy(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([1.0, 2.0, 4.0, 6.0]))


def test_positive_cells_are_the_cells_the_box_overlaps():
    pos = lorat.positive_cells(torch.tensor([[0.30, 0.0, 0.50, 0.24]]), grid=4)
    # x 1.2..2.0 cells -> column 1 (2.0 is a border); y 0..0.96 -> row 0
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 0, 1] = True
    assert torch.equal(pos, expected)


def test_loss_on_a_hand_computed_example():
    # 2x2 grid, the gt box covers only cell (0, 0); every cell predicts the same box
    gt = torch.tensor([[0.1, 0.1, 0.4, 0.4]])
    pred = torch.tensor([0.1, 0.1, 0.3, 0.4])  # inside gt: IoU = GIoU = 0.06 / 0.09 = 2/3
    boxes = pred.expand(1, 2, 2, 4).clone()
    score = torch.tensor([[[2.0, -1.0], [0.5, 0.0]]])
    loss, parts = lorat.lorat_loss(score, boxes, gt)
    iou = 2 / 3
    bce = lambda s, y: -(y * math.log(1 / (1 + math.exp(-s))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-s))))
    cls = bce(2.0, iou) + bce(-1.0, 0) + bce(0.5, 0) + bce(0.0, 0)  # one positive: divided by 1
    assert parts['cls'].item() == pytest.approx(cls, rel=1e-5)
    assert parts['reg'].item() == pytest.approx(1 - iou, rel=1e-5)
    assert loss.item() == pytest.approx(cls + 1 - iou, rel=1e-5)
    assert parts['iou'].item() == pytest.approx(iou, rel=1e-5)  # argmax cell (0, 0)
    # the DDP hook: a normalizer of 4 positives (e.g. averaged over ranks) divides both parts by 4
    _, parts4 = lorat.lorat_loss(score, boxes, gt, num_pos_fn=lambda n: n * 4)
    assert parts4['cls'].item() == pytest.approx(cls / 4, rel=1e-5)


def test_iou_target_is_detached():
    boxes = torch.tensor([0.1, 0.1, 0.3, 0.4]).expand(1, 1, 1, 4).clone().requires_grad_()
    score = torch.zeros(1, 1, 1, requires_grad=True)
    gt = torch.tensor([[0.1, 0.1, 0.4, 0.4]])
    _, parts = lorat.lorat_loss(score, boxes, gt)
    parts_cls = lorat.lorat_loss(score, boxes, gt)[1]['cls']
    loss_cls = F.binary_cross_entropy_with_logits(score, torch.full((1, 1, 1), 2 / 3), reduction='sum')
    loss_cls.backward()
    assert boxes.grad is None  # the classification target does not pull on the box
    assert parts_cls.item() == pytest.approx(loss_cls.item(), rel=1e-5)


# ----------------------------------------------------------------------------- the model card

def test_model_card_matches_the_paper_within_two_percent():
    cards = {key: lorat.model_card(*key) for key in lorat.PAPER}
    for key, (params, macs, _) in lorat.PAPER.items():
        assert cards[key]['params_total_M'] == pytest.approx(params, rel=0.02), key
        assert cards[key]['macs_G'] == pytest.approx(macs, rel=0.02), key
    assert cards[('B', 224)]['params_lora_M'] == pytest.approx(11, rel=0.05)
    assert cards[('L', 224)]['params_head_M'] == pytest.approx(4.2, rel=0.02)


# -----------------------------------------------------------------------------
# The shipped pretrained T backbone (weights/lorat-T-backbone.pth): DINOv2's layout, DINOv2's loader


def test_shipped_t_backbone_loads_strictly_through_load_dinov2():
    sd = torch.load(lorat.T_BACKBONE, map_location='cpu', weights_only=True)
    assert not any(k.startswith(('head.', 'token_type_embed')) or '.lora.' in k for k in sd)  # backbone only
    assert {'cls_token', 'mask_token', 'patch_embed.proj.weight', 'norm.weight', 'blocks.3.ls2.gamma'} <= set(sd)
    n = math.isqrt(sd['pos_embed'].shape[1] - 1)
    assert sd['pos_embed'].shape == (1, 1 + n * n, 128)  # a square grid behind a cls position, as DINOv2's
    for res in (112, 224):  # its own resolution, and a resized grid
        model = lorat.build_model('T', res, lora_rank=16)
        lorat.load_dinov2(model, lorat.default_backbone('T'))  # every backbone tensor consumed, none left over
        ours = model.state_dict()
        torch.testing.assert_close(ours['blocks.2.mlp.fc2.weight'], sd['blocks.2.mlp.fc2.weight'])
        torch.testing.assert_close(ours['pos_embed'], lorat.resize_pos_embed(sd['pos_embed'][:, 1:], model.cfg.search_grid))


def test_shipped_t_backbone_hash_is_the_one_in_the_readme():
    readme = open(os.path.join(ROOT, 'README.md')).read()
    section = readme[readme.index('## The pretrained T backbone'):]
    stated = section.split('sha256', 1)[1].split('`')[1]
    assert stated == common.file_sha256(lorat.T_BACKBONE)


@pytest.mark.parametrize('make, error, message', [
    (lambda path: None, FileNotFoundError, r'shipped T backbone .*missing'),
    (lambda path: open(path, 'wb').write(b'PK\x03\x04 half a zip file'), ValueError, r'shipped T backbone .*damaged'),
    (lambda path: torch.save({'patch_embed.proj.weight': torch.zeros(384, 3, 14, 14), 'blocks.0.ls1.gamma': torch.ones(384)},
                             path), ValueError, r'holds a ViT-S backbone'),  # the keys that tell a size, of ViT-S/14
])
def test_missing_damaged_or_wrong_size_t_backbone_is_one_line_with_the_fix(tmp_path, monkeypatch, make, error, message):
    path = tmp_path / 'lorat-T-backbone.pth'
    make(path)
    monkeypatch.setattr(lorat, 'T_BACKBONE', path)
    with pytest.raises(error, match=message) as e:
        lorat.default_backbone('T')
    text = str(e.value)
    assert '\n' not in text and str(path) in text and '--export-backbone' in text and 'git checkout -- weights/' in text


# ----------------------------------------------------------------------------- default backbones

def test_default_backbone_comes_from_the_hub_cache_or_is_downloaded_there(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    cached = tmp_path / 'hub' / 'checkpoints' / 'dinov2_vitb14_pretrain.pth'
    fetched = []

    def download(url, dst, progress):
        fetched.append((url, dst, progress))
        Path(dst).write_bytes(b'weights')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    assert lorat.default_backbone('B') == str(cached) and cached.read_bytes() == b'weights'
    assert fetched == [(lorat.DINOV2_URL.format(s='b'), str(cached), True)]
    assert lorat.default_backbone('B') == str(cached) and len(fetched) == 1  # present: no second download

    def offline(url, dst, progress):
        raise OSError('Name or service not known')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(OSError) as e:
        lorat.default_backbone('L')
    text = str(e.value)
    assert text.startswith(f"cannot download {lorat.DINOV2_URL.format(s='l')}") and '--weights' in text
    assert '\n' not in text


def test_default_backbone_of_T_is_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setattr(lorat, 'T_BACKBONE', tmp_path / 'weights' / 'lorat-T-backbone.pth')
    with pytest.raises(FileNotFoundError) as e:
        lorat.default_backbone('T')
    text = str(e.value)
    assert text.startswith('the shipped T backbone ') and f"{tmp_path / 'weights' / 'lorat-T-backbone.pth'} is missing" in text
    assert text.endswith(lorat.T_BACKBONE_REBUILD) and '\n' not in text
    (tmp_path / 'weights').mkdir()
    torch.save(dinov2_state_dict(), tmp_path / 'weights' / 'lorat-T-backbone.pth')
    assert lorat.default_backbone('T') == str(tmp_path / 'weights' / 'lorat-T-backbone.pth')


# ----------------------------------------------------------------------------- bad inputs, one mechanism each

def tiny_export(path, seed=0):
    torch.manual_seed(seed)
    model = lorat.build_model('T', lora_rank=0)
    torch.save({'config': asdict(model.cfg), 'model': model.state_dict(), 'merged': True}, path)
    return model


def test_size_and_resolution_flags_take_the_tables_and_refuse_the_rest_in_one_line():
    parser = common.Parser(prog='x')
    parser.add_argument('--size', type=lorat.size_name)
    parser.add_argument('--res', type=lorat.resolution)
    assert vars(parser.parse_args(['--size', 'g', '--res', '224'])) == {'size': 'g', 'res': 224}
    for flag, text in [('--size', 'X'), ('--res', '300'), ('--res', 'big')]:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([flag, text])
        message = str(e.value.code)
        assert message.startswith(f'error: argument {flag}: unknown ') and '\n' not in message, message


def test_weights_files_are_identified_in_one_place_and_a_wrong_use_is_one_line(tmp_path):
    tiny_export(tmp_path / 'export.pt')
    model = lorat.build_model('T', lora_rank=0)
    torch.save(dinov2_state_dict(), tmp_path / 'dino.pth')
    torch.save(model.state_dict(), tmp_path / 'bare.pt')
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    newer = torch.load(tmp_path / 'export.pt', weights_only=True)
    newer['config']['option_of_tomorrow'] = 1
    torch.save(newer, tmp_path / 'newer.pt')
    kinds = {name: lorat.identify_weights(str(tmp_path / name))[0] for name in ('export.pt', 'dino.pth', 'bare.pt', 'list.pt')}
    assert kinds == {'export.pt': 'export', 'dino.pth': 'backbone', 'bare.pt': 'other', 'list.pt': 'other'}
    cases = [('dino.pth', r'--weights .*dino.pth is a backbone .*, not tracker weights: give it as --backbone .*train.py --weights'),
             ('bare.pt', r'bare LoRAT state dict'), ('list.pt', r'holds a list'), ('newer.pt', r'newer version .*option_of_tomorrow')]
    for name, message in cases:  # was KeyError: 'blocks.0.attn.proj.lora.A'
        with pytest.raises(ValueError, match=message) as e:
            lorat.load_model(str(tmp_path / name))
        assert '\n' not in str(e.value) and str(e.value).startswith(('--weights ', str(tmp_path)))
    with pytest.raises(ValueError, match=r'--weights .*export.pt is a tracker export .*lorat.py --export-backbone'):
        lorat.load_dinov2(lorat.build_model('T', lora_rank=4), str(tmp_path / 'export.pt'), flag='--weights')
    torch.save(dinov2_state_dict('S'), tmp_path / 'small.pth')
    with pytest.raises(ValueError) as e:  # track.py has no --size: a --backbone of another size is not told to pass one
        lorat.load_dinov2(lorat.build_model('T', lora_rank=4), str(tmp_path / 'small.pth'), flag='--backbone')
    assert '--size' not in str(e.value) and 'ViT-S' in str(e.value)


def test_a_legacy_torch_save_file_is_read_and_a_folder_is_named_as_such(tmp_path):
    model = tiny_export(tmp_path / 'export.pt')
    legacy = torch.load(tmp_path / 'export.pt', weights_only=True)
    torch.save(legacy, tmp_path / 'legacy.pt', _use_new_zipfile_serialization=False)  # was "not a PyTorch checkpoint"
    loaded = lorat.load_model(str(tmp_path / 'legacy.pt'))
    torch.testing.assert_close(loaded.state_dict()['head.cls_mlp.layers.0.weight'], model.state_dict()['head.cls_mlp.layers.0.weight'])
    with pytest.raises(IsADirectoryError, match=r'is a folder: give the file in it'):
        lorat.read_state_dict(str(tmp_path))


def test_an_official_release_missing_a_tensor_is_refused(tmp_path):
    from safetensors.torch import save_file
    release = lorat.build_model('T', lora_rank=4)
    sd = {k: v.contiguous() for k, v in release.state_dict().items()
          if '.lora.' in k or k == 'token_type_embed' or k.startswith('head.')}
    torch.save(dinov2_state_dict(), tmp_path / 'dino.pth')
    save_file(sd, str(tmp_path / 'full.safetensors'))
    lorat.load_model(str(tmp_path / 'full.safetensors'), backbone=str(tmp_path / 'dino.pth'), res=112)
    del sd['blocks.2.mlp.fc1.lora.B']
    save_file(sd, str(tmp_path / 'missing.safetensors'))  # was: loaded, that tensor left random
    with pytest.raises(ValueError, match=r'lacks 1 of .*blocks.2.mlp.fc1.lora.B.*incomplete'):
        lorat.load_model(str(tmp_path / 'missing.safetensors'), backbone=str(tmp_path / 'dino.pth'), res=112)


def test_the_shipped_backbone_hash_is_checked_on_load_with_the_restore_command(tmp_path, monkeypatch):
    assert lorat.T_BACKBONE_SHA256 == common.file_sha256(lorat.SHIPPED_T_BACKBONE)  # the constant is the file's
    damaged = tmp_path / 'lorat-T-backbone.pth'
    raw = bytearray(lorat.SHIPPED_T_BACKBONE.read_bytes())
    for k in range(64):  # 64 flipped bytes inside a tensor: torch still loads it
        raw[len(raw) // 2 + k] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    monkeypatch.setattr(lorat, 'SHIPPED_T_BACKBONE', damaged)
    monkeypatch.setattr(lorat, 'T_BACKBONE', damaged)
    for load in (lambda: lorat.default_backbone('T'), lambda: lorat.read_state_dict(str(damaged))):
        with pytest.raises(ValueError) as e:
            load()
        text = str(e.value)
        assert 'is not the shipped T backbone' in text and '`git checkout -- weights/lorat-T-backbone.pth`' in text
        assert '\n' not in text


def test_export_backbone_refuses_to_write_over_its_input(tmp_path):
    tiny_export(tmp_path / 'tracker.pt')
    before = (tmp_path / 'tracker.pt').read_bytes()
    with pytest.raises(ValueError, match=r'OUT is the tracker itself'):
        lorat.export_backbone(str(tmp_path / 'tracker.pt'), str(tmp_path / '.' / 'tracker.pt'))
    assert (tmp_path / 'tracker.pt').read_bytes() == before


def test_library_functions_raise_and_only_a_scripts_main_turns_that_into_one_line(tmp_path):
    """A caller of the library (a notebook, a test, another script) gets an exception it can catch, never an exit;
    common.main_errors, around each script's main, prints it as the one line `error: ...` with status 1."""
    missing = str(tmp_path / 'no_such_export.pt')
    with pytest.raises(FileNotFoundError) as e:
        lorat.load_model(missing)
    assert str(e.value) == f"weights file {missing} does not exist: check the path"

    @common.main_errors()
    def main():
        return lorat.load_model(missing)
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == f"error: weights file {missing} does not exist: check the path"
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'lorat.py'), '--export-backbone', missing, str(tmp_path / 'b.pth')],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr == f"error: weights file {missing} does not exist: check the path\n", out.stderr


def test_activation_checkpointing_gives_the_same_gradients_with_drop_path_and_saves_less():
    """--grad-checkpoint recomputes each block in the backward pass: the RNG is replayed, so drop path drops
    the same samples in the recompute and the gradients are those of the plain forward."""
    def step(checkpointing):
        torch.manual_seed(0)
        model = lorat.build_model('T', lora_rank=8, drop_path=0.5).train()
        model.grad_checkpoint = checkpointing
        z, x, m = inputs(model.cfg, batch=4)
        saved = []
        torch.manual_seed(1)  # the drop-path draws
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            score, boxes = model(z, x, m)
        loss, _ = lorat.lorat_loss(score, boxes, torch.tensor([[0.2, 0.3, 0.6, 0.7]] * 4))
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, sum(saved)
    loss, grads, saved = step(False)
    loss_ck, grads_ck, saved_ck = step(True)
    assert loss_ck == loss and grads_ck.keys() == grads.keys()
    for n in grads:
        torch.testing.assert_close(grads_ck[n], grads[n], rtol=1e-5, atol=1e-7)
    assert saved_ck < saved / 2
