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
# Here both heads are trained with LoRA on the same frozen backbone, with the same seed, data and
# recipe, through `train.py` (`--head mlp` vs `--head conv`), and the per-step loss and gradient norms
# of its JSON-lines log are plotted. The backbone:
#
# * `LORAT_DINOV2=/path/dinov2_vit{s,b}14_pretrain.pth` — real DINOv2 weights (slow on a CPU);
# * else the best size-T model in `runs/` trained from scratch by `python train.py` (highest held-out IoU);
# * else a short from-scratch pre-training that this notebook launches itself.
#
# Runs go to `runs/notebook03/` (`LORAT_RUNS` moves `runs/`), so `runs/latest` is left alone.

# %%
import json
import os
import shutil
import subprocess
import sys
import time
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
import lorat  # noqa: E402
import train  # noqa: E402
from nbhelp import where  # noqa: E402  (prints a function's file:line and source)

plt.rcParams.update({'figure.dpi': 80, 'savefig.dpi': 80})
checks = {}

# the experiment: the same for both heads
STEPS = 6 if QUICK else 200      # LoRA training steps per head
BATCH = 4 if QUICK else 16
LR = 1e-3                        # the paper's 1e-4 barely moves a fresh head in 200 steps; same for both heads
SEED = 0
PRETRAIN = dict(epochs=1, samples_per_epoch=16 if QUICK else 4096, batch_size=4 if QUICK else 32)

print(f"mode: {'quick (LORAT_QUICK=1)' if QUICK else 'full'}")


