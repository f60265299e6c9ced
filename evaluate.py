"""
Evaluate LoRAT on tracking datasets the way the papers do (one-pass evaluation, OPE), and time it.

    python evaluate.py run --dataset lasot --root /data/LaSOT --weights runs/$(cat runs/latest)/export.pt
    python evaluate.py score --dataset lasot --root /data/LaSOT --results results/A results/B
    python evaluate.py pack --dataset got10k_test --results results/A     # the server's zip
    python evaluate.py efficiency --device cuda --sizes B,L,g --res 224,378   # the speed test

`score` reads result folders (pytracking's format: one `x,y,w,h` line per frame; ours or anyone's published raw
results) and annotation files (never an image), with the rules of pytracking's analysis code, which LoRAT and most
trackers report with (GOT-10k val: the got10k toolkit's). `run` tracks every sequence with track.py's Tracker into
a result folder of one model (model.json), resumable, then scores or packs. `efficiency`: the paper's
inference-efficiency table (params, MACs, fps), the tracker end to end on a video, the training data pipeline.
"""
import argparse
import csv
import functools
import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

import common
import data
import lorat
import synthetic
import track

# -----------------------------------------------------------------------------
# The OPE metrics, pytracking's analysis rules (`extract_results.py`, `plot_results.py`): a tracker's boxes
# against the ground truth -> success, precision and normalized-precision curves -> AUC, P, NP, OP50, OP75.
# LaSOT, LaSOT_ext, TNL2K, OTB and TrackingNet-style sets are scored with these.

# The overlap thresholds are exactly pytracking's torch.arange(0, 1.05, 0.05) in float64: it yields
# 0.6500000000000001 and 0.7500000000000001 where 13 * 0.05 gives 0.65 and 0.75, and an IoU sitting
# exactly on a threshold must fall on the same side as in the reference.
SUCCESS_THRESHOLDS = torch.arange(0.0, 1.05, 0.05, dtype=torch.float64).numpy()  # 21 values, 0..1
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # pixels 0..50; precision is read at 20
NORM_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0  # 0..0.5; normalized precision at 0.2
PRECISION_AT = 20  # index into CENTER_THRESHOLDS (20 px) and NORM_THRESHOLDS (0.20)
OP50, OP75 = 10, 15  # indices of the 0.5 and 0.75 overlap thresholds

# Datasets that get pytracking's LaSOT-only rules: results shorter than the gt are an error, and
# frames where the target is not visible fail both center errors (elsewhere the normalized one passes).
# pytracking names the LaSOT extension 'lasot_extension_subset', so it does NOT get these rules.
LASOT_RULES = ('lasot',)


def clean_results(pred, gt, dataset):
    """A tracker's raw boxes (N, 4) -> boxes (T, 4) aligned with the ground truth, by pytracking's rules."""
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():  # a broken result file, not a tracking failure
        raise ValueError("invalid result: NaN or negative width/height (pytracking refuses such files)")
    if np.isnan(gt).any():
        raise ValueError("ground truth has NaN boxes: this split's annotations are withheld "
                         "(score it on the dataset's evaluation server: `evaluate.py pack`)")
    for i in range(1, len(pred)):  # a box of zero w or h is the previous (already cleaned) box, frame 0 excepted
        if (pred[i, 2:] == 0).any():
            pred[i] = pred[i - 1]
    if len(pred) > len(gt):  # longer: truncated; shorter: an error on LaSOT, else padded with zero boxes (failures)
        pred = pred[:len(gt)]
    elif len(pred) < len(gt):
        if dataset in LASOT_RULES:
            raise ValueError(f"result has {len(pred)} boxes for {len(gt)} frames (LaSOT: shorter results "
                             f"are an error)")
        pred = np.concatenate([pred, np.zeros((len(gt) - len(pred), 4))])
    pred[0] = gt[0]  # the tracker was given it
    return pred


def iou_pytracking(pred, gt):
    """IoU of x,y,w,h boxes with pytracking's +1 pixel convention for the intersection: a box covers
    pixels x .. x+w-1, so the overlap side is min(x2) - max(x1) + 1; areas stay w*h. (T,4),(T,4)->(T,).
    (Algebraically the -1 and +1 cancel; they are kept so the floating-point rounding is the reference's.)"""
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    inter = np.clip(br - tl + 1.0, 0, None).prod(1)
    union = pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return inter / union  # 0/0 only on invalid gt frames, which are overwritten


def center_error(pred, gt, normalized=False):
    """Distance of box centers, center = x + 0.5 * (w - 1) (pixel-index convention). Normalized: both
    centers divided by the gt's w and h first (so the error is in units of the target size). (T,)."""
    c_pred = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    c_gt = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    with np.errstate(divide='ignore', invalid='ignore'):  # zero-size gt: inf/NaN, overwritten (invalid)
        if normalized:
            c_pred, c_gt = c_pred / gt[:, 2:], c_gt / gt[:, 2:]
        return np.sqrt(((c_pred - c_gt) ** 2).sum(1))


def sequence_errors(pred, gt, visible, dataset):
    """Per-frame IoU, center error and normalized center error (T,) each, and the valid frames, by pytracking's
    rules: a frame is valid when its gt has w, h > 0 and the target is visible (where the dataset has flags)."""
    pred = clean_results(pred, gt, dataset)
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0) & visible
    iou = iou_pytracking(pred, gt)
    err = center_error(pred, gt)
    err_norm = center_error(pred, gt, normalized=True)
    # invalid frames fail every IoU and center-error threshold, and pass every normalized one...
    iou[~valid], err[~valid], err_norm[~valid] = -1.0, np.inf, -1.0
    if dataset in LASOT_RULES:  # ... except on LaSOT, where a frame without the target fails that one too
        err[~visible], err_norm[~visible] = np.inf, np.inf
    if np.isnan(iou).any():
        raise ValueError("NaN in the computed overlaps")
    return iou, err, err_norm, valid


