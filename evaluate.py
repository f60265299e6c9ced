"""
Evaluate LoRAT on tracking datasets the way the papers do (one-pass evaluation, OPE), and time it.

    python evaluate.py run --dataset lasot --root /data/LaSOT --weights runs/$(cat runs/latest)/export.pt
    python evaluate.py score --dataset lasot --root /data/LaSOT --results results/A results/B
    python evaluate.py pack --dataset got10k_test --results results/A     # the server's zip
    python evaluate.py efficiency --device cuda --sizes B,L,g --res 224,378   # the speed test

`score` reads result folders (one `x,y,w,h` line per frame per sequence, pytracking's format; ours
or anyone's published raw results) and the ground truth (annotation files only, never an image), and
computes the figures with the rules of pytracking's analysis code (`extract_results.py`,
`plot_results.py`) -- the reference LoRAT and most trackers report with -- and, for GOT-10k val, the
rules of the official got10k toolkit. Every rule is written down where it is applied.

`run` tracks every sequence with track.py's Tracker in worker processes (one per GPU round-robin,
or CPU), skips sequences that already have a result (so a killed run resumes), then scores or packs.
Its result folder records the weights that made it (model.json: path and sha256) and refuses another
model's (--retrack replaces them); by default it is results/<model>-<sha256[:8]>_<dataset>.
(runs/latest holds the name of train.py's newest run; its merged model is runs/<name>/export.pt.)

`efficiency` is the project's speed test: the paper's inference-efficiency table for this implementation
(params, MACs, forward fps), the tracker's fps end to end on a video, and the training data pipeline's
samples per second. (`train.py --benchmark` times training steps: LoRA against full fine-tuning.)
"""
import argparse
import csv
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

import data
import lorat
import synthetic
# the OPE metrics (pytracking's analysis rules) are metrics.py; their names stay importable from here
from metrics import (CENTER_THRESHOLDS, LASOT_RULES, NORM_THRESHOLDS, OP50, OP75, PRECISION_AT, SUCCESS_THRESHOLDS,  # noqa: F401
                     center_error, clean_results, curve_scores, iou_pytracking, sequence_curves, sequence_errors)

# -----------------------------------------------------------------------------
# GOT-10k val: the official got10k toolkit's rules


def iou_got10k(pred, gt, bound=None):
    """The got10k toolkit's IoU: no +1 (a box spans x .. x+w), both boxes first clipped to the image
    (`bound` = (width, height) from meta_info.ini) when known, eps in the union, clipped to [0, 1]."""
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
    """The folder holding a sequence's annotation files, found from its first frame's path (the path
    is only formatted, the image is never opened). None for generated sequences."""
    if getattr(seq, 'frames', None) is None:
        return None
    try:
        path = Path(seq.path(0))
    except (IndexError, OSError):
        return None
    folder = path.parent.parent if path.parent.name in ('img', 'imgs') else path.parent
    return folder if (folder / 'groundtruth.txt').exists() else None


def target_visible(seq, dataset):
    """pytracking's `target_visible`: for LaSOT (and its extension), the raw flags (not full_occlusion
    and not out_of_view) without the gt-box check data.py adds, because pytracking keeps the two apart:
    on LaSOT a zero-size box of a visible target is invalid, yet its normalized center error still
    passes. Elsewhere the sequence's own visibility (w, h > 0, plus the dataset's flags if any)."""
    folder = sequence_folder(seq) if dataset in ('lasot', 'lasot_ext') else None
    if folder is None or not (folder / 'full_occlusion.txt').exists():
        return np.asarray(seq.visible, dtype=bool)
    visible = np.ones(len(seq), dtype=bool)
    for flag in ('full_occlusion.txt', 'out_of_view.txt'):
        if (folder / flag).exists():
            visible &= data.read_flags(folder / flag, len(seq)) == 0
    return visible


def got10k_cover_and_bound(seq):
    """cover.label > 0 per frame and the image size from meta_info.ini, as the toolkit reads them;
    a sequence without those files (synthetic, custom) falls back to its visibility and no clipping."""
    folder = sequence_folder(seq)
    cover, bound = np.asarray(seq.visible, dtype=np.int64), None
    if folder is not None and (folder / 'cover.label').exists():
        cover = data.read_flags(folder / 'cover.label', len(seq))
    if folder is not None and (folder / 'meta_info.ini').exists():
        m = re.search(r'resolution:\s*\((\d+),\s*(\d+)\)', (folder / 'meta_info.ini').read_text())
        bound = (int(m.group(1)), int(m.group(2))) if m else None
    return cover, bound


