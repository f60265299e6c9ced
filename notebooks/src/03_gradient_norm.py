# %% [markdown]
# # 03 · MLP head vs conv head under LoRA: the gradient norm
#
# The paper's finding (Sec. "Our Finding"): existing one-stream trackers "fail to converge when simply
# adopting LoRA on linear layers", and the authors measure this "optimization difficulty" by the **gradient norm**
# of the loss during training. One culprit is the head: a convolutional head (OSTrack's) brings an
# image-specific inductive bias that the ViT never had in pre-training, and with LoRA its gradient
# norm stays higher than with an MLP head. LoRAT therefore uses an MLP anchor-free head
# (`lorat.MLPHead`) instead of the conv head (`lorat.ConvHead`).
#
# Here both heads are trained with LoRA on the same frozen backbone, with the same data and recipe,
# through `train.py` (`--head mlp` vs `--head conv`), once per seed (3 seeds; a seed fixes the
# initial values and the sequence of training pairs, and both heads see the same ones). The headline
# plot is **the paper's measure**: the total L2 norm of all trainable parameters' gradients, before
# clipping, per step — what the authors' trainer logs (the value `clip_grad_norm_` returns, in
# github.com/LitingLin/LoRAT), and what `train.py` logs as `grad_norm` in its
# JSON-lines log. Its split into parameter groups follows as this notebook's own analysis. The backbone:
#
# * the shipped `weights/lorat-T-backbone.pth` (`lorat.T_BACKBONE`): a size-T ViT (128 wide, 4 blocks)
#   pre-trained on the synthetic world and stored in DINOv2's checkpoint layout. It plays DINOv2's
#   role at a scale a CPU can adapt in minutes, and it is what `python train.py` adapts by default
#   (the paper's recipe: frozen backbone, LoRA on every block linear layer, a fresh type table and head);
# * or, with `LORAT_DINOV2=/path/dinov2_vit{s,b}14_pretrain.pth`, real DINOv2 weights (slow on a CPU).
#
# Runs go to `runs/notebook03/` (`LORAT_RUNS` moves `runs/`), so `runs/latest` is left alone.

# %%
import json
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

QUICK = os.environ.get('LORAT_QUICK', '0') == '1'  # CI: a few steps, same code path
DINOV2 = os.environ.get('LORAT_DINOV2')
ROOT = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()
RUNS = Path(os.environ.get('LORAT_RUNS', ROOT / 'runs')).resolve()
OUT = RUNS / 'notebook03'
sys.path[:0] = [str(ROOT), str(ROOT / 'notebooks')]  # the project's scripts, and nbhelp.py
import common  # noqa: E402
import lorat  # noqa: E402
import train  # noqa: E402
from nbhelp import contrast, ema, rel, train_run, verdict, where  # noqa: E402  (see notebooks/nbhelp.py)

plt.rcParams.update({'figure.dpi': 80, 'savefig.dpi': 80})
checks = {}

# the experiment: the same for both heads; everything else is train.py's recipe (lr 1e-3, LoRA rank 16 for T)
STEPS = 6 if QUICK else 200      # LoRA training steps per run
BATCH = 4 if QUICK else 16
SEEDS = [0, 1, 2]                 # one run per head and seed: 6 runs
HEADS = ('mlp', 'conv')

print(f"mode: {'quick (LORAT_QUICK=1)' if QUICK else 'full'}")

# %% [markdown]
# ## 1. The backbone
#
# `lorat.default_backbone('T')` is the shipped file; `lorat.load_dinov2` reads it exactly as it reads
# DINOv2's: the cls and mask tokens dropped, the position grid (without its cls entry) resized to the
# search grid, every other tensor copied by name. It holds no head and no token type table: the runs
# below learn those fresh, as LoRAT does on DINOv2.

