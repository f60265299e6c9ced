# %% [markdown]
# # 01 · LoRA: from the math to the code
#
# LoRAT fine-tunes a frozen DINOv2 ViT with **LoRA** (Hu et al. 2021): every linear layer inside the
# blocks keeps its pre-trained weight `W` frozen and learns a low-rank update `B A` beside it. This
# notebook takes the layer apart: what it computes, its rank and scale, the two initializations, why
# merging it into `W` is exact, and what it saves (parameters, training memory).
#
# This project's own size T (128 wide, 4 blocks) has no DINOv2; its frozen `W`s come from the shipped
# `weights/lorat-T-backbone.pth`, a T backbone pre-trained on the synthetic world in DINOv2's checkpoint
# layout, which plays DINOv2's role at a scale a CPU can train. `python train.py` with no arguments is
# the paper's recipe on it: LoRA (rank 16 for T) on every block linear layer, a fresh type table and head.
#
# Every formula names the function that implements it; `where(f)` prints the live file and line.
# Runs top to bottom on a CPU in about a minute (`LORAT_QUICK=1`: fewer variants, for CI).

# %%
import copy
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

QUICK = os.environ.get('LORAT_QUICK', '0') == '1'  # CI: fewer, smaller variants; same code
ROOT = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()
sys.path[:0] = [str(ROOT), str(ROOT / 'notebooks')]  # the project's scripts, and nbhelp.py
import lorat  # noqa: E402
import train  # noqa: E402
from nbhelp import where  # noqa: E402  (prints a function's file:line and source)

plt.rcParams.update({'figure.dpi': 80, 'savefig.dpi': 80})
torch.manual_seed(0)
checks = {}  # the numbers this notebook measured (the tests read them)

print(f"mode: {'quick (LORAT_QUICK=1)' if QUICK else 'full'}")

# %% [markdown]
# ## 1. The layer
#
# For a frozen linear layer with weight $W \in \mathbb{R}^{d_{out} \times d_{in}}$ and bias $b$:
#
# $$y = W x + b + \frac{\alpha}{r}\, B A\, x, \qquad A \in \mathbb{R}^{r \times d_{in}},\; B \in \mathbb{R}^{d_{out} \times r}$$
#
# Only $A$ and $B$ are trained: $r(d_{in} + d_{out})$ numbers instead of $d_{in} d_{out}$.
# `lorat.LoRA.forward` computes the update as `x @ A.T @ B.T * scale` — two thin matmuls, never the
# full $BA$; `lorat.Linear.forward` adds it to the frozen `F.linear(x, W, b)`.

# %%
where(lorat.LoRA.forward)
where(lorat.Linear.forward)

# %% [markdown]
# Check the formula on one layer by hand, and count its parameters:

# %%
d_in, d_out, r = 128, 384, 8
layer = lorat.Linear(d_in, d_out)
layer.add_lora(r=r, alpha=r)
x = torch.randn(5, d_in)
by_hand = x @ layer.weight.T + layer.bias + (r / r) * x @ (layer.lora.B @ layer.lora.A).T
err = (layer(x) - by_hand).abs().max().item()
print(f"A {tuple(layer.lora.A.shape)}, B {tuple(layer.lora.B.shape)}; |layer(x) - formula| max = {err:.1e}")
print(f"trainable: r (d_in + d_out) = {r * (d_in + d_out):,} vs the frozen W's d_in d_out = {d_in * d_out:,}")
checks['formula_err'] = err

# %% [markdown]
# ## 2. Rank and scale
#
# The update $\Delta W = \frac{\alpha}{r} B A$ (`lorat.LoRA.delta_weight`) has rank at most $r$, whatever
# $A$ and $B$ learn: its singular values beyond the $r$-th are zero. The scale $\alpha / r$ only
# multiplies it; LoRAT uses $r = \alpha = 64$, so the scale is 1 for every model size.

# %%
where(lorat.LoRA.delta_weight)
fig, ax = plt.subplots(figsize=(6, 3))
ranks = {}
for rank in (4, 16, 64):
    lora = lorat.LoRA(128, 128, r=rank, alpha=rank)
    dw = lora.delta_weight().detach()
    s = torch.linalg.svdvals(dw)
    ranks[rank] = int(torch.linalg.matrix_rank(dw))
    ax.semilogy(s.clamp(min=1e-12), label=f"r = {rank}: numerical rank {ranks[rank]}")
ax.set(xlabel='singular value index', ylabel='singular value', title='ΔW = BA·α/r of a 128×128 layer')
ax.legend()
plt.show()
checks['ranks'] = ranks

# %% [markdown]
# ## 3. Initialization: "bert" (LoRAT) vs "lora" (the classic)
#
# `lorat.LoRA.__init__` draws **both** $A$ and $B$ from a truncated normal (std 0.02) — LoRAT's choice
# (`lora_init='bert'`), so the update is small but not zero at step 0. The classic LoRA init
# (`lora_init='lora'`, an ablation flag `--lora-init lora` of train.py) is kaiming-uniform $A$ and
# $B = 0$: the model starts exactly at the pre-trained one, and since
# $\partial L / \partial A = \frac{\alpha}{r} B^\top (\partial L / \partial y)\, x^\top$, $A$ gets **no gradient**
# at the first step — only $B$ moves.