def name_key(name):
    """Sequence names compared loosely: case and the separators - _ . and spaces ignored, so
    'Basketball', 'basketball', 'air-plane_1' and 'airplane1' find each other."""
    return re.sub(r'[-_. ]', '', name).lower()


def index_results(folder):
    """Every result file under a folder -> ({exact name: path}, {name_key: path}). Accepts `<seq>.txt` (pytracking) and
    `<seq>/<seq>_001.txt` (got10k toolkit, first repetition); skips `*_time.txt`; an exact name wins
    over a loose one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f"error: result folder {folder} is a file, not a folder: pass the folder that holds the result files")
    if not folder.is_dir():
        raise SystemExit(f"error: result folder {folder} does not exist (pass --results DIR ...)")
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
    return exact, loose


def find_result(index, name):
    """The result file of sequence `name`: its exact name first, else a loose match (None if neither)."""
    exact, loose = index
    return exact.get(name) or loose.get(name_key(name))


def read_results(path, dataset=None):
    """pytracking's result format: one box per line, x,y,w,h separated by commas, tabs or spaces, in the
    dataset's own convention (LaSOT's 1-based) -> 0-based boxes, as the ground truth is read."""
    return data.boxes_from_file(data.read_boxes(path), dataset)


# -----------------------------------------------------------------------------
# score: every tracker on every sequence -> table, plots, per-sequence CSV, attributes


# LaSOT's 14 attributes in the order of the toolkit's att/<seq>.txt flag files (and pytracking's table)
LASOT_ATTRIBUTES = ['IV', 'POC', 'DEF', 'MB', 'CM', 'ROT', 'BC', 'VC', 'SV', 'FOC', 'FM', 'OV', 'LR', 'ARC']


def read_attributes(path, sequences):
    """Per-sequence attribute tags -> {sequence name: [tags]}. From `path` (a pytracking-style JSON
    {seq: [tags]}, or a folder of LaSOT toolkit att/<seq>.txt 0/1 flag files), else from each
    sequence's `.attributes` entries that are tag lists ('tags') or booleans. Empty when none."""
    tags = {}
    if path:
        path = Path(path)
        if path.is_dir():
            for seq in sequences:
                f = path / f"{seq.name}.txt"
                if f.exists():
                    flags = [int(float(v)) for v in f.read_text().replace(',', ' ').split()]
                    tags[seq.name] = [a for a, on in zip(LASOT_ATTRIBUTES, flags) if on]
        elif path.is_file():
            table = json.loads(path.read_text())
            tags = {k: v for k, v in table.items() if isinstance(v, list) and not k.startswith('att_name')}
        else:
            raise SystemExit(f"error: attribute file {path} does not exist")
        return tags
    for seq in sequences:
        a = seq.attributes or {}
        found = list(a.get('tags', [])) + [k for k, v in a.items() if isinstance(v, (bool, np.bool_)) and v]
        if found:
            tags[seq.name] = found
    return tags