# %%
where(lorat.default_backbone, show=False)
where(lorat.load_dinov2, show=False)
backbone = DINOV2 or lorat.default_backbone('T')
shipped = lorat.read_state_dict(backbone)
size = lorat.size_of_state_dict(shipped)
print(f"backbone: {rel(backbone)} (sha256 {common.file_sha256(backbone)[:12]}...), ViT-{size}: "
      f"{len(shipped)} tensors, {sum(v.numel() for v in shipped.values()) / 1e6:.2f}M numbers, "
      f"position grid {tuple(shipped['pos_embed'].shape)} = (1, 1 + n*n, C)")
res = None if DINOV2 else 112  # the shipped backbone at 112 px, as these runs were measured (the default is now 140)
weights_flags = ('--weights', DINOV2, '--size', size) if DINOV2 else ('--res', str(res))  # else the shipped one

# %% [markdown]
# ## 2. The two models
#
# Identical except the head: the same frozen backbone with LoRA on every block linear layer, the same
# token type table. `lorat.MLPHead`: two 3-layer MLPs applied to each search token on its own.
# `lorat.ConvHead`: OSTrack's towers of 3×3 conv-BatchNorm-ReLU over the tokens laid out as a map —
# the spatial inductive bias. Both decode boxes the same way (`lorat.decode_ltrb`). The conv head is
# also much larger (the counts below): the paper's measure covers *all* trainable parameters, head
# included, so keep the sizes in mind when section 5 splits it by group.

# %%
where(lorat.MLPHead.forward)
where(lorat.ConvHead.forward)
where(lorat.conv_tower, show=False)
sizes = {}  # head -> {group: trainable numbers}
for head in HEADS:
    m, _ = train.build(train.parse_args([*weights_flags, '--head', head]))  # what train.py will train
    sizes[head] = {g: sum(p.numel() for p in ps) for g, ps in train.grad_groups(m).items()}
    print(f"{head:<5} trainable: " + ', '.join(f"{g} {n:,}" for g, n in sizes[head].items())
          + f"; total {sum(sizes[head].values()):,}")
checks['sizes'] = sizes

# %% [markdown]
# ## 3. Training both heads
#
# One `train.py` run per head and seed: with the same `--seed` both heads get the same LoRA
# initialization and the same sequence of training pairs (`data.TrainingPairs`); AdamW, cosine
# schedule, grad clip 1.0. Every step `train.train` logs, before clipping, the total norm that
# `clip_grad_norm_` returns (`grad_norm`: the paper's measure) and the norm of each parameter group
# (`grad_norm/<group>`, `train.grad_groups`):

# %%
where(train.grad_groups, show=False)
where(train.grad_norm)
logs = {head: {} for head in HEADS}  # head -> seed -> the run's per-step records
for seed in SEEDS:
    for head in HEADS:
        print(f"--head {head} --seed {seed}:")
        train_run(OUT, f'lora-{head}-seed{seed}', *weights_flags, '--head', head, '--seed', seed, '--epochs', 1,
                  '--samples-per-epoch', STEPS * BATCH, '--batch-size', BATCH, '--warmup-epochs', 0.05,
                  '--val-samples', 0, '--log-every', 50, show=1)
        logs[head][seed] = [r for r in map(json.loads, open(OUT / f'lora-{head}-seed{seed}' / 'log.jsonl')) if 'loss' in r]
checks['seeds'] = SEEDS
checks['steps'] = {h: [len(logs[h][s]) for s in SEEDS] for h in HEADS}

# %% [markdown]
# The runs adapted the shipped backbone and left it as it was (shown for seed 0's two runs): each
# `ckpt.pt` names it by sha256 and holds only what was trained; in each merged `export.pt` every
# backbone tensor LoRA does not touch (patch embedding, position grid, norms, biases, LayerScale) is
# bit-equal to the file; the block linear weights moved, by the merged LoRA update: rebuilding the
# model from the file + `ckpt.pt` (`lorat.load_model`) gives the export's backbone back.