# %%
where(lorat.LoRA.__init__)
W = torch.randn(256, 256) * 0.02  # a frozen weight of DINOv2's scale
print(f"{'init':<6}{'|ΔW|/|W|':>10}{'|dL/dA|':>10}{'|dL/dB|':>10}")
for init in ('bert', 'lora'):
    torch.manual_seed(0)
    lora = lorat.LoRA(256, 256, r=64, alpha=64, init=init)
    x = torch.randn(32, 256)
    (x @ W.T + lora(x)).pow(2).sum().backward()
    rel = (lora.delta_weight().norm() / W.norm()).item()
    print(f"{init:<6}{rel:>10.3f}{lora.A.grad.norm().item():>10.3f}{lora.B.grad.norm().item():>10.3f}")
    checks[f'{init}_delta'], checks[f'{init}_gradA'] = rel, lora.A.grad.norm().item()

# %% [markdown]
# ## 4. Where LoRA goes in LoRAT
#
# `lorat.add_lora` puts one on every linear layer inside the blocks: q, k and v (three adapters on
# DINOv2's fused `attn.qkv`, `lorat.FusedQKV`), the attention output `attn.proj`, and the FFN's `fc1`,
# `fc2` (`w12`, `w3` for ViT-g). `lorat.mark_trainable` then freezes everything except LoRA, the token
# type table and the head. The names are the official release's. Below, size T with train.py's
# rank for it, its frozen weights loaded from the shipped backbone (`lorat.load_dinov2`):

# %%
where(lorat.add_lora)
where(lorat.mark_trainable, show=False)
model = lorat.build_model('T', lora_rank=16)  # this project's small size: 128 wide, 4 blocks
lorat.load_dinov2(model, lorat.default_backbone('T'))
for name, p in model.named_parameters():
    if name.startswith('blocks.0.') and '.lora.' in name:
        print(f"  {name:<28} {str(tuple(p.shape)):<12} trainable={p.requires_grad}")
print("  ... and blocks.0.attn.qkv.weight", tuple(model.blocks[0].attn.qkv.weight.shape),
      "trainable =", model.blocks[0].attn.qkv.weight.requires_grad)

# %% [markdown]
# ## 5. Merging is exact
#
# After training, `lorat.Linear.merge` folds the update into the weight, $W \leftarrow W + \frac{\alpha}{r} BA$
# (in fp32), and deletes the adapter; `lorat.LoRAT.merge` does it for every layer. The merged model
# **is** a plain ViT — same parameter names and count as a model built without LoRA — so inference
# costs nothing extra. Because $W x + \frac{\alpha}{r} B A x = (W + \frac{\alpha}{r} BA)\, x$, the outputs
# are equal up to float rounding. To test with a realistic update, the adapters get trained-size
# values (std 0.05) first.

# %%
where(lorat.Linear.merge)


def merge_error(size, res=None):
    """Max |difference| between the model with adapters and its merged copy: the ViT's output tokens
    (the final norm's output, values of order 1) and the boxes."""
    torch.manual_seed(0)
    model = lorat.build_model(size, res).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.lora.' in name:
                p.normal_(0, 0.05)
    cfg = model.cfg
    z = torch.randn(1, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size)
    z_mask = torch.zeros(1, cfg.template_grid, cfg.template_grid, dtype=torch.long)
    z_mask[:, 1:-1, 1:-1] = 1
    merged = copy.deepcopy(model).merge()
    tokens = []  # the final norm's output of each model, caught by a hook
    for m in (model, merged):
        m.norm.register_forward_hook(lambda mod, inp, out: tokens.append(out))
    with torch.no_grad():
        score, boxes = model(z, x, z_mask)
        score_m, boxes_m = merged(z, x, z_mask)
    plain = lorat.build_model(size, res, lora_rank=0)
    count = lambda m: sum(p.numel() for p in m.parameters())
    return dict(model=f"{size}-{cfg.res}", token_err=(tokens[0] - tokens[1]).abs().max().item(),
                token_scale=tokens[0].abs().max().item(), box_err=(boxes - boxes_m).abs().max().item(),
                score_err=(score - score_m).abs().max().item(), params=count(model), params_merged=count(merged),
                same_keys_as_plain_vit=set(merged.state_dict()) == set(plain.state_dict()))


rows = [merge_error('T')] + ([] if QUICK else [merge_error('B', 224)])
for row in rows:
    print(f"{row['model']}: max |Δ| output tokens {row['token_err']:.1e} (tokens up to {row['token_scale']:.1f}), "
          f"boxes {row['box_err']:.1e}, scores {row['score_err']:.1e}")
    print(f"      params {row['params'] / 1e6:.2f}M -> {row['params_merged'] / 1e6:.2f}M merged; "
          f"merged names == a plain ViT's: {row['same_keys_as_plain_vit']}")