def score_tracker(folder, sequences, dataset, split, skip_missing=False):
    """One result folder against the ground truth -> {sequence name: per-sequence record}.
    OPE datasets: the record holds the curves; GOT-10k val: the pooled IoUs."""
    index = index_results(folder)
    records = {}
    for seq in sequences:
        path = find_result(index, seq.name)
        if path is None:
            if skip_missing:
                continue
            raise SystemExit(f"error: {folder} has no result for sequence {seq.name} "
                             f"(expected {seq.name}.txt; --skip-missing scores the sequences present)")
        try:
            pred = read_results(path, dataset)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if len(pred) > len(seq):
            raise SystemExit(f"error: {path}: {len(pred)} boxes for the {len(seq)} frames of {seq.name}: results of "
                             f"another sequence or dataset? score results made on this one")
        nan = np.flatnonzero(np.isnan(seq.boxes).any(1))
        if len(nan) and not is_got10k_val(dataset, split) and len(nan) < len(seq) - 1:  # all but the first: withheld
            folder = sequence_folder(seq)
            where = folder / 'groundtruth.txt' if folder else f"the ground truth of {seq.name}"
            raise SystemExit(f"error: {where}: line {nan[0] + 1} is not a number (NaN): the ground truth is damaged, "
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
            raise SystemExit(f"error: {path}: {e}") from None
    return records


def held_and_tightness(pred, gt, visible, dataset):
    """Where a sequence's score is lost, not a figure the papers report: `held` is the share of its valid frames
    whose predicted box center lies inside the true box (the tracker is on the target), `iou_held` the
    mean IoU over those frames (how tight its box is there). A low AUC with a high `held` is loose
    boxes; with a low `held`, a lost target."""
    iou, _, _, valid = sequence_errors(pred, gt, visible, dataset)
    pred = clean_results(pred, gt, dataset)  # what sequence_errors scored
    center = pred[:, :2] + pred[:, 2:] / 2  # (T, 2)
    held = valid & np.all((center >= gt[:, :2]) & (center <= gt[:, :2] + gt[:, 2:]), 1)  # (T,)
    return {'held': float(held.sum() / valid.sum()) if valid.any() else float('nan'),
            'iou_held': float(iou[held].mean()) if held.any() else float('nan')}


def summarize(records, names, got10k):
    """The tracker's overall figures over the given sequences."""
    if got10k:
        return got10k_scores([records[n]['ious'] for n in names])
    return curve_scores([records[n] for n in names])


def per_sequence_rows(tracker, records, got10k):
    """One CSV row per sequence: tracker, sequence, that sequence's own figures, then (OPE datasets)
    where its score is lost: `held` and `iou_held` (held_and_tightness)."""
    for name, rec in records.items():
        figures = got10k_scores([rec['ious']]) if got10k else curve_scores([rec])
        if not got10k:
            figures.update(held=100 * rec['held'], iou_held=rec['iou_held'])
        yield {'tracker': tracker, 'sequence': name, **{k: f"{v:.4f}" for k, v in figures.items()}}


def format_row(name, figures, count, width):
    return f"{name:<{width}}  " + "  ".join(f"{k} {v:6.2f}" for k, v in figures.items()) + f"  ({count} seqs)"


def write_csv(path, rows):
    rows = list(rows)
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    data.write_text_atomic(path, buf.getvalue())


def plot_curves(path, x, curves, labels, xlabel, ylabel, title):
    """One curve per tracker, best first, its figure in the legend (as in the papers)."""
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
    data.write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format='png'))
    plt.close(fig)


def mean_curve(records, names, key):
    return np.mean([records[n][key] for n in names], 0) * 100


def plot_ope(report, trackers, dataset):
    """success.png (AUC in the legend), precision.png and norm_precision.png (value at 20 px / 0.2)."""
    order = sorted(trackers, key=lambda t: -t['figures']['AUC'])
    plot_curves(report / 'success.png', SUCCESS_THRESHOLDS,
                [mean_curve(t['records'], t['names'], 'success') for t in order],
                [f"{t['name']} [{t['figures']['AUC']:.2f}]" for t in order],
                'Overlap threshold', 'Success rate (%)', f'Success plot of OPE on {dataset}')
    order = sorted(trackers, key=lambda t: -t['figures']['P'])
    plot_curves(report / 'precision.png', CENTER_THRESHOLDS,
                [mean_curve(t['records'], t['names'], 'precision') for t in order],
                [f"{t['name']} [{t['figures']['P']:.2f}]" for t in order],
                'Location error threshold (px)', 'Precision (%)', f'Precision plot of OPE on {dataset}')
    order = sorted(trackers, key=lambda t: -t['figures']['NP'])
    plot_curves(report / 'norm_precision.png', NORM_THRESHOLDS,
                [mean_curve(t['records'], t['names'], 'norm_precision') for t in order],
                [f"{t['name']} [{t['figures']['NP']:.2f}]" for t in order],
                'Normalized location error threshold', 'Normalized precision (%)',
                f'Normalized precision plot of OPE on {dataset}')


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


def attribute_rows(trackers, tags, got10k):
    """Per attribute, each tracker's figures over the sequences that have it."""
    attributes = sorted({a for ts in tags.values() for a in ts})
    for attribute in attributes:
        for t in trackers:
            names = [n for n in t['names'] if attribute in tags.get(n, ())]
            if names:
                figures = summarize(t['records'], names, got10k)
                yield {'attribute': attribute, 'tracker': t['name'], 'sequences': len(names),
                       **{k: f"{v:.2f}" for k, v in figures.items()}}