def sequence_curves(pred, gt, visible, dataset):
    """One sequence's success, precision and normalized-precision curves: the fraction of ALL its frames (invalid
    ones failing, as above) with IoU strictly greater than each threshold, and center error <= each threshold."""
    iou, err, err_norm, _ = sequence_errors(pred, gt, visible, dataset)
    n = len(gt)  # pytracking's default: averaged over the full length, not over valid frames
    return {'success': (iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n,  # (21,)
            'precision': (err[:, None] <= CENTER_THRESHOLDS[None]).sum(0) / n,  # (51,)
            'norm_precision': (err_norm[:, None] <= NORM_THRESHOLDS[None]).sum(0) / n}  # (51,)


def curve_scores(curves):
    """Figures (in %) from one or more sequences' curves; sequences weigh equally.
    AUC = mean of the success curve over its 21 thresholds (so a perfect tracker gets 20/21 = 95.24:
    IoU 1 is not > 1); precision at 20 px; normalized precision at 0.2; OP50/OP75 = success at 0.5/0.75."""
    success = np.mean([c['success'] for c in curves], 0) * 100
    precision = np.mean([c['precision'] for c in curves], 0) * 100
    norm_precision = np.mean([c['norm_precision'] for c in curves], 0) * 100
    return {'AUC': float(success.mean()), 'P': float(precision[PRECISION_AT]),
            'NP': float(norm_precision[PRECISION_AT]), 'OP50': float(success[OP50]),
            'OP75': float(success[OP75])}


# -----------------------------------------------------------------------------
# GOT-10k val: the official got10k toolkit's rules


def iou_got10k(pred, gt, bound=None):
    """The got10k toolkit's IoU: no +1 (a box spans x .. x+w), both boxes first clipped to the image `bound`
    (width, height from meta_info.ini) when known, eps in the union, clipped to [0, 1]."""
    pred, gt = np.array(pred, dtype=np.float64), np.array(gt, dtype=np.float64)
    if bound is not None:
        for b in (pred, gt):
            b[:, 0] = np.clip(b[:, 0], 0, bound[0])
            b[:, 1] = np.clip(b[:, 1], 0, bound[1])
            b[:, 2] = np.clip(b[:, 2], 0, bound[0] - b[:, 0])
            b[:, 3] = np.clip(b[:, 3], 0, bound[1] - b[:, 1])
    x1 = np.maximum(pred[:, 0], gt[:, 0])
    y1 = np.maximum(pred[:, 1], gt[:, 1])
    x2 = np.minimum(pred[:, 0] + pred[:, 2], gt[:, 0] + gt[:, 2])
    y2 = np.minimum(pred[:, 1] + pred[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def got10k_sequence_ious(pred, gt, cover, bound=None):
    """The IoUs a GOT-10k val sequence contributes: the result must have exactly one box per frame;
    frame 0 (the given box) is dropped; only frames whose cover label is > 0 (target visible) count."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"result has {len(pred)} boxes for {len(gt)} frames (GOT-10k needs exactly one per frame)")
    iou = iou_got10k(pred[1:], gt[1:], bound)
    return iou[np.asarray(cover)[1:] > 0]


def got10k_scores(ious):
    """AO, SR@0.5, SR@0.75 (in %) over the IoUs of all frames of all sequences pooled together:
    frame-weighted, so long sequences weigh more (unlike the OPE average over sequences)."""
    ious = np.concatenate(ious) if isinstance(ious, list) else ious
    return {'AO': float(np.mean(ious) * 100), 'SR50': float(np.mean(ious > 0.5) * 100),
            'SR75': float(np.mean(ious > 0.75) * 100)}


# -----------------------------------------------------------------------------
# Ground truth and result files


def is_got10k_val(dataset, split):
    return dataset == 'got10k_val' or (dataset == 'got10k' and split == 'val')


def sequence_folder(seq):
    """The folder of a sequence's annotation files, from its first frame's path (never opened); None if none."""
    if getattr(seq, 'frames', None) is None:
        return None
    try:
        path = Path(seq.path(0))
    except (IndexError, OSError):
        return None
    folder = path.parent.parent if path.parent.name in ('img', 'imgs') else path.parent
    return folder if (folder / 'groundtruth.txt').exists() else None


def target_visible(seq, dataset):
    """pytracking's `target_visible`: on LaSOT (and its extension) the raw flags (not full_occlusion, not
    out_of_view) without data.py's gt-box check, kept apart as pytracking does: a zero-size box of a visible target
    is invalid, yet its normalized center error passes. Elsewhere the sequence's own visibility."""
    folder = sequence_folder(seq) if dataset in ('lasot', 'lasot_ext') else None
    if folder is None or not (folder / 'full_occlusion.txt').exists():
        return np.asarray(seq.visible, dtype=bool)
    visible = np.ones(len(seq), dtype=bool)
    for flag in ('full_occlusion.txt', 'out_of_view.txt'):
        if (folder / flag).exists():
            visible &= data.read_flags(folder / flag, len(seq)) == 0
    return visible


def got10k_cover_and_bound(seq):
    """cover.label per frame and the image size from meta_info.ini, as the toolkit reads them; without those files
    (synthetic, custom) the sequence's visibility and no clipping."""
    folder = sequence_folder(seq)
    cover, bound = np.asarray(seq.visible, dtype=np.int64), None
    if folder is not None and (folder / 'cover.label').exists():
        cover = data.read_flags(folder / 'cover.label', len(seq))
    if folder is not None and (folder / 'meta_info.ini').exists():
        m = re.search(r'resolution:\s*\((\d+),\s*(\d+)\)', (folder / 'meta_info.ini').read_text())
        bound = (int(m.group(1)), int(m.group(2))) if m else None
    return cover, bound


def name_key(name):
    """Sequence names compared loosely: 'Basketball', 'basketball', 'air-plane_1' and 'airplane1' find each other."""
    return re.sub(r'[-_. ]', '', name).lower()


def result_finder(folder):
    """The result files under a folder -> find(sequence name): its file by exact name, else by name_key, else None.
    Accepts `<seq>.txt` (pytracking) and `<seq>/<seq>_001.txt` (got10k toolkit, first repetition)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"result folder {folder} is a file, not a folder: pass the folder that holds "
                                 f"the result files")
    if not folder.is_dir():
        raise FileNotFoundError(f"result folder {folder} does not exist (pass --results DIR ...)")
    exact, loose = {}, {}
    for path in sorted(folder.rglob('*')):
        stem = path.stem
        if path.suffix.lower() != '.txt' or stem.lower().endswith('_time'):
            continue
        if re.fullmatch(r'.+_\d{3}', stem) and path.parent.name == stem[:-4]:
            if not stem.endswith('_001'):
                continue  # further repetitions of a stochastic tracker: the first one is scored
            stem = stem[:-4]
        exact.setdefault(stem, path)
        loose.setdefault(name_key(stem), path)
    return lambda name: exact.get(name) or loose.get(name_key(name))


def read_results(path, dataset=None):
    """pytracking's result format (x,y,w,h a line; commas, tabs or spaces) in the dataset's own convention
    (LaSOT's 1-based) -> 0-based boxes, as the ground truth is read."""
    return data.boxes_from_file(data.read_boxes(path), dataset)


# -----------------------------------------------------------------------------
# score: every tracker on every sequence -> table, plots, per-sequence CSV


def score_tracker(folder, sequences, dataset, split, skip_missing=False):
    """One result folder against the ground truth -> {sequence name: its curves (OPE) or IoUs (GOT-10k val)}."""
    find = result_finder(folder)
    records = {}
    for seq in sequences:
        path = find(seq.name)
        if path is None and skip_missing:
            continue
        if path is None:
            raise FileNotFoundError(f"{folder} has no result for sequence {seq.name} "
                                    f"(expected {seq.name}.txt; --skip-missing scores the sequences present)")
        pred = read_results(path, dataset)
        if len(pred) > len(seq):
            raise ValueError(f"{path}: {len(pred)} boxes for the {len(seq)} frames of {seq.name}: results of "
                             f"another sequence or dataset? score results made on this one")
        nan = np.flatnonzero(np.isnan(seq.boxes).any(1))
        if len(nan) and not is_got10k_val(dataset, split) and len(nan) < len(seq) - 1:  # all but the first: withheld
            folder = sequence_folder(seq)
            where = folder / 'groundtruth.txt' if folder else f"the ground truth of {seq.name}"
            raise ValueError(f"{where}: line {nan[0] + 1} is not a number (NaN): the ground truth is damaged, "
                             f"not the result; fix that line (an absent target is 0,0,0,0)")
        try:
            if is_got10k_val(dataset, split):
                cover, bound = got10k_cover_and_bound(seq)
                records[seq.name] = {'ious': got10k_sequence_ious(pred, seq.boxes, cover, bound)}
            else:
                visible = target_visible(seq, dataset)
                records[seq.name] = {**sequence_curves(pred, seq.boxes, visible, dataset),
                                     **held_and_tightness(pred, seq.boxes, visible, dataset)}
                if len(pred) < len(seq):  # pytracking pads it (off LaSOT, where it is an error): so do we, and say so
                    print(f"warning: {path}: {len(pred)} boxes for {len(seq)} frames: scored with the missing "
                          f"ones as zero boxes (failures), pytracking's rule", file=sys.stderr)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return records


def held_and_tightness(pred, gt, visible, dataset):
    """Where a sequence's score is lost (not a figure the papers report): `held` is the share of its valid frames
    whose predicted box center lies inside the true box, `iou_held` the mean IoU over those frames. A low AUC
    with a high `held` is loose boxes; with a low `held`, a lost target."""
    iou, _, _, valid = sequence_errors(pred, gt, visible, dataset)
    pred = clean_results(pred, gt, dataset)  # what sequence_errors scored
    center = pred[:, :2] + pred[:, 2:] / 2  # (T, 2)
    held = valid & np.all((center >= gt[:, :2]) & (center <= gt[:, :2] + gt[:, 2:]), 1)  # (T,)
    return {'held': float(held.sum() / valid.sum()) if valid.any() else float('nan'),
            'iou_held': float(iou[held].mean()) if held.any() else float('nan')}


def summarize(records, names, got10k):
    """Figures over the sequences `names`: GOT-10k's pooled over frames, else the OPE average over sequences."""
    if got10k:
        return got10k_scores([records[n]['ious'] for n in names])
    return curve_scores([records[n] for n in names])


def per_sequence_rows(tracker, got10k):
    """A CSV row per sequence: tracker, sequence, its own figures, then (OPE) `held` and `iou_held`."""
    for name in tracker['names']:
        rec = tracker['records'][name]
        figures = summarize(tracker['records'], [name], got10k)
        if not got10k:
            figures.update(held=100 * rec['held'], iou_held=rec['iou_held'])
        yield {'tracker': tracker['name'], 'sequence': name, **{k: f"{v:.4f}" for k, v in figures.items()}}


def plot_curves(path, x, curves, labels, xlabel, ylabel, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for y, label in zip(curves, labels):
        ax.plot(x, y, linewidth=2, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(x[0], x[-1]), ylim=(0, 100))
    ax.grid(True, alpha=0.4)
    ax.legend(loc='lower left' if 'Success' in title else 'lower right', fontsize=9)
    fig.tight_layout()
    common.write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format='png'))
    plt.close(fig)


# The OPE plots: file, curve, the figure in the legend, thresholds, axis labels, title
OPE_PLOTS = [('success.png', 'success', 'AUC', SUCCESS_THRESHOLDS, 'Overlap threshold', 'Success rate (%)', 'Success'),
             ('precision.png', 'precision', 'P', CENTER_THRESHOLDS, 'Location error threshold (px)', 'Precision (%)',
              'Precision'),
             ('norm_precision.png', 'norm_precision', 'NP', NORM_THRESHOLDS, 'Normalized location error threshold',
              'Normalized precision (%)', 'Normalized precision')]


def plot_ope(report, trackers, dataset):
    """success.png (AUC in the legend), precision.png and norm_precision.png (value at 20 px / 0.2)."""
    for file, curve, figure, x, xlabel, ylabel, title in OPE_PLOTS:
        order = sorted(trackers, key=lambda t: -t['figures'][figure])
        plot_curves(report / file, x, [np.mean([t['records'][n][curve] for n in t['names']], 0) * 100 for t in order],
                    [f"{t['name']} [{t['figures'][figure]:.2f}]" for t in order], xlabel, ylabel,
                    f'{title} plot of OPE on {dataset}')


def plot_got10k(report, trackers):
    """The got10k toolkit's success plot: 101 thresholds, frame-pooled, AO in the legend."""
    thresholds = np.linspace(0, 1, 101)
    order = sorted(trackers, key=lambda t: -t['figures']['AO'])
    curves = []
    for t in order:
        ious = np.concatenate([t['records'][n]['ious'] for n in t['names']])
        curves.append((ious[:, None] > thresholds[None]).mean(0) * 100)
    plot_curves(report / 'success.png', thresholds, curves,
                [f"{t['name']} [{t['figures']['AO']:.2f}]" for t in order],
                'Overlap threshold', 'Success rate (%)', 'Success plot on GOT-10k val')


def score(folders, sequences, dataset, split=None, report=None, skip_missing=False):
    """Result folders -> [{'name', 'figures', 'sequences'}]; writes the report files into the folder `report`."""
    got10k = is_got10k_val(dataset, split)
    trackers = []
    for folder in folders:
        records = score_tracker(folder, sequences, dataset, split, skip_missing)
        trackers.append({'name': Path(folder).resolve().name, 'records': records})
    # like pytracking's skip_missing_seq: a sequence counts only when every tracker has it
    common = [s.name for s in sequences if all(s.name in t['records'] for t in trackers)]
    if not common:
        raise ValueError("no sequence has results from every tracker: nothing to score")
    for t in trackers:
        t['names'] = common
        t['figures'] = summarize(t['records'], common, got10k)
    if report is not None:
        write_report(Path(report), trackers, dataset, got10k)
    return [{'name': t['name'], 'figures': t['figures'], 'sequences': len(common)} for t in trackers]


def write_report(report, trackers, dataset, got10k):
    """scores.json, per_sequence.csv and the plots."""
    summary = [{'name': t['name'], 'sequences': len(t['names']), **t['figures']} for t in trackers]
    common.write_text_atomic(report / 'scores.json', json.dumps(summary, indent=1))
    rows = [row for t in trackers for row in per_sequence_rows(t, got10k)]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    common.write_text_atomic(report / 'per_sequence.csv', table.getvalue())
    if got10k:
        plot_got10k(report, trackers)
    else:
        plot_ope(report, trackers, dataset)


def print_table(results):
    width = max(len(r['name']) for r in results)
    for r in results:
        figures = "  ".join(f"{k} {v:6.2f}" for k, v in r['figures'].items())
        print(f"{r['name']:<{width}}  {figures}  ({r['sequences']} seqs)")


# -----------------------------------------------------------------------------
# Server files: GOT-10k test and TrackingNet test are scored by their evaluation servers


def server_files(dataset, name, boxes, times):
    """A sequence's files in the server's zip. GOT-10k test (the toolkit's layout): `<seq>/<seq>_001.txt` (repetition
    1, frame 0 included) and `<seq>/<seq>_time.txt` (the server's fps skips zeros). TrackingNet: `<seq>.txt`."""
    if dataset == 'got10k_test':
        return {f"{name}/{name}_001.txt": common.box_lines(boxes, 3),
                f"{name}/{name}_time.txt": ''.join(f"{t:.8f}\n" for t in times)}
    return {f"{name}.txt": common.box_lines(boxes, 4)}


def read_times(result_path, n):
    """Per-frame seconds from `<seq>_time.txt` beside a result file; zeros when there is none (or not n)."""
    path = Path(result_path).with_name(Path(result_path).stem + '_time.txt')
    times = np.array(path.read_text().replace(',', ' ').split(), dtype=np.float64) if path.exists() else []
    return times if len(times) == n else np.zeros(n)


def pack(dataset, results, names):
    """The server's zip of the sequences (or names) `names` beside the result folder: <folder>_<dataset>.zip. Each
    result is checked first (present, finite, a box per frame): the server scores a bad file as failures, silently."""
    if dataset not in ('got10k_test', 'trackingnet'):
        raise ValueError(f"no server file for {dataset}: pack got10k_test or trackingnet")
    results = Path(results)
    find, out = result_finder(results), results.with_name(f"{results.name}_{dataset}.zip")
    files = {}
    for seq in names:
        name, frames = (seq, None) if isinstance(seq, str) else (seq.name, len(seq))
        path = find(name)
        if path is None:
            raise FileNotFoundError(f"{results} has no result for {name}: run it first")
        boxes = read_results(path)
        if not np.isfinite(boxes).all():
            raise ValueError(f"{path}: line {int(np.flatnonzero(~np.isfinite(boxes).all(1))[0]) + 1} is not a finite "
                             f"box (NaN or inf): the server needs a box on every frame; track the sequence again")
        if frames is not None and len(boxes) != frames:
            raise ValueError(f"{path}: {len(boxes)} boxes for the {frames} frames of {name}: the server needs "
                             f"exactly one per frame; track the sequence again (delete the file, then `run`)")
        files.update(server_files(dataset, name, boxes, read_times(path, len(boxes))))

    def write(tmp):
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
            for arcname, text in files.items():
                z.writestr(arcname, text)
    common.write_atomic(out, write)
    return out


# -----------------------------------------------------------------------------
# run: track every sequence (parallel, resumable), then score


def track_sequence(tracker, seq):
    """One pass: init on frame 0 with the gt box, update on every later frame, never re-initialized.
    -> boxes (T, 4) (row 0 = the gt box) and seconds per frame."""
    boxes, times = np.zeros((len(seq), 4)), np.zeros(len(seq))
    start = time.perf_counter()
    tracker.init(seq.frame(0), seq.boxes[0])
    times[0] = time.perf_counter() - start
    boxes[0] = seq.boxes[0]
    for i in range(1, len(seq)):
        frame = seq.frame(i)  # decoding is not the tracker's time
        start = time.perf_counter()
        boxes[i], _ = tracker.update(frame)
        times[i] = time.perf_counter() - start
    return boxes, times


def write_sequence_result(out, name, boxes, times, dataset=None):
    """`<seq>_time.txt`, then `<seq>.txt`, the mark of a finished sequence, in the dataset's own convention
    (LaSOT: 1-based, as the authors write them)."""
    out = Path(out)
    common.write_text_atomic(out / f"{name}_time.txt", ''.join(f"{t:.6f}\n" for t in times))
    common.write_text_atomic(out / f"{name}.txt", common.box_lines(data.boxes_to_file(boxes, dataset)))


def is_finished(out, seq):
    """A sequence is done when its result file holds one box per frame. A synthetic clip's name does not say
    its length: a result of another --length (another clip of that name) is tracked again."""
    path = Path(out) / f"{seq.name}.txt"
    return path.exists() and len(read_results(path)) == len(seq)


# A result folder holds one model's results (finished sequences are skipped): model.json in it says which
MODEL_RECORD = 'model.json'
SAME_MODEL = ('weights_sha256', 'backbone_sha256', 'res', 'dtype')


def model_record(weights, backbone=None, res=None, dtype=None):
    """What makes results: the weights (and backbone) by absolute path and sha256, the resolution, the dtype."""
    record = {'weights': str(Path(weights).resolve()), 'weights_sha256': common.file_sha256(weights)}
    if backbone:
        record.update(backbone=str(Path(backbone).resolve()), backbone_sha256=common.file_sha256(backbone))
    return {**record, 'res': res, 'dtype': dtype}


def default_result_folder(record, dataset):
    """results/<model>-<sha256[:8]>_<dataset>: <model> is the weights' file name, after its folder's name for
    train.py's export.pt and ckpt.pt (the run's name); the hash tells apart two files of one name."""
    path = Path(record['weights'])
    name = f"{path.parent.name}-{path.stem}" if path.stem in ('export', 'ckpt') else path.stem
    return Path('results') / f"{name}-{record['weights_sha256'][:8]}_{dataset}"


def claim_result_folder(out, record, retrack=False, names=None):
    """Make `out` the folder of this model's results: new, or this model's (a killed run resumes); another's are
    refused. --retrack deletes the result files of the sequences `names` (every one when None), never another file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder: give a folder for the results")
    results = sorted(out.glob('*.txt')) if out.is_dir() else []
    try:
        old = json.loads((out / MODEL_RECORD).read_text()) if (out / MODEL_RECORD).is_file() else None
    except (ValueError, OSError):
        old = {}  # unreadable: a model it does not record
    if old is not None and all(old.get(k) == record.get(k) for k in SAME_MODEL):
        return
    if (old is not None or results) and not retrack:
        maker = (f"{old.get('weights')} (sha256 {str(old.get('weights_sha256'))[:12]}..., {old.get('dtype')})"
                 if old and old.get('weights') else "a model it does not record"
                 + (f" (its {MODEL_RECORD} is unreadable)" if old is not None else ''))
        raise ValueError(f"{out} holds results of {maker}, not of {record['weights']} (sha256 "
                         f"{record['weights_sha256'][:12]}..., {record['dtype']}): pass another --out, or --retrack "
                         f"to replace them")
    ours = None if names is None else {f"{n}{end}" for n in names for end in ('.txt', '_time.txt')}
    for path in results:
        if ours is None or path.name in ours:
            path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot make the result folder {out}: {common.write_error(e, out / 'x')}") from None
    common.write_text_atomic(out / MODEL_RECORD, json.dumps(record, indent=1) + '\n')


# The worker processes: each opens the dataset (annotations only) and loads the tracker once.
_WORKER = {}


def worker_init(spec, make_tracker, devices):
    device = devices.get()  # one device per worker, handed out round-robin from a queue
    if str(device).startswith('cuda'):
        torch.cuda.set_device(device)  # this worker's GPU is its current one: no stray context on GPU 0
    torch.set_num_threads(max(1, spec.pop('threads', 1)))
    _WORKER['seqs'] = {s.name: s for s in open_sequences(**spec)}
    _WORKER['tracker'] = make_tracker(device)


def worker_track(name, out):
    seq = _WORKER['seqs'][name]
    boxes, times = track_sequence(_WORKER['tracker'], seq)
    write_sequence_result(out, name, boxes, times, seq.dataset)
    return name, len(seq), float(times.sum())


def open_sequences(dataset, root=None, split=None, num=None, length=None, limit=None, partial=False):
    """The sequences of a dataset (annotations only); `limit`: the first N (a quick look)."""
    options = {k: v for k, v in (('num', num), ('length', length)) if v is not None}
    seqs = list(data.open_dataset(dataset, root, split, partial=partial, **options))
    return seqs[:limit] if limit else seqs


def track_all(seqs, out, make_tracker, workers=1, spec=None, devices=('cpu',)):
    """Track every sequence without a result yet, a line with the ETA after each; -> the names tracked now. workers > 1:
    spawned processes, devices round-robin, each reopening the dataset from `spec` (sequences do not pickle)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    todo = [s for s in seqs if not is_finished(out, s)]
    if len(todo) < len(seqs):
        print(f"resuming: {len(seqs) - len(todo)} of {len(seqs)} sequences already have results in {out}",
              file=sys.stderr)
    progress = common.Progress(sum(len(s) for s in todo), len(todo))
    if workers <= 1 or len(todo) <= 1:
        tracker = make_tracker(devices[0]) if todo else None
        for seq in todo:
            boxes, times = track_sequence(tracker, seq)
            write_sequence_result(out, seq.name, boxes, times, seq.dataset)
            progress.finished(seq.name, len(seq), float(times.sum()))
        return [s.name for s in todo]
    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    for k in range(workers):
        queue.put(devices[k % len(devices)])
    threads = max(1, common.available_cpus() // workers)  # the job's CPU affinity, not the machine's cores
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init,
                                initargs=(dict(spec, threads=threads), make_tracker, queue)) as pool:
        futures = [pool.submit(worker_track, s.name, str(out)) for s in todo]
        for f in cf.as_completed(futures):
            progress.finished(*f.result())
    return [s.name for s in todo]


def available_devices(device):
    """'cuda' -> every visible GPU (workers take them round-robin); else the one device, checked (one line)."""
    if device == 'cuda' and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [common.resolve_device(device)]


# -----------------------------------------------------------------------------
# efficiency, the speed test: the paper's inference-efficiency table, tracking end to end, the data pipeline


def compile_for_inference(model, device, backend='inductor'):
    """torch.compile for batch-1 inference: one graph (fullgraph: a break fails loudly, not slowly), static shapes; on a
    GPU a CUDA graph ('reduce-overhead'): one launch a frame, not ~180 kernels (209 fps leaves 4.8 ms a frame)."""
    mode = 'reduce-overhead' if str(device).startswith('cuda') and backend == 'inductor' else None
    return torch.compile(model, backend=backend, mode=mode, fullgraph=True, dynamic=False)


def compiled_max_diff(model, compiled, inputs):
    """The largest difference between the compiled and the eager outputs (scores and boxes)."""
    with torch.inference_mode():
        eager, fast = model(*inputs), compiled(*inputs)
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(eager, fast))


def measure_fps(size, res, device, warmup=10, iters=50, compile=False):
    """Forward passes per second (median of `iters`), batch 1, LoRA merged, in the device's best dtype (train.py's
    default); 'OOM' when it does not fit. compile: torch.compile'd, -> (fps, largest difference to eager)."""
    dtype = common.DTYPES[common.default_dtype(device, training=True)]
    model = None
    try:
        with torch.device(device):  # initialized where it runs: a ViT-g drawn on the CPU takes minutes
            model = lorat.build_model(size, res).merge().eval().to(dtype=dtype)
        inputs = lorat.example_inputs(model.cfg, 1, device, dtype)
        forward, diff = model, None
        if compile:
            forward = compile_for_inference(model, device)
            diff = compiled_max_diff(model, forward, inputs)  # the first call compiles
        with torch.inference_mode():
            fps = 1.0 / common.median_seconds(lambda: forward(*inputs), device, warmup, iters)
        return (fps, diff) if compile else fps
    except (torch.OutOfMemoryError, MemoryError):
        return 'OOM'
    except RuntimeError as e:
        if 'out of memory' in str(e).lower() or 'alloc' in str(e).lower():
            return 'OOM'
        raise
    finally:
        del model
        if str(device).startswith('cuda'):
            torch.cuda.empty_cache()


def efficiency(sizes, resolutions, device='cpu', fps=True, warmup=10, iters=50, compile=False):
    """Rows of the table: our model card (params, MACs), fps, and the paper's params / MACs / fps beside them."""
    rows = []
    for size in sizes:
        for res in resolutions:
            card = lorat.model_card(size, res)
            paper = lorat.PAPER.get((size, res), (None, None, None))
            row = {'model': f"{size}-{res}", **card, 'paper_params_M': paper[0], 'paper_macs_G': paper[1],
                   'paper_fps': paper[2]}
            if fps:
                row['fps'] = measure_fps(size, res, device, warmup, iters)
                if compile:
                    fast = measure_fps(size, res, device, warmup, iters, compile=True)
                    row['fps_compiled'], row['compiled_max_diff'] = fast if isinstance(fast, tuple) else (fast, None)
                row['dtype'] = common.default_dtype(device, training=True)
                row['device'] = torch.cuda.get_device_name(device) if str(device).startswith('cuda') else 'cpu'
            rows.append(row)
    return rows


T_RES = lorat.DEFAULT_RES['T']  # the speed tables time T at its default resolution
TRACKING_MODELS = [('T', T_RES, 'fp32'), ('T', T_RES, 'bf16'), ('B', 224, 'fp32'), ('B', 224, 'bf16')]
VIDEO_SIZE = (640, 360)


def time_forward(model, device):
    """A list whose first item accumulates the seconds spent inside model.forward (hooks; synchronized on a GPU)."""
    spent = [0.0]
    sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)

    def before(*_):
        sync()
        spent.append(time.perf_counter())

    def after(*_):
        sync()
        spent[0] += time.perf_counter() - spent.pop()
    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)
    return spent


