# %% [markdown]
# # 04 · Tracking: from a first box to a trajectory
#
# LoRAT's inference (`track.Tracker`): crop the template once from the first frame around the given box;
# for every later frame, crop a search region around the previous box, run the one-stream ViT, blend
# the score map with a Hanning window, take the best cell's box and map it back to the image. No
# template update, no re-detection.
#
# The tracker's weights, the first of:
#
# * `LORAT_WEIGHTS`: a train.py checkpoint, a merged export, or an official LoRAT file (with
#   `LORAT_BACKBONE` for its DINOv2);
# * `runs/latest`: the newest model of `python train.py` (`LORAT_RUNS` moves `runs/`). With no
#   arguments that is the paper's recipe on the shipped backbone `weights/lorat-T-backbone.pth`: a
#   size-T ViT pre-trained on the synthetic world, in DINOv2's checkpoint layout, which plays DINOv2's
#   role at a scale a CPU can train; frozen, with LoRA on every block linear layer and a fresh token
#   type table and MLP head;
# * else one short epoch of that same recipe, which this notebook runs itself (a few minutes; quick
#   mode: a few steps), into `runs/notebook04/`.
#
# Your own video: `LORAT_VIDEO=clip.mp4 LORAT_INIT=x,y,w,h`.

# %%
import json
import os
import sys
import time
from pathlib import Path

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np
import torch

QUICK = os.environ.get('LORAT_QUICK', '0') == '1'  # CI: short clips, a tiny model
WEIGHTS, BACKBONE = os.environ.get('LORAT_WEIGHTS'), os.environ.get('LORAT_BACKBONE')
VIDEO, INIT = os.environ.get('LORAT_VIDEO'), os.environ.get('LORAT_INIT')
ROOT = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()
RUNS = Path(os.environ.get('LORAT_RUNS', ROOT / 'runs')).resolve()
sys.path[:0] = [str(ROOT), str(ROOT / 'notebooks')]  # the project's scripts, and nbhelp.py
import common  # noqa: E402
import data  # noqa: E402
import lorat  # noqa: E402
import synthetic  # noqa: E402
import track  # noqa: E402
from nbhelp import evaluate_synthetic, rel, train_run, where  # noqa: E402  (where: a function's file:line and source)

plt.rcParams.update({'figure.dpi': 80, 'savefig.dpi': 80})
torch.set_num_threads(1)  # a model of size T gains nothing from a 2nd thread, and loses much when the other core is busy
checks = {}
NUM_CLIPS, LENGTH = (2, 20) if QUICK else (8, 100)  # synthetic test clips to score, frames each

print(f"mode: {'quick (LORAT_QUICK=1)' if QUICK else 'full'}")

# %% [markdown]
# ## 1. The tracker

# %%
def find_weights():
    """LORAT_WEIGHTS; else runs/latest (the newest `python train.py`); else one short epoch of the same recipe."""
    if WEIGHTS:
        return WEIGHTS
    latest = RUNS / 'latest'  # train.py writes the name of its newest run there
    if latest.is_file() and (RUNS / latest.read_text().strip() / 'export.pt').is_file():
        return str(RUNS / latest.read_text().strip() / 'export.pt')
    print(f"no runs/latest in {rel(RUNS)}: one short epoch of `python train.py` "
          f"({'a few steps' if QUICK else 'a few minutes'}); the whole recipe (4 epochs of 8192 pairs) tracks better")
    samples, batch, val = (16, 4, 16) if QUICK else (4096, 16, 256)
    run, *_ = train_run(RUNS / 'notebook04', 'lora-T', '--epochs', 1, '--samples-per-epoch', samples,
                        '--batch-size', batch, '--val-samples', val)
    return str(run / 'export.pt')


def how_trained(weights):
    """One line on how a train.py model was made, read from the ckpt.pt and log.jsonl beside its weights."""
    run = Path(weights).parent
    if not (run / 'ckpt.pt').is_file():
        return 'not a train.py run'
    ckpt = torch.load(run / 'ckpt.pt', map_location='cpu', weights_only=True)
    log = [json.loads(line) for line in open(run / 'log.jsonl')]
    val = [r['val_iou'] for r in log if 'val_iou' in r]
    how = ('from scratch' if not ckpt.get('weights') else
           f"{'full fine-tuning' if ckpt['args'].get('full_finetune') else 'LoRA'} on {rel(ckpt['weights'])}")
    steps = f"{ckpt['step']} steps of {ckpt['args']['batch_size']}"
    return f"train.py, {how}, {steps}" + (f", held-out IoU {val[-1]:.2f}" if val else '')


weights = find_weights()
tracker = track.load_tracker(weights, 'cpu', torch.float32, backbone=BACKBONE)
cfg = tracker.cfg
print(f"weights: {rel(weights)} ({how_trained(weights)})\nmodel {cfg.size}-{cfg.res}: template {cfg.template_size} px, "
      f"search {cfg.search_size} px (area factor {cfg.search_factor:g}), score map {cfg.search_grid}x{cfg.search_grid}")