def score(folders, sequences, dataset, split=None, report=None, skip_missing=False, attributes=None):
    """Score result folders -> list of {'name', 'figures', 'sequences'}; writes the report files
    (scores.json, per_sequence.csv, plots, attributes.csv) when `report` is a folder."""
    got10k = is_got10k_val(dataset, split)
    trackers = []
    for folder in folders:
        records = score_tracker(folder, sequences, dataset, split, skip_missing)
        trackers.append({'name': Path(folder).resolve().name, 'records': records})
    # like pytracking's skip_missing_seq: a sequence counts only when every tracker has it
    common = [s.name for s in sequences if all(s.name in t['records'] for t in trackers)]
    if not common:
        raise SystemExit("error: no sequence has results from every tracker: nothing to score")
    for t in trackers:
        t['names'] = common
        t['figures'] = summarize(t['records'], common, got10k)
    if report is not None:
        write_report(Path(report), trackers, sequences, dataset, got10k, attributes)
    return [{'name': t['name'], 'figures': t['figures'], 'sequences': len(common)} for t in trackers]


def write_report(report, trackers, sequences, dataset, got10k, attributes):
    summary = [{'name': t['name'], 'sequences': len(t['names']), **t['figures']} for t in trackers]
    data.write_text_atomic(report / 'scores.json', json.dumps(summary, indent=1))
    write_csv(report / 'per_sequence.csv',
              (row for t in trackers for row in per_sequence_rows(t['name'], {n: t['records'][n] for n in t['names']}, got10k)))
    if got10k:
        plot_got10k(report, trackers)
    else:
        plot_ope(report, trackers, dataset)
    tags = read_attributes(attributes, sequences)
    if tags:
        write_csv(report / 'attributes.csv', attribute_rows(trackers, tags, got10k))


def print_table(results, as_json=False):
    if as_json:
        print(json.dumps(results, indent=1))
        return
    width = max(len(r['name']) for r in results)
    for r in results:
        print(format_row(r['name'], r['figures'], r['sequences'], width))


# -----------------------------------------------------------------------------
# Server files: GOT-10k test and TrackingNet test are scored by their evaluation servers


def got10k_files(name, boxes, times):
    """GOT-10k test (the got10k toolkit's layout): one folder per sequence at the zip's root, holding
    `<seq>_001.txt` (repetition 1; frame 0 included) and `<seq>_time.txt` (seconds per frame, one per
    line; the server's fps skips zeros)."""
    return {f"{name}/{name}_001.txt": data.box_lines(boxes, 3),
            f"{name}/{name}_time.txt": ''.join(f"{t:.8f}\n" for t in times)}


def trackingnet_files(name, boxes, times):
    """TrackingNet test: a flat zip, `<seq>.txt` at the root, no folders."""
    return {f"{name}.txt": data.box_lines(boxes, 4)}


SERVER_LAYOUTS = {'got10k_test': got10k_files, 'trackingnet': trackingnet_files}


def read_times(result_path, n):
    """Per-frame seconds from `<seq>_time.txt` beside a result file, or zeros when there is none."""
    path = Path(result_path).with_name(Path(result_path).stem + '_time.txt')
    if not path.exists():
        return np.zeros(n)
    times = np.array(path.read_text().replace(',', ' ').split(), dtype=np.float64)
    return times if len(times) == n else np.zeros(n)


def pack(dataset, results, names):
    """The server's zip of a test split from a result folder, written beside it: <folder>_<dataset>.zip.
    `names`: the sequences (Sequence objects, or names). Every result is checked before the zip is
    written: present, finite, and (for sequences) one box per frame -- the server would score a short
    or NaN file as failures, silently."""
    if dataset not in SERVER_LAYOUTS:
        raise SystemExit(f"error: no server file for {dataset}: pack {' or '.join(SERVER_LAYOUTS)}")
    results = Path(results)
    index, out = index_results(results), results.with_name(f"{results.name}_{dataset}.zip")
    files = {}
    for seq in names:
        name, frames = (seq, None) if isinstance(seq, str) else (seq.name, len(seq))
        path = find_result(index, name)
        if path is None:
            raise SystemExit(f"error: {results} has no result for {name}: run it first")
        try:
            boxes = read_results(path)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if not np.isfinite(boxes).all():
            raise SystemExit(f"error: {path}: line {int(np.flatnonzero(~np.isfinite(boxes).all(1))[0]) + 1} is not a finite "
                             f"box (NaN or inf): the server needs a box on every frame; track the sequence again")
        if frames is not None and len(boxes) != frames:
            raise SystemExit(f"error: {path}: {len(boxes)} boxes for the {frames} frames of {name}: the server needs "
                             f"exactly one per frame; track the sequence again (delete the file, then `run`)")
        files.update(SERVER_LAYOUTS[dataset](name, boxes, read_times(path, len(boxes))))

    def write(tmp):
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
            for arcname, text in files.items():
                z.writestr(arcname, text)
    data.write_atomic(out, write)
    return out