checks['merge_err'] = max(max(r['token_err'], r['box_err'], r['score_err']) for r in rows)
checks['merge_same_keys'] = all(r['same_keys_as_plain_vit'] for r in rows)

# %% [markdown]
# The cost of not merging: the MACs of one forward (template + search, batch 1), counted by
# `lorat.count_macs` on the meta device (no memory, no time).

# %%
where(lorat.count_macs, show=False)
size = 'T' if QUICK else 'B'
with torch.device('meta'):
    unmerged = lorat.build_model(size).eval()
    macs_lora = lorat.count_macs(unmerged)
    macs_merged = lorat.count_macs(unmerged.merge())
print(f"{size}-{unmerged.cfg.res}: {macs_lora / 1e9:.2f} GMACs with the adapters, {macs_merged / 1e9:.2f} merged "
      f"(the adapters add {(macs_lora / macs_merged - 1) * 100:.1f}%; merged, nothing)")

# %% [markdown]
# ## 6. Trainable parameters of B, L, g (`lorat.model_card`)
#
# At training, "total" counts the frozen ViT, LoRA and head; "LoRA trains" is LoRA + type table + head;
# "full trains" is every weight of the model without LoRA (= the merged count), what full fine-tuning
# (`train.py --full-finetune`) updates. The paper's "#Params" column: total (LoRA, head).

# %%
where(lorat.model_card, show=False)
sizes = ['B'] if QUICK else ['B', 'L', 'g']
print(f"{'model':<8}{'total':>9}{'LoRA':>8}{'head':>7}{'LoRA trains':>13}{'full trains':>13}{'share':>8}   paper")
cards = []
for s in sizes:
    c = lorat.model_card(s, 224)
    cards.append(c)
    paper = lorat.PAPER[(s, 224)][0]
    ref = {'B': '99 (11, 2)', 'L': '336 (28, 4)', 'g': '1216 (71, 9)'}[s]
    print(f"{s + '-224':<8}{c['params_total_M']:>8.1f}M{c['params_lora_M']:>7.1f}M{c['params_head_M']:>6.2f}M"
          f"{c['params_trainable_M']:>12.1f}M{c['params_merged_M']:>12.1f}M"
          f"{c['params_trainable_M'] / c['params_merged_M'] * 100:>7.1f}%   {ref} M")
checks['cards'] = {c['size']: c for c in cards}

# %% [markdown]
# ## 7. Training efficiency: the paper's table beside ours
#
# The paper (8×80 GB GPUs, batch 128, fp16) reports training time (h) and memory (GB):
#
# | variant | LoRA time | LoRA memory | full time | full memory |
# |---|---|---|---|---|
# | B-224 | 5.9 | 2.4 | 5.9 | 3.2 |
# | B-378 | 12.2 | 5.7 | 12.5 | 6.5 |
# | L-224 | 10.8 | 6.6 | 12.1 | 10.0 |
# | L-378 | 32.2 | 14.9 | 34.1 | 19.1 |
# | g-224 | 22.3 | 14.0 | 29.3 | 27.1 |
# | g-378 | 60.0 | 25.8 | out of memory | |
#
# LoRA saves memory because frozen weights need no gradient and no AdamW state (2 extra copies); it
# saves little time because the backward still has to run through every frozen layer.
# `train.benchmark` runs a few steps of each mode with the same batch in a fresh process and reports
# step time and peak memory (on this CPU: the peak RSS of the process).

# %%
where(train.benchmark, show=False)
bench_args = ['--benchmark', '--size', 'T', '--res', '112', '--batch-size', '8', '--bench-steps', '2'] if QUICK else \
             ['--benchmark', '--size', 'B', '--res', '224', '--batch-size', '2', '--bench-steps', '3']
bench = train.benchmark(train.parse_args(bench_args))
checks['bench'] = bench

# %%
lo, fu = bench['lora'], bench['full']
print(f"memory LoRA / full: ours {lo['peak_gb'] / fu['peak_gb']:.2f}"
      + ('' if QUICK else f", paper B-224 {2.4 / 3.2:.2f}"))
print(f"time   LoRA / full: ours {lo['step_ms'] / fu['step_ms']:.2f}" + ('' if QUICK else f", paper B-224 {5.9 / 5.9:.2f}"))
print("checks:", {k: v for k, v in checks.items() if k not in ('cards', 'bench')})

# %% [markdown]
# **What to take away.** LoRAT trains about 15 % of a B model's weights, 11 % of L's and 7 % of g's
# (LoRA + head + type table), and the update has rank ≤ r by construction. The "bert" init starts
# with a small non-zero update, so both factors learn from step 0. Merging is exact to float rounding
# and leaves a plain ViT, so the tracker runs at the speed of the backbone alone. LoRA cuts training
# memory because frozen weights need no gradients and no optimizer state; on this CPU the peak RSS
# also holds the frozen weights, activations and allocator slack, so its ratio is a rough view of the
# paper's GPU numbers, not a reproduction.