checks['weights'], checks['how_trained'] = rel(weights), how_trained(weights)

# %% [markdown]
# `track.Tracker.init` crops the template (area factor 2) and builds the foreground mask of the
# template tokens (`lorat.template_fg_mask`, notebook 02). `track.Tracker.update`, per frame:
#
# 1. search window: a square of area factor 4 around the kept box (`track.Tracker.search_params`,
#    `data.crop_params`), cut by the authors' crop (`data.crop`: whole-pixel regions, bilinear without
#    antialiasing, float), padded with the template frame's per-channel mean;
# 2. forward: score logits (H, W) and one box per cell;
# 3. $s = \sigma(\text{logit})$, $s' = 0.55\,s + 0.45\,\mathrm{hann}$ with hann the outer product of two
#    symmetric Hanning windows (`track.HANN_WEIGHT`, `self.hann`): a prior that the target moved little;
# 4. the cell with the highest $s'$ gives the box, mapped back through the crop (`data.box_from_crop`)
#    through the crop's adjusted parameters and clipped to the image: the frame's result; the reported
#    confidence is $s$ there. The result is also the next search center (the kept box), unless it is
#    empty — the target left the view — when the previous kept box stays.

# %%
where(track.Tracker.update)

# %% [markdown]
# ## 2. Tracking a synthetic test clip
#
# A clip of the synthetic world's test split: seeds never used for training, cut from photographs no
# training clip uses (`synthetic.PHOTO_SPLIT`); look-alike distractors, occluders, targets of several parts
# that sometimes turn, the target sometimes leaving the frame. Green: ground truth; red: the tracker.

# %%
clip = synthetic.open_synthetic('test', num=1, length=LENGTH)[0]  # the first test clip: the demo's
show_at = sorted({1, LENGTH // 4, LENGTH // 2, 3 * LENGTH // 4, LENGTH - 1})
boxes, scores, maps = [clip.boxes[0]], [1.0], {}
tracker.init(clip.frame(0), clip.boxes[0])
t0 = time.perf_counter()
for i in range(1, len(clip)):
    frame = clip.frame(i)
    box, score = tracker.update(frame)
    boxes.append(box)
    scores.append(score)
    if i in show_at:
        maps[i] = dict(frame=frame, **tracker.last)
fps = (len(clip) - 1) / (time.perf_counter() - t0)
boxes = np.array(boxes)
iou = lorat.box_iou(lorat.box_xywh_to_xyxy(torch.tensor(boxes)), lorat.box_xywh_to_xyxy(torch.tensor(clip.boxes))).numpy()
print(f"{len(clip)} frames at {fps:.1f} fps (rendering the synthetic frames included); "
      f"mean IoU over visible frames {iou[clip.visible].mean():.2f}")
checks['frames'], checks['mean_iou'] = len(boxes), float(iou[clip.visible].mean())


def draw(ax, box, color, label=None):
    ax.add_patch(patches.Rectangle(box[:2], box[2], box[3], fill=False, color=color, lw=2, label=label))


fig, axes = plt.subplots(1, len(show_at), figsize=(3.2 * len(show_at), 2.8))
for ax, i in zip(axes, show_at):
    ax.imshow(maps[i]['frame'])
    if clip.visible[i]:
        draw(ax, clip.boxes[i], 'lime')
    draw(ax, boxes[i], 'red')
    ax.set_title(f"frame {i}: IoU {iou[i]:.2f}, s {scores[i]:.2f}" + ('' if clip.visible[i] else ' (target absent)'), fontsize=9)
    ax.axis('off')
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Inside one step: the search crop, the raw score map, the blended map
#
# Left: the search crop of frame i (the window around frame i-1's box), with the chosen box. Middle:
# $s$, the sigmoid of the score logits, one per search token. Right: $s'$ after the Hanning blend; the
# cross marks its argmax. A look-alike far from the center can score high in $s$; the blend damps it.

# %%
rows = [i for i in show_at if i != 1][:3]
fig, axes = plt.subplots(len(rows), 3, figsize=(9.5, 3.1 * len(rows)))
for row, i in zip(np.atleast_2d(axes), rows):
    m = maps[i]
    S, g = cfg.search_size, cfg.search_grid
    s, t = m['params']  # the search crop's adjusted parameters
    row[0].imshow(data.crop(data.as_tensor(m['frame']), s, t, S, tracker.fill)[0].permute(1, 2, 0).round().byte().numpy())
    x, y, w, h = boxes[i]
    b = data.box_to_crop([x, y, x + w, y + h], s, t)
    row[0].add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, color='red', lw=2))
    row[0].set_title(f'frame {i}: search crop')
    for ax, key, title in [(row[1], 'score_map', 's = sigmoid(logit)'), (row[2], 'blended', "s' = 0.55 s + 0.45 hann")]:
        im = ax.imshow(m[key].cpu().numpy(), cmap='magma', vmin=0, vmax=1)
        r, c = divmod(int(m[key].argmax()), g)
        ax.plot(c, r, 'c+', ms=14, mew=2)
        ax.set_title(title)
    for ax in row:
        ax.axis('off')