# -----------------------------------------------------------------------------
# run: track every sequence (parallel, resumable), then score


def track_sequence(tracker, seq):
    """One-pass evaluation of one sequence: init on frame 0 with the gt box, then update on every
    later frame, never re-initialized. -> boxes (T, 4) (row 0 = the gt box) and seconds per frame."""
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
    """`<seq>_time.txt` first, then `<seq>.txt` (both atomic): the box file marks a finished sequence.
    Boxes are written in the dataset's own convention (LaSOT: 1-based, as the authors write them)."""
    out = Path(out)
    data.write_text_atomic(out / f"{name}_time.txt", ''.join(f"{t:.6f}\n" for t in times))
    data.write_text_atomic(out / f"{name}.txt", data.box_lines(data.boxes_to_file(boxes, dataset)))


def is_finished(out, seq):
    return (Path(out) / f"{seq.name}.txt").exists()


# A result folder holds the results of one model; this file in it says which (finished sequences are
# skipped on the next run, so results of two models must never meet in one folder)
MODEL_RECORD = 'model.json'
SAME_MODEL = ('weights_sha256', 'backbone_sha256', 'res', 'dtype')


def model_record(weights, backbone=None, res=None, dtype=None):
    """The weights (and backbone) by absolute path and sha256, the resolution and the dtype: what makes results."""
    record = {'weights': str(Path(weights).resolve()), 'weights_sha256': lorat.file_sha256(weights)}
    if backbone:
        record.update(backbone=str(Path(backbone).resolve()), backbone_sha256=lorat.file_sha256(backbone))
    return {**record, 'res': res, 'dtype': dtype}


def default_result_folder(record, dataset):
    """results/<model>-<sha256[:8]>_<dataset>: <model> is the weights' file name, after its folder's name for
    train.py's export.pt and ckpt.pt (the run's name); the hash tells apart two files of one name."""
    path = Path(record['weights'])
    name = f"{path.parent.name}-{path.stem}" if path.stem in ('export', 'ckpt') else path.stem
    return Path('results') / f"{name}-{record['weights_sha256'][:8]}_{dataset}"