# %%
model = lorat.build_model(size, res, lora_rank=0)  # the backbone as train.py loads it, nothing trained
lorat.load_dinov2(model, backbone)
base = model.state_dict()
merged_into = {f'{n}.weight' for n, m in model.named_modules() if isinstance(m, lorat.Linear) and n.startswith('blocks.')}
sha = common.file_sha256(backbone)
checks['backbone'] = {}
for head in HEADS:
    run = OUT / f'lora-{head}-seed{SEEDS[0]}'
    ckpt = torch.load(run / 'ckpt.pt', map_location='cpu', weights_only=True)
    export = torch.load(run / 'export.pt', map_location='cpu', weights_only=True)['model']
    rebuilt = lorat.load_model(run / 'ckpt.pt', backbone=backbone).state_dict()
    backbone_keys = [k for k in base if not k.startswith(('head.', 'token_type_embed'))]
    untouched = [k for k in backbone_keys if k not in merged_into]
    checks['backbone'][head] = dict(
        sha256_match=ckpt['weights_sha256'] == sha,
        trained_only_lora_type_head=all('.lora.' in k or k.startswith(('head.', 'token_type_embed')) for k in ckpt['model']),
        untouched_equal=all(torch.equal(export[k], base[k]) for k in untouched),
        merged_moved=max(float((export[k] - base[k]).abs().max()) for k in merged_into),
        rebuild_err=max(float((export[k] - rebuilt[k]).abs().max()) for k in backbone_keys))
    print(f"--head {head}: " + ', '.join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in checks['backbone'][head].items()))

# %% [markdown]
# ## 4. The paper's measure: the total gradient norm, MLP head vs conv head
#
# Left: `grad_norm` per step, the mean over the seeds of each head's curve smoothed as a training curve
# is (`nbhelp.ema`, an exponential moving average with smoothing 0.9), the band from the lowest to the
# highest seed; the faint line is the unsmoothed mean over seeds. The dotted line splits the run into
# its two halves, compared below. Right: the loss, the same way.

# %%
where(ema, show=False)
steps = np.arange(1, STEPS + 1)


def curves(head, key, smooth=True):
    """(seeds, steps): the per-step values of `key` in each seed's run of `head`, EMA-smoothed if `smooth`."""
    return np.array([ema([r[key] for r in logs[head][s]]) if smooth else [r[key] for r in logs[head][s]]
                     for s in SEEDS])


def band_plot(ax, key, log_y=True):
    for head, color in (('mlp', 'tab:blue'), ('conv', 'tab:red')):
        raw, smooth = curves(head, key, smooth=False), curves(head, key)
        ax.plot(steps, raw.mean(0), color=color, alpha=0.2, lw=0.8)
        ax.fill_between(steps, smooth.min(0), smooth.max(0), color=color, alpha=0.2)
        ax.plot(steps, smooth.mean(0), color=color, label=f'{head} head ({len(SEEDS)} seeds)')
    ax.axvline(STEPS // 2 + 0.5, color='k', ls=':', lw=0.8)
    ax.set(xlabel='step')
    if log_y:
        ax.set_yscale('log')
    ax.legend()


fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={'width_ratios': [3, 2]})
band_plot(axes[0], 'grad_norm')
axes[0].set_title("grad_norm: all trainable parameters, before clipping\n(the paper's measure; EMA 0.9, band: seeds' range)")
band_plot(axes[1], 'loss', log_y=False)
axes[1].set_title('loss (cls + reg)')
plt.tight_layout()
plt.show()

# %% [markdown]
# The two halves: each seed's mean over the steps of each half, per head; the ratio conv / MLP of
# each seed (both heads of a seed saw the same pairs); and over the seeds, the geometric mean of the
# ratios, ± its standard error (a factor: the s.e. of the mean log-ratio) and the range of the seeds.
# `nbhelp.contrast` calls a difference *resolved* when it is more than twice its standard error and
# every seed agrees on its sign.