def tracking_speed(device='cpu', frames=20, models=TRACKING_MODELS):
    """track.py end to end (decode, crop, forward, box, draw, encode) on a 640x360 synthetic mp4 of `frames`
    frames, random weights: fps, the forward's milliseconds a frame and the share of time outside it."""
    import tempfile
    clip = synthetic.synthetic_clip(0, length=max(frames, 2), size=VIDEO_SIZE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, 'clip.mp4')
        common.write_mp4(video, (clip.frame(i) for i in range(len(clip))), 30)
        for size, res, dtype in models:
            tracker = track.Tracker(lorat.build_model(size, res, lora_rank=0), device, common.DTYPES[dtype])
            tracker.init(clip.frame(0), clip.boxes[0])
            tracker.update(clip.frame(1))  # warm-up: kernel selection, allocator
            spent = time_forward(tracker.model, device)
            boxes, _, seconds = track.track(tracker, track.Frames(video), os.path.join(tmp, 'out.mp4'),
                                            init=clip.boxes[0], progress=False)
            rows.append({'model': f"{size}-{res}", 'dtype': dtype, 'frames': len(boxes), 'fps': len(boxes) / seconds,
                         'forward_ms': spent[0] / (len(boxes) - 1) * 1e3, 'outside_forward': 1 - spent[0] / seconds})
    return rows