def claim_result_folder(out, record, retrack=False, names=None):
    """Make `out` the folder of this model's results: new, or already this model's (a killed run resumes).
    Another model's results, or results that say no model, are refused in one line; --retrack deletes
    the result files this run will write (`<seq>.txt`, `<seq>_time.txt` of the sequences `names`; every
    result file when `names` is None), never another file of the folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file, not a folder: give a folder for the results")
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
        raise SystemExit(f"error: {out} holds results of {maker}, not of {record['weights']} (sha256 "
                         f"{record['weights_sha256'][:12]}..., {record['dtype']}): pass another --out, or --retrack to replace them")
    ours = None if names is None else {f"{n}{end}" for n in names for end in ('.txt', '_time.txt')}
    for path in results:
        if ours is None or path.name in ours:
            path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: cannot make the result folder {out}: {lorat.write_error(e, out / 'x')}") from None
    data.write_text_atomic(out / MODEL_RECORD, json.dumps(record, indent=1) + '\n')


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


class TrackerFactory:
    """A picklable `device -> Tracker` (worker processes rebuild the tracker from the weights file).
    track.py is imported here, not at the top, so that `score` works without it."""

    def __init__(self, weights, dtype=None, backbone=None, res=None):
        self.weights, self.dtype, self.backbone, self.res = weights, dtype, backbone, res

    def __call__(self, device):
        import track
        dtype = self.dtype or lorat.default_dtype(device, training=False)
        return track.load_tracker(self.weights, device, dtype, self.backbone, self.res)


def open_sequences(dataset, root=None, split=None, num=None, length=None, limit=None, partial=False):
    """The sequences of a dataset (annotations only). `num`/`length` size the synthetic set;
    `limit` keeps the first N sequences (a quick look); `partial`: the ones present of a partial dataset."""
    options = {k: v for k, v in (('num', num), ('length', length)) if v is not None}
    try:
        seqs = data.open_dataset(dataset, root, split, partial=partial, **options)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    seqs = list(seqs)
    return seqs[:limit] if limit else seqs


def track_all(seqs, out, make_tracker, workers=1, spec=None, devices=('cpu',)):
    """Track every sequence without a result yet, printing a line with the ETA after each; -> names tracked now.
    workers <= 1: in this process (`make_tracker(device)` may be any callable, e.g. a fake in tests).
    workers > 1: that many spawned processes, devices handed out round-robin; `spec` (the
    open_sequences arguments) lets each worker reopen the dataset, as sequences do not pickle."""
    Path(out).mkdir(parents=True, exist_ok=True)
    todo = [s for s in seqs if not is_finished(out, s)]
    if len(todo) < len(seqs):
        print(f"resuming: {len(seqs) - len(todo)} of {len(seqs)} sequences already have results in {out}",
              file=sys.stderr)
    import track  # its progress lines; not at the top, so that `score` works without track.py
    progress = track.Progress(sum(len(s) for s in todo), len(todo))
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
    threads = max(1, lorat.available_cpus() // workers)  # the job's CPU affinity, not the machine's cores
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
    return [lorat.resolve_device(device)]


# -----------------------------------------------------------------------------
# efficiency, the one speed test: the paper's inference-efficiency table for this implementation (params,
# MACs, forward fps), the tracker end to end on a video, the training data pipeline


def median_seconds(fn, device='cpu', warmup=10, iters=50):
    """The median seconds of `fn()` over `iters` timed calls, after `warmup` untimed ones. On a GPU each call
    is synchronized before and after: kernels run asynchronously, and the clock would stop at their launch."""
    sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)
    times = []
    for k in range(warmup + iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def best_dtype(device):
    """bf16 on a GPU that has it (fp16 otherwise); fp32 on a CPU, where bf16 measured slower here."""
    if str(device).startswith('cuda'):
        with torch.cuda.device(device):  # bf16 in hardware only: emulated (V100, T4) is slower than fp16
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


def compile_for_inference(model, device, backend='inductor'):
    """torch.compile for batch-1 inference: one graph (fullgraph: a break would fail loudly, not slowly),
    static shapes; on a GPU replayed as a CUDA graph ('reduce-overhead'), so a frame costs one launch
    instead of hundreds (a merged B-224 forward is ~180 kernels; 209 fps leaves 4.8 ms a frame)."""
    mode = 'reduce-overhead' if str(device).startswith('cuda') and backend == 'inductor' else None
    return torch.compile(model, backend=backend, mode=mode, fullgraph=True, dynamic=False)


def compiled_max_diff(model, compiled, inputs):
    """The largest difference between the compiled and the eager outputs (scores and boxes)."""
    with torch.inference_mode():
        eager, fast = model(*inputs), compiled(*inputs)
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(eager, fast))


def measure_fps(size, res, device, warmup=10, iters=50, compile=False):
    """Forward passes per second, batch 1, LoRA merged (no latency cost), the device's best dtype;
    warm-up first, then the median over `iters` timed passes. 'OOM' when it does not fit.
    compile: torch.compile'd (compile_for_inference); returns (fps, max difference to eager)."""
    dtype = best_dtype(device)
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
            fps = 1.0 / median_seconds(lambda: forward(*inputs), device, warmup, iters)
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
    """Rows of the table: our params (training total, LoRA, head; after merging), MACs, fps, and the
    paper's params / MACs / fps beside them."""
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
                row['dtype'] = str(best_dtype(device)).replace('torch.', '')
                row['device'] = torch.cuda.get_device_name(device) if str(device).startswith('cuda') else 'cpu'
            rows.append(row)
    return rows


TRACKING_MODELS = [('T', 112, 'fp32'), ('T', 112, 'bf16'), ('B', 224, 'fp32'), ('B', 224, 'bf16')]
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
    import track
    clip = synthetic.synthetic_clip(0, length=max(frames, 2), size=VIDEO_SIZE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, 'clip.mp4')
        data.write_mp4(video, (clip.frame(i) for i in range(len(clip))), 30)
        for size, res, dtype in models:
            tracker = track.Tracker(lorat.build_model(size, res, lora_rank=0), device, track.DTYPES[dtype])
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


DATA_CROPS = [(56, 112, 4.0), (112, 224, 4.0)]  # template px, search px, search area factor: T-112's and B-224's