# %%
where(contrast)
halves = {'first half': slice(0, STEPS // 2), 'second half': slice(STEPS // 2, STEPS)}  # fresh heads move most early
group_keys = sorted({k for h in HEADS for s in SEEDS for k in logs[h][s][0] if k.startswith('grad_norm/')})
keys = ['loss', 'grad_norm', *group_keys]
phase = {key: {h: {half: [float(np.mean(c[part])) for c in curves(h, key, smooth=False)] for half, part in halves.items()}
               for h in HEADS} for key in keys}  # key -> head -> half -> one mean per seed


def ratio_of(key, half):
    """conv / MLP of `key` over `half`: a contrast of the log phase means, one cell per seed."""
    c = contrast([[np.log(v)] for v in phase[key]['conv'][half]], [[np.log(v)] for v in phase[key]['mlp'][half]])
    per_seed = [c_ / m for c_, m in zip(phase[key]['conv'][half], phase[key]['mlp'][half])]
    return dict(ratio=float(np.exp(c['diff'])), factor_se=float(np.exp(c['se'])), per_seed=per_seed,
                resolved=c['resolved'], verdict=verdict(c, +1))  # the paper: conv above MLP


print(f"grad_norm (the paper's measure), mean over the steps of each half ({STEPS} steps, seeds {SEEDS}):")
print(f"{'':<13}{'seed':>5}{'mlp':>9}{'conv':>9}{'conv/mlp':>10}")
ratios = {}
for half in halves:
    for k, s in enumerate(SEEDS):
        m, c = phase['grad_norm']['mlp'][half][k], phase['grad_norm']['conv'][half][k]
        print(f"{half if k == 0 else '':<13}{s:>5}{m:>9.3f}{c:>9.3f}{c / m:>9.2f}x")
    r = ratios[half] = ratio_of('grad_norm', half)
    print(f"{'':<13}{'all':>5}{'':>18}{r['ratio']:>9.2f}x  (x/÷ {r['factor_se']:.2f} s.e.; seeds "
          f"{min(r['per_seed']):.2f}-{max(r['per_seed']):.2f}x; {'resolved' if r['resolved'] else 'not resolved'})")
summary = {key: {half: {h: float(np.mean(phase[key][h][half])) for h in HEADS} for half in halves} for key in keys}
checks['phase'], checks['summary'], checks['ratio'] = phase, summary, ratios

# %% [markdown]
# ## 5. What it is made of: the split by parameter group (this notebook's own analysis)
#
# *Not the paper's measure:* the total above is the norm of one long vector, and its square is the sum
# of the squares of its parts — the LoRA adapters (what reaches the backbone), the head, and the token
# type table, each logged by `train.py` as `grad_norm/<group>`. The split says which part the gap
# comes from. **Head-size caveat:** the conv head has many more parameters than the MLP head (section 2),
# so its part of the total is larger for that reason alone; the last column divides each group's norm
# by the square root of its size (the gradient's root mean square per parameter), which removes that
# effect but is no longer a quantity the paper looked at.

# %%
panels = [k for k in group_keys if k != 'grad_norm/backbone']
fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
for ax, key in zip(np.atleast_1d(axes), panels):
    band_plot(ax, key)
    ax.set_title(f"{key} (own analysis)")
plt.tight_layout()
plt.show()

print(f"{'':<22}{'half':<13}{'mlp':>9}{'conv':>9}{'conv/mlp':>10}{'seeds':>13}"
      f"{'size mlp':>10}{'conv':>10}{'per param. conv/mlp':>21}")
groups_ratio = {}
for key in group_keys:
    g = key.split('/', 1)[1]
    n_mlp, n_conv = sizes['mlp'].get(g, 0), sizes['conv'].get(g, 0)
    for half in halves:
        r = groups_ratio.setdefault(key, {})[half] = ratio_of(key, half)
        per_param = r['ratio'] * np.sqrt(n_mlp / n_conv) if n_mlp and n_conv else float('nan')
        r['per_param_ratio'] = float(per_param)
        print(f"{key:<22}{half:<13}{summary[key][half]['mlp']:>9.3f}{summary[key][half]['conv']:>9.3f}"
              f"{r['ratio']:>9.2f}x{min(r['per_seed']):>7.2f}-{max(r['per_seed']):.2f}"
              f"{n_mlp:>10,}{n_conv:>10,}{per_param:>20.2f}x")
checks['group_ratio'] = groups_ratio

# %% [markdown]
# ## 6. What these runs show, against the paper
#
# The paper plots the gradient norm over the training of a one-stream tracker with LoRA and finds it
# higher with a conv head than with the MLP head (the figure "Gradient norm (conv head vs. mlp head)";
# its text gives the direction, no numbers), which is why LoRAT uses the MLP head. The sentences below
# are computed from section 4's numbers (the paper's measure); the scale to keep in mind:
#
# * a 4-block, 128-wide backbone pre-trained on the synthetic world on a CPU, not DINOv2 on 142M images
#   (pass `LORAT_DINOV2` for the real thing); a few hundred steps of batch 16 instead of 170 epochs of 131k;
# * 3 seeds: the spread printed is between three training runs per head;
# * the measure includes the head, and the conv head is larger and uses BatchNorm (section 5).

# %%
def conclusion(half, r, loss):
    higher, lower = ('conv', 'MLP') if r['ratio'] > 1 else ('MLP', 'conv')
    factor = r['ratio'] if r['ratio'] > 1 else 1 / r['ratio']
    seeds = f"seeds {min(r['per_seed']):.2f}-{max(r['per_seed']):.2f}x conv/MLP"
    if not r['resolved']:
        return (f"{half}: no head's gradient norm is reliably higher: conv/MLP {r['ratio']:.2f}x ({seeds}, "
                f"x/÷ {r['factor_se']:.2f} s.e.), not resolved over {len(SEEDS)} seeds.")
    paper = 'the direction the paper reports' if r['verdict'] == 'reproduced' else 'against the direction the paper reports'
    return (f"{half}: the total gradient norm is higher with the {higher} head, {factor:.2f}x the {lower} head's "
            f"({seeds}, x/÷ {r['factor_se']:.2f} s.e., in every one of {len(SEEDS)} seeds): {paper}; "
            f"loss {loss['conv']:.2f} (conv) vs {loss['mlp']:.2f} (MLP).")


sentences = [conclusion(half, ratios[half], summary['loss'][half]) for half in halves]
print('\n'.join(sentences))
checks['conclusion'] = sentences
where(verdict, show=False)
row = ("| conv head's gradient norm above the MLP head's under LoRA (total norm before clipping; "
       "the paper's figure, direction only) | conv/MLP " + '; '.join(
           f"{h} {ratios[h]['ratio']:.2f}x (seeds {min(ratios[h]['per_seed']):.2f}-{max(ratios[h]['per_seed']):.2f}x)"
           for h in halves) + ' | ' + '; '.join(f"{h}: {ratios[h]['verdict']}" for h in halves) + ' |')
print("\nnotebooks/README.md's row (03, this run):\n" + row)
checks['readme_row'] = row
print("checks:", {k: v for k, v in checks.items() if k not in ('phase', 'summary', 'group_ratio', 'backbone')})

# %% [markdown]
# **How to read it.** The paper's claim is about adaptation: LoRA's low-rank update has to carry the
# backbone towards a head it never saw in pre-training, and a conv head with its spatial inductive bias
# makes that harder, which shows in the gradient norm. The first half is where the fresh heads are
# fitted; the second half says whether the gap lasts as the learning rate decays. A ratio whose seeds
# straddle 1 is not evidence either way. Section 5 is this notebook's own look inside the total: which
# group carries the gap, and how much of it is the conv head's size. Whether a gap persists over a
# real schedule on DINOv2 is what `LORAT_DINOV2` would show.