def print_tracking_speed(rows, device):
    print(f"\ntracking end to end (track.py: decode, crop, forward, box, draw, encode): {rows[0]['frames']} frames "
          f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, random weights, {device}, {torch.get_num_threads()} threads")
    for r in rows:
        print(f"{r['model']} {r['dtype']}: {r['fps']:6.1f} fps, forward {r['forward_ms']:7.1f} ms, "
              f"outside the forward {r['outside_forward'] * 100:4.1f}% of the time")


DATA_CROPS = [lorat.RESOLUTIONS[T_RES], lorat.RESOLUTIONS[224]]  # template px, search px, search area factor


def data_speed(samples=640, workers=(0,), clips=32):
    """Training pairs per second (data.pipeline_speed) of the default data, synthetic clips and stills 3:1, at
    T's and B-224's crops; the `clips` clips made and annotated first, as a run does once (the steady state)."""
    clips = data.open_dataset('synthetic', split='train', num=clips)
    for clip in clips:
        clip.boxes  # made and annotated before the clock starts
    sets = [clips, data.open_dataset('synthetic_stills')]
    return [{'crops': f"{template_size}/{search_size}", 'workers': w,
             'samples_per_s': data.pipeline_speed(sets, [3, 1], template_size, search_size, factor, samples, w)}
            for template_size, search_size, factor in DATA_CROPS for w in workers]


def print_data_speed(rows):
    print(f"\ntraining data pipeline: synthetic clips and stills 3:1, with augmentation, batch 32, "
          f"{torch.get_num_threads()} threads")
    for r in rows:
        print(f"crops {r['crops']:>7}, {r['workers']} loader workers: {r['samples_per_s']:7.0f} samples/s")


def print_efficiency(rows):
    print(f"{'model':<7}{'params M (LoRA, head)':>24}{'merged':>8}{'MACs G':>8}{'fps':>8}   paper: params  MACs  fps")
    for r in rows:
        fps = r.get('fps', '-')
        fps = f"{fps:.1f}" if isinstance(fps, float) else str(fps)
        params = f"{r['params_total_M']:.1f} ({r['params_lora_M']:.1f}, {r['params_head_M']:.2f})"
        paper = '  '.join('-' if v is None else str(v) for v in (r['paper_params_M'], r['paper_macs_G'], r['paper_fps']))
        print(f"{r['model']:<7}{params:>24}{r['params_merged_M']:>8.1f}{r['macs_G']:>8.1f}{fps:>8}   {paper:>22}")
    for r in rows:
        if 'fps_compiled' in r:
            fast, diff = r['fps_compiled'], r['compiled_max_diff']
            fast = f"{fast:.1f} fps" if isinstance(fast, float) else str(fast)
            print(f"{r['model']:<7}compiled: {fast}, largest difference to eager {diff if diff is None else f'{diff:.2e}'}")
    if rows and 'fps' in rows[0]:
        print(f"fps: batch 1, merged LoRA, {rows[0]['dtype']} on {rows[0]['device']}; the paper's on an 80 GB GPU")


SPEED_PARTS = ('model', 'tracking', 'data')


def speed_part(text):
    if text not in SPEED_PARTS:
        raise argparse.ArgumentTypeError(f"unknown part {text!r}: choose from {', '.join(SPEED_PARTS)}")
    return text


def speed_test(args):
    """`efficiency`: the parts asked for, each printed as soon as it is measured."""
    device = available_devices(args.device)[0]
    gpu = device.startswith('cuda')
    if gpu:
        torch.cuda.set_device(device)  # the GPU common.default_dtype asks about
    warmup, iters = (10, 50) if gpu else (2, 5)  # untimed, then timed passes of the model table
    measure = {'model': lambda: efficiency(args.sizes, args.res, device, not args.no_fps, warmup, iters, args.compile),
               'tracking': lambda: tracking_speed(device, args.frames), 'data': lambda: data_speed(args.samples)}
    show = {'model': print_efficiency, 'tracking': lambda rows: print_tracking_speed(rows, device), 'data': print_data_speed}
    tables = {}
    for part in SPEED_PARTS:
        if part in (['model'] if args.no_fps else args.parts):
            tables[part] = measure[part]()
            show[part](tables[part])
    return tables


# -----------------------------------------------------------------------------
# Command line

DATASETS = ['lasot', 'lasot_ext', 'got10k_val', 'got10k_test', 'trackingnet', 'tnl2k', 'otb', 'synthetic', 'custom']
DEFAULT_SPLITS = {'lasot': 'test', 'trackingnet': 'test', 'synthetic': 'test'}  # LaSOT's 280 sequences; TEST


def add_dataset_args(p):
    p.add_argument('--dataset', required=True, choices=DATASETS)
    p.add_argument('--root', '--data-root', dest='root', help="the dataset's folder (or a data root holding it; else $LORAT_DATA)")
    p.add_argument('--split', help="the split to evaluate (default lasot: test, trackingnet: test, synthetic: test; "
                   "'all': every sequence under --root)")
    p.add_argument('--num', type=common.positive_int, help="synthetic: number of sequences")
    p.add_argument('--length', type=common.positive_int, help="synthetic: frames per sequence")
    p.add_argument('--limit', type=common.positive_int, help="only the first N sequences (a quick look)")
    p.add_argument('--partial', action='store_true', help="a dataset only partly present: use the sequences there "
                                                         "(default: refuse it; it says how many of how many)")


def parse_args(argv=None):
    parser = common.Parser(description=__doc__.split('\n\n')[0].strip())
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('run', help="track every sequence, then score (or pack the server file)")
    add_dataset_args(p)
    p.add_argument('--weights', required=True, help="train.py checkpoint, merged export, or official LoRAT file")
    p.add_argument('--backbone', help="DINOv2 weights: for official LoRAT files, and for a ckpt.pt whose backbone has moved")
    p.add_argument('--res', type=lorat.resolution, help="check the checkpoint's resolution")
    p.add_argument('--out', help="result folder (default results/<weights name>-<its sha256[:8]>_<dataset>); "
                                 "it records the model, and refuses another's")
    p.add_argument('--retrack', action='store_true', help="--out holds another model's results: delete them and track again")
    p.add_argument('--workers', type=common.positive_int, default=1, help="tracking processes (GPUs round-robin)")
    p.add_argument('--device', default='cpu', help="cpu, cuda (every GPU) or cuda:N")
    p.add_argument('--dtype', choices=common.DTYPES, help="inference precision: fp16 or bf16 autocast over fp32 weights, or plain fp32. "
                   "Default: fp16 on a GPU (the authors' evaluation), fp32 on a CPU")
    p.add_argument('--report', help="report folder (default <out>/report)")

    p = sub.add_parser('score', help="score result folders (annotations only)")
    add_dataset_args(p)
    p.add_argument('--results', nargs='+', required=True, help="result folders; the folder name is the tracker")
    p.add_argument('--report', help="folder for plots and CSVs (default reports/<dataset>, ignored by git)")
    p.add_argument('--skip-missing', action='store_true', help="score the sequences every tracker has")

    p = sub.add_parser('pack', help="write the server zip of a test split (GOT-10k test, TrackingNet)")
    add_dataset_args(p)
    p.add_argument('--results', required=True, help="the result folder")

    p = sub.add_parser('efficiency', help="the speed test: the paper's inference-efficiency table, tracking fps end to "
                                          "end, the training data pipeline's samples/s")
    p.add_argument('--parts', type=common.csv_of(speed_part, f"parts of {','.join(SPEED_PARTS)}, comma-separated"),
                   default=list(SPEED_PARTS), help=f"what to measure (default all: {','.join(SPEED_PARTS)})")
    p.add_argument('--sizes', type=common.csv_of(lorat.size_name, 'model sizes, comma-separated'), default=['B', 'L', 'g'],
                   help="model table: sizes (default B,L,g)")
    p.add_argument('--res', type=common.csv_of(lorat.resolution, 'resolutions, comma-separated'), default=[224, 378],
                   help="model table: resolutions (default 224,378)")
    p.add_argument('--device', default='cpu', help="cpu, cuda or cuda:N (the data pipeline runs on the CPU)")
    p.add_argument('--no-fps', action='store_true', help="the model table's params and MACs only (no timing at all)")
    p.add_argument('--compile', action='store_true', help="also time torch.compile'd inference (CUDA graphs on a "
                   "GPU) and print its largest difference to eager")
    p.add_argument('--frames', type=common.positive_int, default=20, help="tracking: frames of the 640x360 clip (default 20)")
    p.add_argument('--samples', type=common.positive_int, default=640, help="data pipeline: pairs per measurement (default 640)")
    return parser.parse_args(argv)


# a file that cannot be read or written, a bad annotation: one line
@common.main_errors(ctrl_c="stopped (Ctrl-C): finished sequences keep their results; the same command resumes")
def main(argv=None):
    return command(parse_args(argv))


def command(args):
    if args.command == 'efficiency':
        return speed_test(args)

    split = None if args.split == 'all' else args.split or DEFAULT_SPLITS.get(args.dataset)  # all: every sequence
    spec = dict(dataset=args.dataset, root=args.root, split=split, num=args.num, length=args.length, limit=args.limit,
                partial=args.partial)
    seqs = open_sequences(**spec)
    if args.command == 'pack':
        print(pack(args.dataset, args.results, seqs))
        return
    if args.command == 'score':
        results = score(args.results, seqs, args.dataset, split, args.report or f"reports/{args.dataset}",
                        args.skip_missing)
        print_table(results)
        return results

    # run
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"weights {args.weights} not found (train with train.py, or pass --weights FILE)")
    if args.backbone and not os.path.isfile(args.backbone):
        raise FileNotFoundError(f"--backbone {args.backbone} not found: pass the DINOv2 file the weights were trained on")
    kind, _, detail = lorat.identify_weights(args.weights)  # a wrong kind of file: one line, before any worker starts
    if kind not in ('export', 'checkpoint', 'release'):
        raise ValueError(lorat.wrong_weights(args.weights, kind, detail, '--weights', 'tracker'))
    for seq in seqs:  # the boxes against the frames, before hours of tracking: one line naming the sequence
        seq.check(first_box=True)
    devices = available_devices(args.device)
    dtype = args.dtype or common.default_dtype(devices[0], training=False)
    record = model_record(args.weights, args.backbone, args.res, dtype)
    out = Path(args.out) if args.out else default_result_folder(record, args.dataset)
    claim_result_folder(out, record, args.retrack, [s.name for s in seqs])
    print(f"results: {out}", file=sys.stderr)
    make_tracker = functools.partial(track.load_tracker, args.weights, dtype=dtype, backbone=args.backbone,
                                     res=args.res)  # device -> Tracker, picklable for the worker processes
    track_all(seqs, out, make_tracker, args.workers, spec, devices)
    if args.dataset == 'got10k_test' or (args.dataset == 'trackingnet' and split in (None, 'test', 'TEST')):  # withheld
        print(f"server file: {pack(args.dataset, out, seqs)}")
        return
    results = score([out], seqs, args.dataset, split, args.report or out / 'report')
    print_table(results)
    return results


if __name__ == '__main__':
    main()