def data_speed(samples=640, workers=(0,), clips=32):
    """Training pairs per second (data.pipeline_speed: sample, crop, augment, standardize, batch) of the default
    training data, synthetic clips and stills 3:1, at T-112's and B-224's crops. The `clips` clips are made
    and annotated first, as a run does once: what is timed is the steady state."""
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
    head = f"{'model':<7}{'params M (LoRA, head)':>24}{'merged':>8}{'MACs G':>8}{'fps':>8}   paper: params  MACs  fps"
    print(head)
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
    """`efficiency`: the parts asked for, each printed as soon as it is measured (or all as JSON at the end)."""
    device = available_devices(args.device)[0]
    gpu = device.startswith('cuda')
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    iters = args.iters if args.iters is not None else (50 if gpu else 5)
    measure = {'model': lambda: efficiency(args.sizes, args.res, device, not args.no_fps, warmup, iters, args.compile),
               'tracking': lambda: tracking_speed(device, args.frames), 'data': lambda: data_speed(args.samples)}
    show = {'model': print_efficiency, 'tracking': lambda rows: print_tracking_speed(rows, device), 'data': print_data_speed}
    tables = {}
    try:
        for part in SPEED_PARTS:
            if part in (['model'] if args.no_fps else args.parts):
                tables[part] = measure[part]()
                if not args.json:
                    show[part](tables[part])
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.json:
        print(json.dumps(tables, indent=1))
    return tables


# -----------------------------------------------------------------------------
# Command line

DATASETS = ['lasot', 'lasot_ext', 'got10k_val', 'got10k_test', 'trackingnet', 'tnl2k', 'otb', 'synthetic', 'custom']


def is_server_only(dataset, split):
    """Test splits whose ground truth is withheld: their results go to the dataset's evaluation server."""
    return dataset == 'got10k_test' or (dataset == 'trackingnet' and split in (None, 'test', 'TEST'))


def dataset_split(dataset, split):
    """The split evaluated by default: LaSOT's 280-sequence test split, TrackingNet's TEST, synthetic 'test';
    'all' = every sequence present under the root."""
    if split == 'all':
        return None
    if split is not None:
        return split
    return {'lasot': 'test', 'trackingnet': 'test', 'synthetic': 'test'}.get(dataset)


def add_dataset_args(p):
    p.add_argument('--dataset', required=True, choices=DATASETS)
    p.add_argument('--root', '--data-root', dest='root', help="the dataset's folder (or a data root holding it; else $LORAT_DATA)")
    p.add_argument('--split', help="the split to evaluate (default lasot: test, trackingnet: test, synthetic: test; "
                   "'all': every sequence under --root)")
    p.add_argument('--num', type=lorat.positive_int, help="synthetic: number of sequences")
    p.add_argument('--length', type=lorat.positive_int, help="synthetic: frames per sequence")
    p.add_argument('--limit', type=lorat.positive_int, help="only the first N sequences (a quick look)")
    p.add_argument('--partial', action='store_true', help="a dataset only partly present: use the sequences there "
                                                         "(default: refuse it; it says how many of how many)")
    p.add_argument('--attributes', help="attribute tags: pytracking JSON or a LaSOT att/ folder")