def run_train(name, *flags):
    """`python train.py --out OUT --name NAME FLAGS` from scratch (an old run of that name is removed:
    train.py would append to its log); prints its last lines, raises with its error if it fails."""
    shutil.rmtree(OUT / name, ignore_errors=True)
    flags = ('--out', OUT, '--name', name) + flags
    t0 = time.time()
    out = subprocess.run([sys.executable, 'train.py', *map(str, flags)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"train.py {' '.join(map(str, flags))} failed:\n{out.stderr[-2000:]}")
    print('\n'.join(out.stdout.strip().splitlines()[-3:]) + f"\n[{time.time() - t0:.0f} s]")

# %% [markdown]
# ## 1. The backbone
#
# `train.py --weights` takes a backbone in DINOv2's checkpoint layout (`lorat.load_dinov2`). A size-T
# model trained from scratch by `train.py` is turned into one: its backbone tensors unchanged, its
# head and type table dropped (the LoRA runs train new ones), and a cls entry put in front of its
# position grid, where DINOv2 keeps one.

# %%
def scratch_runs():
    """Finished train.py runs of size T from scratch (no LoRA, no DINOv2), best held-out IoU first: the
    best rather than the newest, so that a short test run does not replace a good model."""
    found = []
    for log in RUNS.glob('**/log.jsonl'):
        records = [json.loads(line) for line in open(log)]
        val = [r['val_iou'] for r in records if 'val_iou' in r]
        if not val or not any(r.get('done') for r in records) or not (log.parent / 'ckpt.pt').exists():
            continue
        c = torch.load(log.parent / 'ckpt.pt', map_location='cpu', weights_only=True)
        if c['config']['size'] == 'T' and c['config']['lora_rank'] == 0 and not c.get('weights') \
                and c['config']['pos_emb'] == 'decoupled':
            found.append((val[-1], log.stat().st_mtime, log.parent / 'ckpt.pt'))
    return [ckpt for *_, ckpt in sorted(found, reverse=True)]


def dinov2_layout(ckpt, path):
    """A from-scratch train.py checkpoint -> a backbone file in DINOv2's layout, for `--weights`."""
    sd = torch.load(ckpt, map_location='cpu', weights_only=True)['model']
    sd = {k: v for k, v in sd.items() if not k.startswith(('head.', 'token_type_embed'))}
    sd['pos_embed'] = torch.cat([torch.zeros_like(sd['pos_embed'][:, :1]), sd['pos_embed']], dim=1)  # (1, 1+N, C)
    torch.save(sd, str(path) + '.tmp')
    os.replace(str(path) + '.tmp', path)
    return path


if DINOV2:
    backbone, size = DINOV2, lorat.size_of_state_dict(lorat.read_state_dict(DINOV2))
    rank = 64  # LoRAT's
    print(f"backbone: DINOv2 ViT-{size}/14 from {DINOV2}")
else:
    size, rank = 'T', 16  # rank 64 of a 128-wide layer would not be low-rank; 16/128 is about B's 64/768
    found = scratch_runs()
    if found:
        source = found[0]
        print(f"backbone: the size-T model of {source.parent}")
    else:
        print("no size-T model in", RUNS, "- pre-training one from scratch on the synthetic world:")
        run_train('pretrain-T', '--seed', SEED, '--val-samples', 16 if QUICK else 256, '--no-export',
                  '--epochs', PRETRAIN['epochs'], '--samples-per-epoch', PRETRAIN['samples_per_epoch'],
                  '--batch-size', PRETRAIN['batch_size'])
        source = OUT / 'pretrain-T' / 'ckpt.pt'
    OUT.mkdir(parents=True, exist_ok=True)
    backbone = dinov2_layout(source, OUT / 'backbone-T.pth')
    log = [json.loads(l) for l in open(source.parent / 'log.jsonl')]
    ious = [r['iou'] for r in log if 'iou' in r]
    val = [r['val_iou'] for r in log if 'val_iou' in r]
    print(f"its training: {len(ious)} steps, last train IoU {np.mean(ious[-20:]):.2f}"
          + (f", held-out IoU {val[-1]:.2f}" if val else ''))

# %% [markdown]
# ## 2. The two models
#
# Identical except the head: the same frozen backbone with LoRA on every block linear layer, the same
# token type table. `lorat.MLPHead`: two 3-layer MLPs applied to each search token on its own.
# `lorat.ConvHead`: OSTrack's towers of 3×3 conv-BatchNorm-ReLU over the tokens laid out as a map —
# the spatial inductive bias. Both decode boxes the same way (`lorat.decode_ltrb`). Note the conv head
# is also much larger; the gradient norm of the *LoRA* parameters (what reaches the backbone) is the
# fairer comparison than the total, which the bigger head inflates.

# %%
where(lorat.MLPHead.forward)
where(lorat.ConvHead.forward)
where(lorat.conv_tower, show=False)
for head in ('mlp', 'conv'):
    m = lorat.build_model(size, head=head, lora_rank=rank)
    groups = {g: sum(p.numel() for p in ps) for g, ps in train.grad_groups(m).items()}
    print(f"{head:<5} trainable: " + ', '.join(f"{g} {n / 1e3:.0f}k" for g, n in groups.items()))

# %% [markdown]
# ## 3. Training both heads
#
# One `train.py` run per head: same `--seed` (so the same LoRA initialization and the same sequence of
# training pairs, `data.TrainingPairs`), AdamW, cosine schedule, grad clip 1.0. Every step
# `train.train` logs the loss parts and the gradient norm per group (`train.grad_groups`,
# `train.grad_norm`) before clipping:

# %%
where(train.grad_groups, show=False)
where(train.grad_norm)
logs = {}
for head in ('mlp', 'conv'):
    print(f"--head {head}:")
    run_train(f'lora-{head}', '--weights', backbone, '--size', size, '--head', head, '--lora-rank', rank,
              '--seed', SEED, '--epochs', 1, '--samples-per-epoch', STEPS * BATCH,
              '--batch-size', BATCH, '--lr', LR, '--warmup-epochs', 0.05, '--val-samples', 0, '--log-every', 50)
    logs[head] = [r for r in map(json.loads, open(OUT / f'lora-{head}' / 'log.jsonl')) if 'loss' in r]
checks['steps'] = {h: len(l) for h, l in logs.items()}

# %% [markdown]
# ## 4. Loss and gradient norm over steps

# %%
def series(head, key):
    return np.array([r[key] for r in logs[head]])


def smooth(y, k=9 if not QUICK else 1):
    return np.convolve(np.pad(y, (k // 2, k // 2), mode='edge'), np.ones(k) / k, mode='valid')


panels = [('loss', 'loss (cls + reg)', False), ('grad_norm', 'gradient norm, all trainable', True),
          ('grad_norm/lora', 'gradient norm, LoRA (backbone)', True), ('grad_norm/head', 'gradient norm, head', True)]
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
for ax, (key, title, log_y) in zip(axes.flat, panels):
    for head, color in (('mlp', 'tab:blue'), ('conv', 'tab:red')):
        y = series(head, key)
        steps = series(head, 'step')
        ax.plot(steps, y, color=color, alpha=0.25, lw=0.8)
        ax.plot(steps, smooth(y), color=color, label=f'{head} head')
    ax.set(title=title, xlabel='step')
    if log_y:
        ax.set_yscale('log')
    ax.legend()
plt.tight_layout()
plt.show()

# %%
n = len(logs['mlp'])
halves = {'first half': slice(0, max(1, n // 2)), 'second half': slice(n // 2, n)}  # fresh heads move most early
print(f"mean over the steps of each half ({n} steps):")
print(f"{'':<22}" + ''.join(f"{h + ': mlp':>18}{'conv':>8}{'ratio':>7}" for h in halves))
summary = {}
for key in ('loss', 'iou', 'grad_norm', 'grad_norm/lora', 'grad_norm/head', 'grad_norm/type_embed'):
    summary[key] = {h: dict(mlp=float(series('mlp', key)[part].mean()), conv=float(series('conv', key)[part].mean()))
                    for h, part in halves.items()}
    print(f"{key:<22}" + ''.join(f"{v['mlp']:>18.3f}{v['conv']:>8.3f}{v['conv'] / v['mlp']:>7.2f}"
                                 for v in summary[key].values()))
checks['summary'] = summary

# %% [markdown]
# ## 5. What this run shows, and what the paper reports
#
# The paper plots the gradient norm over the training of a one-stream tracker with LoRA and finds it
# higher with a conv head than with the MLP head (the figure "Gradient norm (conv head vs. mlp head)";
# its text gives the direction, no numbers), which is why LoRAT uses the MLP head. The printout below
# reads this run's numbers; keep in mind how small it is:
#
# * a 4-block, 128-wide backbone pre-trained for minutes on the synthetic world, not DINOv2 (pass
#   `LORAT_DINOV2` for the real thing); a few hundred steps of batch 16 instead of 170 epochs of 131k;
# * one seed: differences of a few tens of percent are within run-to-run noise at this scale;
# * the conv head is 20× larger and uses BatchNorm, which changes the gradient scale by itself.

# %%
ratio = lambda key, h: summary[key][h]['conv'] / summary[key][h]['mlp']
for h in halves:
    verdict = 'the direction the paper reports' if ratio('grad_norm/lora', h) > 1 else 'not the direction the paper reports'
    print(f"{h}: the gradient reaching the backbone's LoRA is {ratio('grad_norm/lora', h):.2f}x as large with the conv "
          f"head as with the MLP head ({verdict}); all trainable: {ratio('grad_norm', h):.2f}x; "
          f"loss {summary['loss'][h]['conv']:.2f} (conv) vs {summary['loss'][h]['mlp']:.2f} (mlp)")
checks['lora_grad_ratio'] = {h: ratio('grad_norm/lora', h) for h in halves}
checks['total_grad_ratio'] = {h: ratio('grad_norm', h) for h in halves}
print("checks:", {k: v for k, v in checks.items() if k != 'summary'})

# %% [markdown]
# **Reading the committed run** (the T model of `python train.py`, held-out IoU 0.40; 200 steps per
# head). While the fresh heads are being fitted (first half), the gradient reaching LoRA is about 3×
# larger with the conv head, with spikes, and its loss falls far more slowly — the paper's picture of
# a harder optimization. Once both heads have settled (second half) the LoRA gradient norms are about
# equal, while the conv head's loss stays ~1.6× higher and the total norm ~3× (mostly its own, larger
# head) — though its top box is a little better (IoU 0.42 vs 0.37 on the training pairs). So the small run agrees with the paper's direction during adaptation, not as a lasting gap;
# whether the gap persists over a real schedule on DINOv2 is what `LORAT_DINOV2` would show.