plt.tight_layout()
plt.show()
checks['score_map_shape'] = list(maps[rows[0]]['score_map'].shape)

# %% [markdown]
# Over the whole clip: the IoU with the ground truth and the confidence $s$ per frame (grey: frames
# where the target is absent: they have no IoU, and OPE scoring counts them as failures).

# %%
fig, ax = plt.subplots(figsize=(10, 2.6))
ax.plot(iou, label='IoU with ground truth')
ax.plot(scores, label='confidence s', alpha=0.8)
for i in np.flatnonzero(~clip.visible):
    ax.axvspan(i - 0.5, i + 0.5, color='grey', alpha=0.3, lw=0)
ax.set(xlabel='frame', ylim=(0, 1.02))
ax.legend(loc='lower left')
plt.show()

# %% [markdown]
# ## 4. Success and precision over the synthetic test set
#
# `python evaluate.py run` tracks every clip one pass from its first box (`evaluate.track_sequence`,
# the same `Tracker`), writes pytracking-format results and scores them with pytracking's rules
# (`evaluate.sequence_curves`): **success** = fraction of frames whose IoU exceeds each threshold
# 0, 0.05, …, 1 (AUC = its mean), **precision** = fraction whose center error is ≤ each pixel
# threshold (read at 20 px); frames where the target is absent count as failures.

# %%
import evaluate  # noqa: E402
from IPython.display import Image, display  # noqa: E402

where(evaluate.sequence_curves, show=False)
where(evaluate.curve_scores, show=False)
where(evaluate_synthetic, show=False)  # nbhelp.py: evaluate.py run in a fresh process, its report read back
results = RUNS / 'notebook04' / 'results' / f"LoRAT-{cfg.size}{cfg.res}"
t0 = time.time()
scores_json, per_clip, table = evaluate_synthetic(weights, results, NUM_CLIPS, LENGTH, workers=2, backbone=BACKBONE)
print('\n'.join(table.strip().splitlines()[-3:]))
print(f"[{time.time() - t0:.0f} s for {NUM_CLIPS} clips x {LENGTH} frames]")
checks['AUC'], checks['P'] = scores_json['AUC'], scores_json['P']
for plot in ('success.png', 'precision.png'):
    display(Image(filename=str(results / 'report' / plot), width=420))

# %% [markdown]
# For scale: LoRAT-B-224 reaches a LaSOT success AUC of 71.7 and LoRAT-g-378 76.2 (the paper's
# table): LoRA on DINOv2 backbones (pre-trained on 142M images), trained on four large tracking
# datasets on 8 GPUs. The model here is the one section 1 names: by default size T, LoRA on the
# shipped backbone (itself pre-trained on the synthetic world on a CPU), trained on a CPU. The numbers
# above say how well *it* tracks *these* clips, nothing about the paper's models.
#
# ## 5. Your own video
#
# Set `LORAT_VIDEO` (mp4/mov/avi/mkv or a folder of images) and `LORAT_INIT=x,y,w,h` (the target's
# first-frame box in pixels) and re-run: `track.track` writes an annotated mp4 next to the notebook's
# runs and the frames below come from it. The same as `python track.py VIDEO --init x,y,w,h`.

# %%
if VIDEO:
    if not INIT:
        raise SystemExit("set LORAT_INIT=x,y,w,h: the target's box in the first frame")
    annotated = RUNS / 'notebook04' / (Path(VIDEO).stem + '_lorat.mp4')
    annotated.parent.mkdir(parents=True, exist_ok=True)
    user_boxes, user_scores, seconds = track.track(tracker, track.Frames(VIDEO), str(annotated),
                                                   init=common.box_xywh(INIT), progress=False)
    print(f"{len(user_boxes)} frames, {len(user_boxes) / seconds:.1f} fps end to end; annotated video: {rel(annotated)}")
    checks['video_frames'] = len(user_boxes)
    picks = set(np.linspace(0, len(user_boxes) - 1, 4).round().astype(int))
    frames = [f for i, f in enumerate(track.Frames(str(annotated))) if i in picks]
    fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 3))
    for ax, f, i in zip(np.atleast_1d(axes), frames, sorted(picks)):
        ax.imshow(f)
        ax.set_title(f'frame {i}')
        ax.axis('off')
    plt.tight_layout()
    plt.show()
else:
    print("no LORAT_VIDEO given: nothing to track here")

# %%
print("checks:", checks)