def parse_args(argv=None):
    parser = lorat.Parser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('run', help="track every sequence, then score (or pack the server file)")
    add_dataset_args(p)
    p.add_argument('--weights', required=True, help="train.py checkpoint, merged export, or official LoRAT file")
    p.add_argument('--backbone', help="DINOv2 weights: for official LoRAT files, and for a ckpt.pt whose backbone has moved")
    p.add_argument('--res', type=lorat.resolution, help="check the checkpoint's resolution")
    p.add_argument('--out', help="result folder (default results/<weights name>-<its sha256[:8]>_<dataset>); "
                                 "it records the model, and refuses another's")
    p.add_argument('--retrack', action='store_true', help="--out holds another model's results: delete them and track again")
    p.add_argument('--workers', type=lorat.positive_int, default=1, help="tracking processes (GPUs round-robin)")
    p.add_argument('--device', default='cpu', help="cpu, cuda (every GPU) or cuda:N")
    p.add_argument('--dtype', choices=['fp32', 'bf16', 'fp16'], help="inference precision: fp16 or bf16 autocast over fp32 weights, or plain fp32. "
                   "Default: fp16 on a GPU (the authors' evaluation), fp32 on a CPU")
    p.add_argument('--report', help="report folder (default <out>/report)")

    p = sub.add_parser('score', help="score result folders (annotations only)")
    add_dataset_args(p)
    p.add_argument('--results', nargs='+', required=True, help="result folders; the folder name is the tracker")
    p.add_argument('--report', help="folder for plots and CSVs (default reports/<dataset>, ignored by git)")
    p.add_argument('--skip-missing', action='store_true', help="score the sequences every tracker has")
    p.add_argument('--json', action='store_true', help="machine-readable output")

    p = sub.add_parser('pack', help="write the server zip of a test split (GOT-10k test, TrackingNet)")
    add_dataset_args(p)
    p.add_argument('--results', required=True, help="the result folder")

    p = sub.add_parser('efficiency', help="the speed test: the paper's inference-efficiency table, tracking fps end to "
                                          "end, the training data pipeline's samples/s")
    p.add_argument('--parts', type=lorat.csv_of(speed_part, f"parts of {','.join(SPEED_PARTS)}, comma-separated"),
                   default=list(SPEED_PARTS), help=f"what to measure (default all: {','.join(SPEED_PARTS)})")
    p.add_argument('--sizes', type=lorat.csv_of(lorat.size_name, 'model sizes, comma-separated'), default=['B', 'L', 'g'],
                   help="model table: sizes (default B,L,g)")
    p.add_argument('--res', type=lorat.csv_of(lorat.resolution, 'resolutions, comma-separated'), default=[224, 378],
                   help="model table: resolutions (default 224,378)")
    p.add_argument('--device', default='cpu', help="cpu, cuda or cuda:N (the data pipeline runs on the CPU)")
    p.add_argument('--no-fps', action='store_true', help="the model table's params and MACs only (no timing at all)")
    p.add_argument('--compile', action='store_true', help="also time torch.compile'd inference (CUDA graphs on a "
                   "GPU) and print its largest difference to eager")
    p.add_argument('--warmup', type=lorat.nonneg_int, help="model table: untimed passes first (default 10 on a GPU, 2 on a CPU)")
    p.add_argument('--iters', type=lorat.positive_int, help="model table: timed passes, the median is reported (default 50 GPU, 5 CPU)")
    p.add_argument('--frames', type=lorat.positive_int, default=20, help="tracking: frames of the 640x360 clip (default 20)")
    p.add_argument('--samples', type=lorat.positive_int, default=640, help="data pipeline: pairs per measurement (default 640)")
    p.add_argument('--json', action='store_true', help="machine-readable output: {part: rows}")
    return parser.parse_args(argv)


@lorat.main_errors()  # a file that cannot be read or written, a bad annotation: one line
def main(argv=None):
    args = parse_args(argv)
    try:
        return command(args)
    except KeyboardInterrupt:
        raise SystemExit("stopped (Ctrl-C): finished sequences keep their results; the same command resumes") from None


def command(args):
    if args.command == 'efficiency':
        return speed_test(args)

    split = dataset_split(args.dataset, args.split)
    spec = dict(dataset=args.dataset, root=args.root, split=split, num=args.num, length=args.length, limit=args.limit,
                partial=args.partial)
    seqs = open_sequences(**spec)
    if args.command == 'pack':
        print(pack(args.dataset, args.results, seqs))
        return
    if args.command == 'score':
        results = score(args.results, seqs, args.dataset, split, args.report or f"reports/{args.dataset}",
                        args.skip_missing, args.attributes)
        print_table(results, args.json)
        return results

    # run
    if not os.path.isfile(args.weights):
        raise SystemExit(f"error: weights {args.weights} not found (train with train.py, or pass --weights FILE)")
    if args.backbone and not os.path.isfile(args.backbone):
        raise SystemExit(f"error: --backbone {args.backbone} not found: pass the DINOv2 file the weights were trained on")
    kind, _, detail = lorat.identify_weights(args.weights)  # a wrong kind of file: one line, before any worker starts
    if kind not in ('export', 'checkpoint', 'release'):
        raise ValueError(lorat.wrong_weights(args.weights, kind, detail, '--weights', 'tracker'))
    for seq in seqs:  # the boxes against the frames, before hours of tracking: one line naming the sequence
        seq.check(first_box=True)
    devices = available_devices(args.device)
    record = model_record(args.weights, args.backbone, args.res, args.dtype or lorat.default_dtype(devices[0], training=False))
    out = Path(args.out) if args.out else default_result_folder(record, args.dataset)
    claim_result_folder(out, record, args.retrack, [s.name for s in seqs])
    print(f"results: {out}", file=sys.stderr)
    track_all(seqs, out, TrackerFactory(args.weights, args.dtype, args.backbone, args.res),
                  args.workers, spec, devices)
    if is_server_only(args.dataset, split):
        print(f"server file: {pack(args.dataset, out, seqs)}")
        return
    results = score([out], seqs, args.dataset, split, args.report or out / 'report', False, args.attributes)
    print_table(results)
    return results


if __name__ == '__main__':
    main()
