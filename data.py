"""Data for LoRAT: benchmark readers, a synthetic tracking world made of real photographs, and the
training-pair sampler.

Everything that gets a frame and its box from disk (or from nothing) into a training batch or an
evaluation loop:

    open_dataset('lasot', '/data', split='test')   -> list of Sequence (boxes x,y,w,h + visibility;
                                                       frames are read only when asked for)
    sequence_curves / curve_scores                 -> a result against the ground truth, pytracking's
                                                       OPE rules (evaluate.py, track.py's demo)
    crop_window / jitter_window / crop_image       -> the ONE SiamFC-style crop, used by training,
    box_to_crop / box_from_crop                        tracking and evaluation alike
    synthetic_clip(seed)                            -> a clip of objects cut from real photographs moving
                                                       over another photograph (the default dataset)
    TrainingPairs(datasets, weights, ...)           -> the LoRAT sampler: (template, search) pairs

    python data.py --benchmark          # samples/s of the training pipeline, 0/1/2 loader workers
    python data.py --write-demo DIR     # a synthetic clip as an H.264 mp4 and a GOT-10k folder
"""
import argparse
import bisect
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence as _ListLike
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from lorat import template_fg_mask, write_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = Path(__file__).resolve().parent / 'splits'

# dataset name -> its folder's usual name under a data root (--data-root / $LORAT_DATA)
DATASETS = {'lasot': 'LaSOT', 'lasot_ext': 'LaSOT_ext', 'got10k': 'GOT-10k', 'trackingnet': 'TrackingNet',
            'coco': 'COCO', 'tnl2k': 'TNL2K', 'otb': 'OTB100', 'custom': None, 'synthetic': None}
ALIASES = {'got10k_val': ('got10k', 'val'), 'got10k_test': ('got10k', 'test'),
           'got10k_vot_train': ('got10k', 'vot_train'), 'lasot_test': ('lasot', 'test'),
           'synthetic_stills': ('synthetic', 'stills')}


def planar(img):
    """RGB (..., H, W, 3), uint8 or float, numpy, torch or PIL -> float32 (..., 3, H, W), values kept
    (0..255): the layout of a model input, where per-channel work reads contiguous rows."""
    a = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.ascontiguousarray(np.moveaxis(a, -1, -3), dtype=np.float32)


def standardize(x):
    """float32 (..., 3, H, W) in 0..255 -> ImageNet-normalized torch tensor, in place."""
    for c in range(3):
        x[..., c, :, :] *= np.float32(1 / (255 * IMAGENET_STD[c]))
        x[..., c, :, :] -= np.float32(IMAGENET_MEAN[c] / IMAGENET_STD[c])
    return torch.from_numpy(x)


def normalize(img):
    """uint8 RGB (H,W,3) or (B,H,W,3), numpy or torch -> ImageNet-normalized float (3,H,W) / (B,3,H,W).
    In numpy: small torch ops on a busy CPU pay for thread start-up many times over."""
    return standardize(planar(img))


# -----------------------------------------------------------------------------
# Sequences: boxes and visibility from the annotation files; frames only on demand


class Sequence:
    """One tracking video. `boxes` (T, 4) x,y,w,h float; `visible` (T,) bool; frame i read lazily.

    `frames` is a list of image paths or a function i -> path (so a folder is listed only when a frame
    is first read: scoring results needs no image at all)."""

    def __init__(self, name, boxes, visible, frames, dataset='', attributes=None):
        self.name, self.dataset = name, dataset
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(visible, dtype=bool).reshape(-1)
        self.frames = frames
        self.attributes = attributes or {}
        assert len(self.visible) == len(self.boxes), name

    def __len__(self):
        return len(self.boxes)

    def __repr__(self):
        return f"Sequence({self.dataset}/{self.name}, {len(self)} frames)"

    def path(self, i):
        return self.frames(i) if callable(self.frames) else self.frames[i]

    def image(self, i, shrink=1.0):
        """Frame i as a PIL RGB image, JPEG-decoded at up to `shrink` times fewer pixels per side
        (Image.draft: DCT scaling, much faster) -> (image, scale of the decoded over the full size)."""
        im = Image.open(self.path(i))
        full_w = im.size[0]
        if shrink >= 2 and im.format == 'JPEG':
            im.draft('RGB', (math.ceil(im.size[0] / shrink), math.ceil(im.size[1] / shrink)))
        im = im if im.mode == 'RGB' else im.convert('RGB')
        im.load()
        return im, im.size[0] / full_w

    def frame(self, i):
        return np.asarray(self.image(i)[0])

    def crops(self, i, windows, sizes):
        """Crops of frame i (PIL, sizes[k] square): the frame is decoded once, at the coarsest
        resolution every crop still gets at least one image pixel per crop pixel from."""
        shrink = min(min(_window_xyxy(w)[2:]) / size for w, size in zip(windows, sizes))
        im, scale = self.image(i, shrink)
        pads = any(_inside(w, size, *im.size, scale)[0] != (0, 0, size, size) for w, size in zip(windows, sizes))
        fill = image_mean(im) if pads else None  # one mean for all the crops that need padding
        return [crop_pil(im, w, size, fill, scale) for w, size in zip(windows, sizes)]


def read_boxes(path):
    """x,y,w,h per line, separated by commas, tabs or spaces -> (T, 4). A bad line: one clear error."""
    lines = Path(path).read_text().rstrip().splitlines()
    rows = [line.replace(',', ' ').split() for line in lines]
    try:
        if all(len(r) == 4 for r in rows):
            return np.array(rows, dtype=np.float64).reshape(-1, 4)
    except ValueError:
        pass
    for n, (line, r) in enumerate(zip(lines, rows), 1):  # find the culprit for the message
        try:
            assert len(r) == 4
            [float(v) for v in r]
        except (AssertionError, ValueError):
            raise ValueError(f"{path}:{n}: malformed box line {line!r}: expected 4 numbers x,y,w,h") from None


def read_flags(path, n):
    """Integers, one per frame (one comma-separated line, or one per line) -> (n,) int."""
    text = Path(path).read_text().replace(',', ' ').split()
    try:
        flags = np.array([int(float(v)) for v in text], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path}: expected integers (one per frame), got {' '.join(text[:5])!r}...") from None
    if len(flags) != n:
        raise ValueError(f"{path}: {len(flags)} values for {n} frames in groundtruth.txt")
    return flags


def box_valid(boxes):
    """A box can be used as a target when it is finite and has positive size: (T,4) -> (T,) bool."""
    return np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def read_split(name):
    return (SPLITS / name).read_text().split()


def listed(folder, exts=('.jpg', '.jpeg', '.png')):
    """The sorted image files of a folder, listed when first needed -> a function i -> path."""
    files = []

    def path(i):
        if not files:
            files.extend(sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in exts))
        return files[i]
    return path


def _read_language(path):
    return {'language': path.read_text().strip()} if path.exists() else {}


def lasot_sequence(folder, dataset='lasot'):
    """LaSOT layout: img/%08d.jpg, groundtruth.txt, full_occlusion.txt, out_of_view.txt.
    Visibility comes from the two flag files, never from the box (absent frames may carry one)."""
    folder = Path(folder)
    boxes = read_boxes(folder / 'groundtruth.txt')
    visible = box_valid(boxes)
    for flag in ('full_occlusion.txt', 'out_of_view.txt'):
        if (folder / flag).exists():
            visible &= read_flags(folder / flag, len(boxes)) == 0
    img = str(folder / 'img')
    return Sequence(folder.name, boxes, visible, lambda i: f"{img}/{i + 1:08d}.jpg", dataset,
                    _read_language(folder / 'nlp.txt'))


def got10k_sequence(folder, dataset='got10k'):
    """GOT-10k layout: %08d.jpg from 1, groundtruth.txt, absence.label, cover.label
    (visible = not absent and cover > 0). A test sequence holds only the first box."""
    folder = Path(folder)
    boxes = read_boxes(folder / 'groundtruth.txt')
    if len(boxes) == 1:  # test split: the frame count comes from the folder listing
        n = sum(1 for p in folder.glob('*.jpg')) if folder.exists() else 1
        boxes = np.concatenate([boxes, np.full((max(n, 1) - 1, 4), np.nan)])
    visible = box_valid(boxes)
    if (folder / 'absence.label').exists():
        visible &= read_flags(folder / 'absence.label', len(boxes)) == 0
    if (folder / 'cover.label').exists():
        visible &= read_flags(folder / 'cover.label', len(boxes)) > 0
    return Sequence(folder.name, boxes, visible, lambda i: str(folder / f"{i + 1:08d}.jpg"), dataset)


class NonePresent(ValueError):
    """--partial, and not one sequence of the list is there."""


def keep_present(names, present, what, source, partial):
    """The sequences of an official list (`names`) that are `present`. A missing one is an error naming
    `source` and --partial; with `partial` the missing ones are left out, and it says how many are used."""
    kept = [n for n in names if n in present]
    if len(kept) == len(names):
        return names
    missing = next(n for n in names if n not in present)
    if not partial:
        raise ValueError(f"{source}: {len(names) - len(kept)} of the {len(names)} {what} are missing (first: {missing}): "
                         f"pass --partial to use the {len(kept)} present")
    if not kept:
        raise NonePresent(f"{source}: none of the {len(names)} {what} is present, even with --partial")
    print(f"--partial: using {len(kept)} of the {len(names)} {what} ({source})", file=sys.stderr)
    return kept


def read_each(read, folders, what, partial):
    """read(folder) for every sequence folder. An unreadable one is an error naming its file and
    --partial; with `partial` it is left out, and it says how many are used."""
    seqs, bad = [], None
    for folder in folders:
        try:
            seqs.append(read(folder))
        except (ValueError, OSError) as e:
            if not partial:
                raise ValueError(f"{e} (pass --partial to leave out the sequences that cannot be read)") from None
            bad = bad or e
    if folders and not seqs:
        raise NonePresent(f"none of the {len(folders)} {what} can be read, even with --partial (first: {bad})")
    if bad is not None:
        print(f"--partial: using {len(seqs)} of the {len(folders)} {what}: left out those that cannot be read "
              f"(first: {bad})", file=sys.stderr)
    return seqs


def open_lasot(root, split=None, dataset='lasot', partial=False):
    """<root>/<class>/<class>-N/. split 'train' (1120) / 'test' (280) / None (every sequence present),
    so a root holding only the 280 test sequences works too. `partial`: the split's sequences present."""
    found = {p.parent.name: p.parent for p in sorted(Path(root).glob('*/*/groundtruth.txt'))}
    if split is None:
        names = list(found)
    else:
        if split not in ('train', 'test'):
            raise ValueError(f"{dataset} split must be train or test, not {split!r}")
        names = keep_present(read_split(f'lasot_{split}_split.txt'), found, f"LaSOT {split} sequences",
                             f"{root} (splits/lasot_{split}_split.txt)", partial)
    return read_each(lambda n: lasot_sequence(found[n], dataset), names, f"{dataset} sequences", partial)


GOT10K_TRAIN = 9335  # sequences in GOT-10k's train/list.txt, which the vot_train/vot_val splits index


def open_got10k(root, split='train', partial=False):
    """<root>/{train,val,test}/list.txt. 'vot_train' / 'vot_val': the VOT-excluded split of train
    (0-based indices into the official train/list.txt), which LoRAT trains on with the other datasets.
    `partial`: a shorter list.txt or missing sequence folders are allowed; the ones present are used."""
    sub = 'train' if split in ('vot_train', 'vot_val') else split
    if sub not in ('train', 'val', 'test'):
        raise ValueError(f"got10k split must be train, val, test, vot_train or vot_val, not {split!r}")
    list_file = Path(root) / sub / 'list.txt'
    if not list_file.exists():
        raise ValueError(f"{list_file} not found: is {root} the GOT-10k folder (with train/ val/ test/)?")
    names = list_file.read_text().split()
    if split != sub:
        indices = [int(i) for i in read_split(f'got10k_{split}_split.txt')]
        if len(names) >= GOT10K_TRAIN:
            names = [names[i] for i in indices]
        else:  # the indices point into the full list, whose i-th entry is GOT-10k_Train_{i + 1}
            names = keep_present([f"GOT-10k_Train_{i + 1:06d}" for i in indices], set(names),
                                 f"GOT-10k {split} sequences", f"{list_file} ({len(names)} of {GOT10K_TRAIN} lines)", partial)
    folder = Path(root) / sub
    present = {n for n in names if (folder / n / 'groundtruth.txt').is_file()}
    names = keep_present(names, present, f"GOT-10k {split} sequence folders with a groundtruth.txt",
                         list_file, partial)
    return read_each(lambda n: got10k_sequence(folder / n), names, f"GOT-10k {split} sequences", partial)


TRACKINGNET_CHUNKS = [f'TRAIN_{k}' for k in range(12)]  # the training set comes in 12 chunks


def open_trackingnet(root, split='train', partial=False):
    """TRAIN_0..11/ and TEST/, each anno/<seq>.txt and frames/<seq>/<i>.jpg (from 0). Split 'train'
    = all 12 TRAIN_k, 'test', or one chunk like 'TRAIN_3'. No visibility flags: w,h > 0. `partial`:
    missing chunks or frame folders are allowed; the sequences present are used."""
    root = Path(root)
    chunks = TRACKINGNET_CHUNKS if split in (None, 'train') else ['TEST' if split == 'test' else split]
    chunks = keep_present(chunks, {c for c in chunks if (root / c / 'anno').is_dir()},
                          "TrackingNet chunks (<chunk>/anno/)", root, partial)
    annos = [a for c in chunks for a in sorted((root / c / 'anno').glob('*.txt'))]
    present = {a for a in annos if (a.parent.parent / 'frames' / a.stem).is_dir()}
    annos = keep_present(annos, present, "TrackingNet sequences with a frames/<seq>/ folder", root, partial)
    return read_each(trackingnet_sequence, annos, "TrackingNet sequences", partial)


def trackingnet_sequence(anno):
    boxes = read_boxes(anno)
    frames = anno.parent.parent / 'frames' / anno.stem
    if len(boxes) == 1:  # test: only the first box is public
        n = sum(1 for _ in frames.glob('*.jpg'))
        boxes = np.concatenate([boxes, np.full((max(n, 1) - 1, 4), np.nan)])
    return Sequence(anno.stem, boxes, box_valid(boxes), lambda i: str(frames / f"{i}.jpg"), 'trackingnet')


def open_tnl2k(root, split=None):
    """<seq>/imgs/* (png or jpg, sorted), groundtruth.txt, language.txt."""
    seqs = []
    for gt in sorted(Path(root).glob('*/groundtruth.txt')):
        boxes = read_boxes(gt)
        seqs.append(Sequence(gt.parent.name, boxes, box_valid(boxes), listed(gt.parent / 'imgs'), 'tnl2k',
                             _read_language(gt.parent / 'language.txt')))
    return seqs


# OTB sequences whose first annotated frame is not img/0001 (pytracking's sequence table)
OTB_START = {'BlurCar1': 247, 'BlurCar3': 3, 'BlurCar4': 18, 'David': 300}


def open_otb(root, split=None):
    """<seq>/img/%04d.jpg, groundtruth_rect.txt (comma, tab or spaces). Jogging and Skating2 have two
    targets (groundtruth_rect.1.txt, .2.txt -> Jogging_1, Jogging_2); some have fewer boxes than frames."""
    seqs = []
    for gt in sorted(Path(root).glob('*/groundtruth_rect*.txt')):
        seq, part = gt.parent.name, gt.name[len('groundtruth_rect'):-len('.txt')].strip('.')
        boxes = read_boxes(gt)
        files, first = listed(gt.parent / 'img'), OTB_START.get(seq, 1) - 1
        seqs.append(Sequence(f"{seq}_{part}" if part else seq, boxes, box_valid(boxes),
                             lambda i, files=files, first=first: files(first + i), 'otb'))
    return seqs


class CocoObjects(_ListLike):
    """COCO 2017: every non-crowd object is a one-frame 'sequence' (LoRAT draws template and search
    from the same image). Kept as arrays, not 800k Python objects; items are built on access."""

    def __init__(self, root, split='train', partial=False):
        split = split or 'train'
        ann = Path(root) / 'annotations' / f'instances_{split}2017.json'
        if not ann.exists():
            raise ValueError(f"{ann} not found: is {root} the COCO folder (annotations/, {split}2017/)?")
        coco = json.loads(ann.read_text())
        self.folder = Path(root) / f'{split}2017'
        on_disk = set(os.listdir(self.folder)) if self.folder.is_dir() else set()
        listed = sorted({im['file_name'] for im in coco['images']})
        kept = set(keep_present(listed, on_disk, f"images of {ann.name}", self.folder, partial))
        files = {im['id']: im['file_name'] for im in coco['images'] if im['file_name'] in kept}
        objs = [(a['image_id'], a['bbox']) for a in coco['annotations']
                if a['image_id'] in files and not a.get('iscrowd', 0) and a['bbox'][2] > 0 and a['bbox'][3] > 0]
        self.files = [files[i] for i, _ in objs]
        self.boxes = np.array([b for _, b in objs], dtype=np.float64).reshape(-1, 4)

    def __len__(self):
        return len(self.boxes)

    def __getitem__(self, j):
        path = str(self.folder / self.files[j])
        return Sequence(f"{Path(path).stem}_{j}", self.boxes[j:j + 1], [True], [path], 'coco')


def open_custom(root, split=None):
    """Any folder of sequences in the LaSOT layout (<seq>/img/, possibly under class folders) or the
    GOT-10k layout (<seq>/%08d.jpg), each with groundtruth.txt: fine-tuning on your own videos."""
    seqs = []
    for gt in sorted(list(Path(root).glob('*/groundtruth.txt')) + list(Path(root).glob('*/*/groundtruth.txt'))):
        read = lasot_sequence if (gt.parent / 'img').is_dir() else got10k_sequence
        seqs.append(read(gt.parent, 'custom'))
    if not seqs:
        raise ValueError(f"{root}: no sequence folders with a groundtruth.txt (LaSOT or GOT-10k layout)")
    return seqs


def resolve_root(name, root=None, data_root=None):
    """The folder of dataset `name`: `root` itself, or its usual folder (DATASETS) under `root`, under
    `data_root`, or under $LORAT_DATA. Missing: one line that says how to give it."""
    base = DATASETS.get(name)
    for r in (root, data_root, os.environ.get('LORAT_DATA')):
        if r is None:
            continue
        if base and (Path(r) / base).is_dir():
            return str(Path(r) / base)
        if Path(r).is_dir():
            return str(r)
        raise ValueError(f"{name}: data root {r} does not exist (check --data-root or LORAT_DATA)")
    raise ValueError(f"{name}: where is it? pass --data-root DIR (holding {base or 'the dataset'}/) "
                     f"or set LORAT_DATA=DIR")


def open_dataset(name, root=None, split=None, partial=False, **options):
    """Name -> list of Sequence (COCO: a list-like of one-frame sequences). `root` is the dataset's
    folder or a data root holding it under its usual name (DATASETS). Synthetic needs no root;
    `options` go to open_synthetic (num, length, size). `partial` (--partial): a LaSOT, GOT-10k,
    TrackingNet or COCO split of which only some sequences (images) are present is read, not refused."""
    name, split = ALIASES.get(name, (name, split))
    if name == 'synthetic':
        return open_synthetic(split or 'train', **options)
    readers = {'lasot': lambda r, s: open_lasot(r, s, partial=partial),
               'lasot_ext': lambda r, s: open_lasot(r, s, 'lasot_ext', partial),
               'got10k': lambda r, s: open_got10k(r, s, partial),
               'trackingnet': lambda r, s: open_trackingnet(r, s, partial),
               'tnl2k': open_tnl2k, 'otb': open_otb, 'coco': lambda r, s: CocoObjects(r, s, partial),
               'custom': open_custom}
    if name not in readers:
        raise ValueError(f"unknown dataset {name!r}: choose from {', '.join(list(DATASETS) + list(ALIASES))}")
    if name == 'lasot_ext':
        split = None  # a test-only set: every sequence present
    if name == 'got10k' and split is None:
        split = 'train'
    return readers[name](resolve_root(name, root), split)


# -----------------------------------------------------------------------------
# Scoring: pytracking's OPE rules (LaSOT, LaSOT_ext, TNL2K, OTB, TrackingNet-style), used by evaluate.py
# and by track.py's demo

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
    """A tracker's raw boxes (N, 4) -> boxes (T, 4) aligned with the ground truth, pytracking's rules.

    - NaN anywhere or a negative w/h is an error (a broken result file, not a tracking failure).
    - A box with zero w or h is replaced by the previous (already cleaned) box, frame 0 excepted.
    - Length: longer results are truncated; shorter ones are an error on LaSOT and padded with zero
      boxes (IoU 0, center far off) elsewhere.
    - Frame 0 is set to the ground truth (the tracker was given it).
    """
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise ValueError("invalid result: NaN or negative width/height (pytracking refuses such files)")
    if np.isnan(gt).any():
        raise ValueError("ground truth has NaN boxes: this split's annotations are withheld "
                         "(score it on the benchmark's server: `evaluate.py pack`)")
    for i in range(1, len(pred)):
        if (pred[i, 2:] == 0).any():
            pred[i] = pred[i - 1]
    if len(pred) > len(gt):
        pred = pred[:len(gt)]
    elif len(pred) < len(gt):
        if dataset in LASOT_RULES:
            raise ValueError(f"result has {len(pred)} boxes for {len(gt)} frames (LaSOT: shorter results "
                             f"are an error)")
        pred = np.concatenate([pred, np.zeros((len(gt) - len(pred), 4))])
    pred[0] = gt[0]
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
    """Per-frame IoU, center error and normalized center error, pytracking's handling of frames:

    - a frame is valid when its gt has w > 0 and h > 0 and the target is visible (where the dataset
      has visibility flags);
    - invalid frames: IoU = -1 (fails every threshold), center error = inf (fails), normalized center
      error = -1 (passes every threshold);
    - LaSOT only: frames where the target is not visible get normalized center error = inf (fails too).
    """
    pred = clean_results(pred, gt, dataset)
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0) & visible
    iou = iou_pytracking(pred, gt)
    err = center_error(pred, gt)
    err_norm = center_error(pred, gt, normalized=True)
    iou[~valid], err[~valid], err_norm[~valid] = -1.0, np.inf, -1.0
    if dataset in LASOT_RULES:
        err[~visible], err_norm[~visible] = np.inf, np.inf
    if np.isnan(iou).any():
        raise ValueError("NaN in the computed overlaps")
    return iou, err, err_norm, valid


def sequence_curves(pred, gt, visible, dataset):
    """One sequence's success, precision and normalized-precision curves: the fraction of ALL its
    frames (invalid ones included, counted as failures above) with IoU strictly greater than each
    overlap threshold, and with center error <= each distance threshold."""
    iou, err, err_norm, valid = sequence_errors(pred, gt, visible, dataset)
    n = len(gt)  # pytracking's default: averaged over the full length, not over valid frames
    return {'success': (iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n,  # (21,)
            'precision': (err[:, None] <= CENTER_THRESHOLDS[None]).sum(0) / n,  # (51,)
            'norm_precision': (err_norm[:, None] <= NORM_THRESHOLDS[None]).sum(0) / n,  # (51,)
            'mean_iou': float(iou[valid].mean()) if valid.any() else float('nan')}


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
# The one crop: a SiamFC square window around the box, resampled in one affine step


def crop_window(box_xywh, factor):
    """SiamFC context window: a square of side sqrt((w+p)(h+p)), p = (factor-1)(w+h)/2, centered on the
    box, so its area is about factor^2 times the box's -> (cx, cy, side) in image pixels."""
    x, y, w, h = (float(v) for v in box_xywh)
    p = (factor - 1) * (w + h) / 2
    return x + w / 2, y + h / 2, math.sqrt((w + p) * (h + p))


def jitter_window(box_xywh, factor, out_size, rng, scale_jitter=0.25, center_jitter=3.0):
    """LoRAT's search-crop jitter, one draw: the crop scale (output px per image px) divided by
    exp(N(0,1) * 0.25) per axis, then the object shifted in the crop by U(-1,1) * 3 * 0.5 * (w'+h'),
    w', h' its jittered size in crop pixels -> window (cx, cy, side_x, side_y) in image pixels."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = crop_window(box_xywh, factor)[2]
    scale = out_size / side / np.exp(rng.standard_normal(2) * scale_jitter)  # (2,) crop px per image px
    max_shift = (w * scale[0] + h * scale[1]) * 0.5 * center_jitter  # crop px
    shift = rng.uniform(-1, 1, 2) * max_shift / scale  # (2,) image px
    return x + w / 2 - shift[0], y + h / 2 - shift[1], out_size / scale[0], out_size / scale[1]


def _window_xyxy(window):
    """(cx, cy, side) or (cx, cy, side_x, side_y) -> the window's corners x0, y0 and sides sx, sy."""
    cx, cy, sx = window[:3]
    sy = window[3] if len(window) == 4 else sx
    return cx - sx / 2, cy - sy / 2, sx, sy


def box_to_crop(box_xyxy, window, out_size):
    """Image pixels -> crop pixels, boxes (..., 4) xyxy (numpy)."""
    x0, y0, sx, sy = _window_xyxy(window)
    b = np.asarray(box_xyxy, dtype=np.float64)
    return (b - [x0, y0, x0, y0]) * [out_size / sx, out_size / sy, out_size / sx, out_size / sy]


def box_from_crop(box_xyxy, window, out_size):
    """Crop pixels -> image pixels, the exact inverse of box_to_crop."""
    x0, y0, sx, sy = _window_xyxy(window)
    b = np.asarray(box_xyxy, dtype=np.float64)
    return b * [sx / out_size, sy / out_size, sx / out_size, sy / out_size] + [x0, y0, x0, y0]


def image_mean(im):
    """Mean color of a PIL image (of its 4x box-reduced copy: cheap): the padding of out-of-image parts."""
    small = im.reduce(4) if min(im.size) >= 16 else im
    hist = np.array(small.histogram(), np.float64).reshape(-1, 256)[:3]  # (3, 256) counts per channel
    return tuple(int(v + 0.5) for v in hist @ np.arange(256) / hist[0].sum())


def _inside(window, out_size, W, H, scale=1.0):
    """The crop pixels [u0, u1) x [v0, v1) that lie wholly inside a W x H image, and the image box
    (x0, y0, x1, y1) they cover -> ((u0, v0, u1, v1), box)."""
    x0, y0, sx, sy = (v * scale for v in _window_xyxy(window))
    a, e = sx / out_size, sy / out_size  # image px per crop px
    u0, v0 = max(math.ceil(-x0 / a), 0), max(math.ceil(-y0 / e), 0)
    u1, v1 = min(math.floor((W - x0) / a), out_size), min(math.floor((H - y0) / e), out_size)
    return (u0, v0, u1, v1), (max(x0 + u0 * a, 0), max(y0 + v0 * e, 0), min(x0 + u1 * a, W), min(y0 + v1 * e, H))


def crop_pil(im, window, out_size, fill=None, scale=1.0):
    """One bilinear resample of the window (given in full-image pixels; `scale` = this image's
    size over the full image's, for draft-decoded JPEGs) into an out_size square PIL image.

    Image.resize with a float source box is PIL's fast separable resampler (it also antialiases when
    shrinking); crop pixel u samples image x0 + (u + .5) * sx / out_size, pixel-center exact. Crop pixels
    that do not lie wholly inside the image are padding: the image mean, or `fill`."""
    (u0, v0, u1, v1), box = _inside(window, out_size, *im.size, scale)
    if (u0, v0, u1, v1) == (0, 0, out_size, out_size):
        return im.resize((out_size, out_size), Image.BILINEAR, box=box)
    fill = image_mean(im) if fill is None else tuple(int(v) for v in fill)
    part = im.resize((u1 - u0, v1 - v0), Image.BILINEAR, box=box) if u0 < u1 and v0 < v1 else None
    return _padded(part, (u0, v0), out_size, fill, im.mode)


def _padded(part, corner, out_size, fill, mode='RGB'):
    """An out_size square of `fill` with `part` (the crop pixels inside the image; None when the window
    misses it) pasted at `corner`: the padding of every crop, real or synthetic."""
    out = Image.new(mode, (out_size, out_size), fill)
    if part is not None:
        out.paste(part, corner)
    return out


def crop_image(image, window, out_size, fill=None):
    """The crop of training, tracking and evaluation: uint8 (H,W,3) or PIL -> uint8 (out, out, 3),
    parts outside the image padded with the image mean (or `fill`)."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(crop_pil(im, window, out_size, fill))


# -----------------------------------------------------------------------------
# Synthetic world: objects cut from real photographs, moving over a panning view of another photograph

PHOTOS = Path(__file__).resolve().parent / 'photos'
# The photos (sources and licences: photos/README.md), split once: training clips and stills are made of
# the 'train' photos only; the held-out clips (val, test, the demo) of the 'held_out' photos only, so a
# held-out score measures how the tracker does on photographs it has never seen.
PHOTO_SPLIT = {'train': ('astronaut', 'brick', 'camera', 'china', 'coins', 'grace_hopper', 'gravel',
                         'hubble_deep_field', 'retina', 'rocket'),
               'held_out': ('chelsea', 'coffee', 'flower', 'grass')}
# The target's box (the whole object, every frame): area 0.5 % .. 30 % of the frame, aspect w/h 1:4 .. 4:1.
# These are the ranges that cover nearly all boxes of LaSOT and GOT-10k (small far-away objects to close-ups,
# pedestrians to cars); the first frame draws both log-uniformly, so each octave of size and of aspect is as
# common as any other, and the clip's scale change stays inside them.
AREA_RANGE = (0.005, 0.30)
ASPECT_RANGE = (0.25, 4.0)


@lru_cache(maxsize=None)
def load_photo(name):
    """One photo of photos/ as PIL RGB (read once per process)."""
    path = PHOTOS / f"{name}.jpg"
    if not path.is_file():
        raise ValueError(f"photo {path} is missing (the synthetic world is cut from the photos in {PHOTOS}): "
                         f"restore it with `git checkout -- photos/`")
    with Image.open(path) as im:
        return im.convert('RGB')


def object_box(rng, W, H):
    """A target size for a W x H frame: area and aspect log-uniform in AREA_RANGE, ASPECT_RANGE -> (w, h)."""
    area = math.exp(rng.uniform(*np.log(AREA_RANGE))) * W * H
    aspect = math.exp(rng.uniform(*np.log(ASPECT_RANGE)))
    return _fit(math.sqrt(area * aspect), math.sqrt(area / aspect), W, H)


def _fit(w, h, W, H):
    """(w, h) with its aspect clipped to ASPECT_RANGE, then scaled into the frame (95 % of each side) and
    into AREA_RANGE."""
    r = min(max(w / h, ASPECT_RANGE[0]), ASPECT_RANGE[1])
    w, h = math.sqrt(w * h * r), math.sqrt(w * h / r)
    k = min(1.0, 0.95 * W / w, 0.95 * H / h, math.sqrt(AREA_RANGE[1] * W * H / (w * h)))
    k = max(k, math.sqrt(AREA_RANGE[0] * W * H / (w * h)))
    return w * k, h * k


def _silhouette(rng, pw, ph):
    """An irregular object mask (ph, pw) in [0, 1] with soft edges that touches all four sides: the union
    of 1-3 superellipses with wobbly outlines (a fruit, a car, a head over a body), drawn on a grid of
    half the patch's resolution and enlarged bilinearly: a soft edge about 2 patch pixels wide."""
    n = max(4, max(pw, ph) // 2)  # the grid's long side
    gw, gh = max(4, round(n * pw / max(pw, ph))), max(4, round(n * ph / max(pw, ph)))
    v, u = np.mgrid[0:gh, 0:gw].astype(np.float32)
    u, v = (u + .5) / gw * 2 - 1, (v + .5) / gh * 2 - 1
    mask = np.zeros((gh, gw), bool)
    for k in range(rng.choice([1, 1, 2, 3])):
        cx, cy, rx, ry = (0, 0, 1, 1) if k == 0 else (*rng.uniform(-.5, .5, 2), *rng.uniform(.3, .7, 2))
        du, dv, p = (u - cx) / rx, (v - cy) / ry, rng.uniform(1.6, 5)
        theta = np.arctan2(dv, du)
        r = 0.85 + sum(rng.uniform(0, .12) * np.cos(m * theta + rng.uniform(0, 2 * np.pi)) for m in range(2, 6))
        mask |= np.abs(du) ** p + np.abs(dv) ** p <= r ** p
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # tight: the box is the object's
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((pw, ph), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255


def _recolor(rng, rgb):
    """More objects from few photos: keep the colors, permute the channels, or tint a gray version."""
    kind = rng.choice(3, p=[.5, .25, .25])
    if kind == 1:
        return rgb[..., rng.permutation(3)]
    if kind == 2:
        return (rgb @ LUMA)[..., None] * rng.uniform(.5, 1.3, 3).astype(np.float32)
    return rgb


def cut_object(rng, photo, pw, ph, source=None, recolor=None):
    """An object cut from a photo: a patch of aspect pw:ph under an irregular soft mask, shaded by a
    light from one side -> (PIL RGBA (pw, ph), its source rectangle, its recoloring seed). `source` cuts
    from a given rectangle (a look-alike), `recolor` repeats a recoloring."""
    PW, PH = photo.size
    if source is None:
        side = rng.uniform(0.12, 0.6) * min(PW, PH)
        sw, sh = _fit(side * math.sqrt(pw / ph), side * math.sqrt(ph / pw), PW, PH)
        x, y = rng.uniform(0, PW - sw), rng.uniform(0, PH - sh)
        source = (x, y, x + sw, y + sh)
    rgb = np.asarray(photo.resize((pw, ph), Image.BILINEAR, box=source), np.float32)
    recolor = int(rng.integers(2 ** 31)) if recolor is None else recolor
    rgb = _recolor(np.random.default_rng(recolor), rgb)
    v, u = np.mgrid[0:ph, 0:pw].astype(np.float32)
    light, angle = rng.uniform(0, .4), rng.uniform(0, 2 * np.pi)
    shade = 1 + light * ((u / pw - .5) * math.cos(angle) + (v / ph - .5) * math.sin(angle))
    alpha = _silhouette(rng, pw, ph)
    rgba = np.dstack([np.clip(rgb * shade[..., None], 0, 255), alpha * 255]).astype(np.uint8)
    return Image.fromarray(rgba, 'RGBA'), source, recolor


class Cutout:
    """One pasted object: an RGBA patch, its box per frame (track (T, 4): cx, cy, w, h in frame pixels)
    and, sometimes, a soft shadow cast at an offset (fractions of its box) with a strength in [0, 1]."""

    def __init__(self, patch, track, shadow=None):
        self.patch, self.track = patch, track
        self.alpha = patch.getchannel('A')  # a matte resamples this one channel: 4x less work than the RGBA
        self.area = np.asarray(self.alpha, np.float32).mean() / 255  # mask area / box area
        self.shadow = None
        if shadow is not None:
            dx, dy, strength = shadow
            blur = self.alpha.filter(ImageFilter.GaussianBlur(max(patch.size) * .06))
            self.shadow = (dx, dy, blur.point(lambda a: int(a * strength)))

    def draw(self, img, t, grid, fill=None):
        """Paste frame t's drawing into img, a PIL image whose pixel (u, v) shows frame point
        (x0 + u sx, y0 + v sy), grid = (x0, y0, sx, sy); `fill` paints the mask one color (a matte)."""
        if self.shadow is not None and fill is None:
            dx, dy, shade = self.shadow
            w, h = self.track[t, 2:]
            _paste(img, shade, self.track[t] + [dx * w, dy * h, 0, 0], grid, 0)
        _paste(img, self.patch if fill is None else self.alpha, self.track[t], grid, fill)


def _paste(img, patch, box, grid, fill=None):
    """Resample `patch` onto the box (cx, cy, w, h, frame pixels) through the output grid and paste it
    (an RGBA patch by its alpha; an L patch as the mask of color `fill`). Only the pixels it covers."""
    cx, cy, w, h = box
    x0, y0, sx, sy = grid
    W, H = img.size
    bx0, by0 = cx - w / 2, cy - h / 2
    u0, v0 = max(math.floor((bx0 - x0) / sx), 0), max(math.floor((by0 - y0) / sy), 0)
    u1, v1 = min(math.ceil((bx0 + w - x0) / sx), W), min(math.ceil((by0 + h - y0) / sy), H)
    if u0 >= u1 or v0 >= v1:
        return
    pw, ph = patch.size
    # output pixel u -> frame x0 + u sx -> patch (x - bx0) pw / w: one affine resample
    coeffs = (sx * pw / w, 0, (x0 + u0 * sx - bx0) * pw / w, 0, sy * ph / h, (y0 + v0 * sy - by0) * ph / h)
    part = patch.transform((u1 - u0, v1 - v0), Image.AFFINE, coeffs, Image.BILINEAR)
    if patch.mode == 'L':
        img.paste(fill, (u0, v0, u1, v1), part)
    elif fill is None:
        img.paste(part, (u0, v0), part)
    else:
        img.paste(fill, (u0, v0, u1, v1), part.getchannel('A'))


def _smooth_walk(rng, n, lo, hi, speed):
    """A random walk with momentum that bounces inside [lo, hi], with sudden bursts of speed: (n,)."""
    p, v, out = rng.uniform(lo, hi), rng.normal(0, speed), np.empty(n)
    bursts = set(rng.integers(0, n, rng.poisson(n / 80))) if n > 1 else set()
    for t in range(n):
        v = 0.9 * v + rng.normal(0, speed * 0.45)
        if t in bursts:  # fast motion: a kick of several times the usual speed
            v += rng.choice([-1, 1]) * speed * rng.uniform(4, 10)
        p += v
        if p < lo or p > hi:
            p, v = np.clip(p, lo, hi), -v
        out[t] = p
    return out


def _trajectory(rng, n, W, H, w, h):
    """(n, 4) cx, cy, w, h: smooth motion with bursts, scale change (approach, recede, breathe) and some
    aspect change, the box kept inside AREA_RANGE and ASPECT_RANGE."""
    t = np.arange(n) / max(n - 1, 1)
    scale = np.exp(rng.uniform(0, .3) * np.sin(2 * np.pi * t * rng.uniform(.5, 2) + rng.uniform(0, 6))
                   + rng.uniform(-.6, .6) * (t - .5))
    stretch = np.exp(rng.uniform(0, .15) * np.sin(2 * np.pi * t * rng.uniform(.5, 2) + rng.uniform(0, 6)))
    sizes = np.array([_fit(w * s * r, h * s / r, W, H) for s, r in zip(scale, stretch)])  # (n, 2)
    speed = math.exp(rng.uniform(math.log(.003), math.log(.03))) * min(W, H)  # px per frame
    mx, my = 0.3 * sizes[:, 0].max(), 0.3 * sizes[:, 1].max()  # may leave the frame by up to a fifth
    return np.column_stack([_smooth_walk(rng, n, mx, W - mx, speed), _smooth_walk(rng, n, my, H - my, speed), sizes])


def _crossing(rng, n, W, H, w, h, target):
    """(n, 4): a straight path that passes the target's position at a random frame (a passer-by)."""
    tc = rng.integers(n)
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(.005, .03) * min(W, H)
    t = np.arange(n) - tc
    near = target[tc, :2] + rng.normal(0, .3, 2) * target[tc, 2:]
    return np.column_stack([near[0] + t * speed * math.cos(angle), near[1] + t * speed * math.sin(angle),
                            np.full(n, w), np.full(n, h)])


class SyntheticClip(Sequence):
    """A deterministic clip of the photographic world: an object cut from one photo (irregular soft mask,
    shading, shadow) moving with scale change and bursts of speed over a panning, zooming, slightly
    rotating view of another photo; look-alikes cut from the same photo as the target; objects of other
    photos that cross its path, above or below it; sometimes an occluding bar; excursions out of view;
    flickering light. Frames are rendered on demand, crops straight at crop resolution. Boxes tightly
    enclose the target's visible pixels (mask >= 0.5); it is visible when >= 15 % of it shows.

    `photos` is the photo split it is made of ('train' or 'held_out'); a still is a clip of length 1."""

    def __init__(self, seed, length=100, size=(320, 240), photos='train', dataset='synthetic'):
        self.seed, self.size, self.length, self.photos = seed, tuple(size), length, photos
        self.name, self.dataset, self.attributes, self.frames = f"synthetic-{seed:07d}", dataset, {}, None
        self._boxes = None
        rng = np.random.default_rng([seed, 1])
        W, H = self.size
        pool = PHOTO_SPLIT[photos]
        self.background = pool[rng.integers(len(pool))]
        self._camera_path(rng, load_photo(self.background).size)
        # the target, from a photo other than the background's (mostly)
        name = self.background if rng.uniform() < .2 else pool[rng.integers(len(pool))]
        self.photo_names = {self.background, name}  # every photo this clip shows
        w, h = object_box(rng, W, H)
        track = _trajectory(rng, length, W, H, w, h)
        self._excursion(rng, track, W, H)
        pw, ph = self._patch_size(track)
        patch, source, recolor = cut_object(rng, load_photo(name), pw, ph)
        self.target = Cutout(patch, track, self._shadow(rng))
        self.below, self.above = [], []
        for _ in range(rng.choice([0, 1, 1, 2])):  # look-alikes: cut near the target in the same photo
            s = rng.uniform(.75, 1.3)
            x0, y0, x1, y1 = source
            dx, dy = rng.normal(0, .6, 2) * (x1 - x0, y1 - y0)
            PW, PH = load_photo(name).size
            dx, dy = np.clip(dx, -x0, PW - x1), np.clip(dy, -y0, PH - y1)
            lw, lh = _fit(w * s, h * s, W, H)
            look = _trajectory(rng, length, W, H, lw, lh)
            patch, _, _ = cut_object(rng, load_photo(name), *self._patch_size(look),
                                     (x0 + dx, y0 + dy, x1 + dx, y1 + dy), recolor)
            (self.above if rng.uniform() < .3 else self.below).append(Cutout(patch, look, self._shadow(rng)))
        for _ in range(rng.choice([0, 1, 2, 3])):  # objects of other photos passing by or crossing the target
            other = pool[rng.integers(len(pool))]
            self.photo_names.add(other)
            pass_by = _crossing(rng, length, W, H, *object_box(rng, W, H), track)
            patch, _, _ = cut_object(rng, load_photo(other), *self._patch_size(pass_by))
            (self.above if rng.uniform() < .5 else self.below).append(Cutout(patch, pass_by, self._shadow(rng)))
        if rng.uniform() < .25:
            self.above.append(self._occluder(rng, W, H, min(w, h), length, pool))
        self.light = (rng.uniform(.5, 3), rng.uniform(0, 6), rng.uniform(0, .25))  # cycles per clip, phase, depth

    def _camera_path(self, rng, photo_size):
        """Frame point X -> photo point C_t + z_t R(a_t) (X - frame center): a pan along a smooth walk, a
        zoom z_t (photo px per frame px) that breathes by up to 12 %, a rotation of up to 3.5 degrees."""
        W, H = self.size
        PW, PH = photo_size
        n, t = self.length, np.arange(self.length) / max(self.length - 1, 1)
        z0 = rng.uniform(.45, .8) * min(PW / W, PH / H)  # the frame shows 45-80 % of the photo's tighter side
        self.zoom = z0 * np.exp(.12 * np.sin(2 * np.pi * t * rng.uniform(.3, 1.5) + rng.uniform(0, 6)))
        self.angle = rng.uniform(0, .06) * np.sin(2 * np.pi * t * rng.uniform(.3, 1.5) + rng.uniform(0, 6))
        hx, hy = z0 * math.exp(.12) * (W / 2 + .06 * H / 2), z0 * math.exp(.12) * (H / 2 + .06 * W / 2)
        speed = rng.uniform(0, .01) * min(W, H) * z0
        self.center = np.column_stack([_smooth_walk(rng, n, hx, PW - hx, speed), _smooth_walk(rng, n, hy, PH - hy, speed)])

    def _patch_size(self, track):
        """A patch resolution of about the object's largest drawn size (4..128 px per side)."""
        w, h = track[:, 2].max(), track[:, 3].max()
        k = min(1.0, 128 / max(w, h))
        return max(4, round(w * k)), max(4, round(h * k))

    @staticmethod
    def _shadow(rng):
        """Half of the objects cast a soft shadow below and beside them."""
        return (rng.uniform(-.15, .15), rng.uniform(.05, .2), rng.uniform(.3, .6)) if rng.uniform() < .5 else None

    @staticmethod
    def _excursion(rng, track, W, H):
        """Sometimes the target leaves the frame over a nearby edge for a few frames and comes back."""
        n = len(track)
        if rng.uniform() > 0.3 or n < 60:
            return
        t0, L = rng.integers(5, n - 50), rng.integers(30, 50)
        t = np.arange(n)
        bump = np.where((t >= t0) & (t < t0 + L), np.sin(np.pi * (t - t0) / L), 0)
        axis = rng.integers(2)  # over a vertical or a horizontal edge, the nearer one
        side = int(track[t0, axis] > (W, H)[axis] / 2)
        limit = side * (W, H)[axis]
        beyond = track[t0, 2 + axis] * rng.uniform(0.1, 0.8)  # 0.5 and more: fully out for a while
        track[:, axis] += (limit - track[t0, axis] + (2 * side - 1) * beyond) * bump

    def _occluder(self, rng, W, H, s, n, pool):
        """A bar cut from a photo (a pole, a branch) across the frame, still or sweeping slowly."""
        vertical = rng.uniform() < .5
        thick, along = s * rng.uniform(.3, 1.0), (W if vertical else H)
        pos = rng.uniform(0, along) + rng.uniform(-.5, .5) * along * np.arange(n) / max(n, 1)
        other = (H if vertical else W) * 1.1
        track = np.column_stack([pos, np.full(n, (H if vertical else W) / 2), np.full(n, thick), np.full(n, other)])
        track = track if vertical else track[:, [1, 0, 3, 2]]
        pw, ph = (8, 96) if vertical else (96, 8)
        name = pool[rng.integers(len(pool))]
        self.photo_names.add(name)
        patch, _, _ = cut_object(rng, load_photo(name), pw, ph)
        patch.putalpha(255)  # a solid bar
        return Cutout(patch, track)

    def __len__(self):
        return self.length

    @property
    def boxes(self):
        if self._boxes is None:
            self._boxes, self._visible = self._annotate()
        return self._boxes

    @property
    def visible(self):
        self.boxes
        return self._visible

    def _annotate(self):
        """Box = the tight box of the target's visible mask (>= 0.5) in the matte of its own patch region;
        frames where less than 15 % of it shows are absent and keep the whole object's box."""
        W, H = self.size
        boxes, visible = np.zeros((self.length, 4)), np.zeros(self.length, bool)
        for t in range(self.length):
            cx, cy, w, h = self.target.track[t]
            x0, y0 = max(math.floor(cx - w / 2), 0), max(math.floor(cy - h / 2), 0)
            x1, y1 = min(math.ceil(cx + w / 2), W), min(math.ceil(cy + h / 2), H)
            boxes[t] = cx - w / 2, cy - h / 2, w, h
            if x0 >= x1 or y0 >= y1:
                continue
            matte = self.matte(t, (x0, y0, x1, y1)) >= 128
            if matte.sum() >= 0.15 * self.target.area * w * h:
                rows, cols = np.flatnonzero(matte.any(1)), np.flatnonzero(matte.any(0))
                boxes[t] = x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
                visible[t] = True
        return boxes, visible

    def starts_in_view(self):
        """Does frame 0 show >= START_IN_VIEW of the target's mask (nothing on it, inside the frame)?"""
        cx, cy, w, h = self.target.track[0]
        return (self.matte(0) >= 128).sum() >= START_IN_VIEW * self.target.area * w * h

    def matte(self, i, region=None):
        """The target's visible mask at frame i over region (x0, y0, x1, y1) of whole frame pixels (default
        the frame), drawn by the renderer (everything else black): uint8 (h, w), 255 = all target."""
        x0, y0, x1, y1 = region or (0, 0, *self.size)
        img = Image.new('L', (x1 - x0, y1 - y0), 0)
        grid = (x0, y0, 1.0, 1.0)
        self.target.draw(img, i, grid, 255)  # what is below it would paint black on black
        for thing in self.above:
            thing.draw(img, i, grid, 0)
        return np.asarray(img)

    def image(self, i, shrink=1.0):
        return Image.fromarray(self.frame(i)), 1.0

    def frame(self, i, hide_target=False):
        """Render frame i -> uint8 (H, W, 3)."""
        W, H = self.size
        return np.asarray(self.render(i, (0, 0, W, H), (W, H), hide_target))

    def crops(self, i, windows, sizes):
        """Crops of frame i rendered straight from the photos (no full frame is drawn): each window's part
        inside the frame at frame resolution, resized into the crop (antialiased when it shrinks); the
        same geometry and mean-color padding as crop_pil on the rendered frame."""
        W, H = self.size
        fill, out = None, []
        for window, size in zip(windows, sizes):
            (u0, v0, u1, v1), box = _inside(window, size, W, H)
            part = None
            if u0 < u1 and v0 < v1:
                w, h = max(1, math.ceil(box[2] - box[0])), max(1, math.ceil(box[3] - box[1]))
                part = self.render(i, box, (w, h)).resize((u1 - u0, v1 - v0), Image.BILINEAR)
            if (u0, v0, u1, v1) == (0, 0, size, size):
                out.append(part)
                continue
            if fill is None:  # the frame's mean color, from an 8x coarser rendering
                small = np.asarray(self.render(i, (0, 0, W, H), (max(W // 8, 1), max(H // 8, 1))), np.float32)
                fill = tuple(int(v) for v in small.mean((0, 1)).round())
            out.append(_padded(part, (u0, v0), size, fill))
        return out

    def render(self, i, box, size, hide_target=False):
        """Frame i sampled on a size[0] x size[1] grid spanning box (x0, y0, x1, y1, frame pixels): the
        photo through the camera, shadows and objects below, the target, objects above, light -> PIL RGB.
        Box (0, 0, W, H) at size (W, H) is the frame itself; a crop's box renders only what it shows."""
        W, H = self.size
        x0, y0, x1, y1 = box
        w, h = size
        grid = (x0, y0, (x1 - x0) / w, (y1 - y0) / h)  # output pixel (u, v) shows frame (x0 + u sx, y0 + v sy)
        z, a = self.zoom[i], self.angle[i]
        c, s = z * math.cos(a), z * math.sin(a)
        ox, oy = x0 - W / 2, y0 - H / 2
        cx, cy = self.center[i]
        coeffs = (c * grid[2], -s * grid[3], cx + c * ox - s * oy, s * grid[2], c * grid[3], cy + s * ox + c * oy)
        img = load_photo(self.background).transform((w, h), Image.AFFINE, coeffs, Image.BILINEAR)
        for thing in self.below + ([] if hide_target else [self.target]) + self.above:
            thing.draw(img, i, grid)
        cycles, phase, depth = self.light
        gain = 1 + depth * math.sin(2 * np.pi * cycles * i / max(self.length, 1) + phase)
        return img.point([min(255, int(v * gain + .5)) for v in range(256)] * 3) if depth else img


def synthetic_clip(seed, length=100, size=(320, 240), photos=None):
    """A clip of the photographic world (a Sequence): deterministic in seed, frames rendered on demand.
    Made of the held-out photos when the seed is a val or test seed (or photos='held_out')."""
    return SyntheticClip(seed, length, size, photos or _photos_of(seed))


# split -> (first seed, default count, photo split). Seeds are disjoint; so are the photos of training and
# evaluation. Stills (length-1 clips) are LoRAT's COCO: template and search cut from one image.
SYNTHETIC_SPLITS = {'train': (0, 1000, 'train'), 'stills': (4_000_000, 100_000, 'train'),
                    'val': (1_000_000, 20, 'held_out'), 'test': (2_000_000, 20, 'held_out')}


def _photos_of(seed):
    return 'held_out' if 1_000_000 <= seed < 3_000_000 else 'train'


def open_synthetic(split='train', num=None, length=100, size=(320, 240)):
    """The synthetic world's splits: disjoint seed ranges and photos (SYNTHETIC_SPLITS). The held-out
    splits are benchmarks, so, as in LaSOT or GOT-10k, each clip starts with its target in view: their
    seeds are the first of their range whose clip `starts_in_view`."""
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"synthetic split must be one of {', '.join(SYNTHETIC_SPLITS)}, not {split!r}")
    first, default_num, photos = SYNTHETIC_SPLITS[split]
    length, num = (1 if split == 'stills' else length), num or default_num
    if photos == 'held_out':
        return _Clips(benchmark_seeds(first, num, length, tuple(size)), length, size, photos)
    return _Clips(range(first, first + num), length, size, photos)


START_IN_VIEW = 0.9  # the share of the target's mask that a benchmark clip shows in its first frame


@lru_cache(maxsize=None)
def benchmark_seeds(first, num, length, size):
    """The first `num` seeds from `first` whose clip shows >= START_IN_VIEW of its target in frame 0 (the
    frame that gives the tracker its box): no occluder on it, not out of view."""
    seeds, seed = [], first
    while len(seeds) < num:
        if SyntheticClip(seed, length, size, 'held_out').starts_in_view():
            seeds.append(seed)
        seed += 1
    return seeds


class _Clips(_ListLike):
    """The clips of a split, each built when first asked for (100,000 stills cost nothing until drawn)."""

    def __init__(self, seeds, length, size, photos):
        self.seeds, self.length, self.size, self.photos = seeds, length, size, photos
        self.cache = {}

    def __len__(self):
        return len(self.seeds)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        if k in self.cache:
            return self.cache[k]
        clip = SyntheticClip(self.seeds[k], self.length, self.size, self.photos)
        if self.length > 1:  # a clip keeps its annotation; a still is cheaper to make again than to keep
            self.cache[k] = clip
        return clip


def write_mp4(path, frames, fps=30):
    """uint8 (H,W,3) frames -> H.264 mp4 (libx264, yuv420p), odd sizes cropped to even; atomic."""
    import av

    def write(tmp):
        with av.open(str(tmp), 'w', format='mp4') as out:
            stream = None
            for frame in frames:
                h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
                if stream is None:
                    stream = out.add_stream('libx264', rate=fps)
                    stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format='rgb24')))
            if stream is not None:
                out.mux(stream.encode())
    write_atomic(path, write)


def write_text_atomic(path, text):
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def box_lines(boxes, digits=2):
    """Comma-separated x,y,w,h, one line per frame (pytracking's and both servers' result format)."""
    return ''.join(','.join(f"{v:.{digits}f}" for v in box) + '\n' for box in boxes)


def write_got10k_sequence(folder, seq):
    """A sequence as a GOT-10k folder: %08d.jpg, groundtruth.txt, absence.label, cover.label."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(seq)):
        Image.fromarray(seq.frame(i)).save(folder / f"{i + 1:08d}.jpg", quality=95)
    (folder / 'groundtruth.txt').write_text(''.join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in seq.boxes))
    (folder / 'absence.label').write_text(''.join(f"{int(not v)}\n" for v in seq.visible))
    (folder / 'cover.label').write_text(''.join(f"{8 if v else 0}\n" for v in seq.visible))


# -----------------------------------------------------------------------------
# The LoRAT training sampler


def flip_box(box_xyxy, size):
    """Horizontal flip of a crop-pixel box in a size-wide crop."""
    x1, y1, x2, y2 = box_xyxy
    return np.array([size - x2, y1, size - x1, y2])


LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as PIL and torchvision use


def color_augment(images, rng):
    """LoRAT's photometric augmentation, the same draw for template and search: color jitter
    (brightness, contrast, saturation, each x U(0.6, 1.4), in random order), then one of
    grayscale / solarize / gaussian blur (sigma U(0.1, 2)).

    uint8 PIL images in, planar float32 (3, H, W) arrays in [0, 255] out (standardize() takes them).
    The blur runs first, in PIL: it is linear, so it commutes with the jitter (up to clipping)."""
    factors, order = rng.uniform(0.6, 1.4, 3), rng.permutation(3)
    choice, sigma = rng.integers(3), rng.uniform(0.1, 2.0)
    if choice == 2:
        images = [im.filter(ImageFilter.GaussianBlur(sigma)) for im in images]
    out = []
    for im in images:
        p = planar(im)  # (3, H, W)
        M, b = jitter_map(p.reshape(3, -1).mean(1), factors, order)
        p = np.clip(np.tensordot(M.T, p, 1) + b[:, None, None], 0, 255)  # every pixel @ M + b
        if choice == 0:  # grayscale, kept 3-channel
            p = np.repeat(np.tensordot(LUMA, p, 1)[None], 3, axis=0)
        elif choice == 1:  # solarize: values above the middle inverted
            p = np.minimum(p, 255 - p)
        out.append(p)
    return out


def jitter_map(mean, factors, order):
    """Color jitter as one affine color map: pixel (3,) -> pixel @ M + b. Brightness scales the
    values; contrast moves them about the image's mean gray; saturation about each pixel's own gray;
    all three are linear, so in any order they compose into one 3x3 map (applied in one pass and
    clipped once, not after each step). `mean` (3,) is the image's mean color, tracked through."""
    M, b = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    for k in order:
        f = np.float32(factors[k])
        if k == 0:  # brightness: x * f
            step, shift = np.eye(3, dtype=np.float32) * f, np.zeros(3, np.float32)
        elif k == 1:  # contrast: g + (x - g) * f, g = the mean gray of the image as it stands
            g = (mean @ M + b) @ LUMA
            step, shift = np.eye(3, dtype=np.float32) * f, np.full(3, (1 - f) * g, np.float32)
        else:  # saturation: luma(x) + (x - luma(x)) * f
            step, shift = np.eye(3, dtype=np.float32) * f + (1 - f) * LUMA[:, None], np.zeros(3, np.float32)
        M, b = M @ step, b @ step + shift
    return M, b


class TrainingPairs(torch.utils.data.Dataset):
    """(template, search) pairs as LoRAT trains on them. Dataset by weight, sequence uniformly, a visible
    search frame and a visible template frame within +-max_gap of it; template: SiamFC crop, factor 2,
    no jitter; search: factor `search_factor` with scale and center jitter (an object >= 10 px in the
    crop, up to 10 tries); flips and color augmentation when `augment` (the jitter always: it is what
    the tracker must undo); ImageNet normalization.

    pairs[i] is a pure function of (seed, i): any rank, worker or resumed run gets the same sample.
    Returns z (3,Tz,Tz), x (3,Sx,Sx) float, z_mask (gz,gz) int64, x_box (4,) normalized xyxy."""

    def __init__(self, datasets, weights, *, template_size, search_size, search_factor, samples_per_epoch, seed,
                 augment=True, stride=14, template_factor=2.0, max_gap=100, min_object=10, tries=10):
        if len(datasets) != len(weights) or not datasets:
            raise ValueError(f"{len(datasets)} datasets and {len(weights)} weights: give one weight per dataset")
        self.datasets = datasets
        self.cum = np.cumsum(weights) / np.sum(weights)
        self.Tz, self.Sx, self.search_factor, self.template_factor = template_size, search_size, search_factor, template_factor
        self.samples, self.seed, self.augment, self.stride = samples_per_epoch, seed, augment, stride
        self.max_gap, self.min_object, self.tries = max_gap, min_object, tries

    def __len__(self):
        return self.samples

    def sample_frames(self, rng):
        """-> (sequence, template frame, search frame), both frames with a visible, valid target."""
        ds = self.datasets[min(bisect.bisect_right(self.cum, rng.uniform()), len(self.datasets) - 1)]
        for _ in range(100):  # redraw the sequence, not the dataset, so the weights hold
            seq = ds[rng.integers(len(ds))]
            ok = np.flatnonzero(seq.visible & box_valid(seq.boxes))
            if len(ok):
                t_x = rng.choice(ok)
                t_z = rng.choice(ok[np.abs(ok - t_x) <= self.max_gap])
                return seq, int(t_z), int(t_x)
        raise ValueError(f"no sequence with a visible target in 100 draws from a dataset of {len(ds)}: "
                         f"check its annotations")

    def search_window(self, box, rng):
        """Jitter until the object keeps >= min_object px per side inside the crop (up to `tries`)."""
        x, y, w, h = box
        for _ in range(self.tries):
            window = jitter_window(box, self.search_factor, self.Sx, rng)
            b = np.clip(box_to_crop([x, y, x + w, y + h], window, self.Sx), 0, self.Sx)
            if b[2] - b[0] >= self.min_object and b[3] - b[1] >= self.min_object:
                return window
        return crop_window(box, self.search_factor)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        seq, t_z, t_x = self.sample_frames(rng)
        box_z, box_x = seq.boxes[t_z], seq.boxes[t_x]
        win_z = crop_window(box_z, self.template_factor)
        win_x = self.search_window(box_x, rng)
        if t_z == t_x:  # one image (COCO): read it once
            z, x = seq.crops(t_z, [win_z, win_x], [self.Tz, self.Sx])
        else:
            (z,), (x,) = seq.crops(t_z, [win_z], [self.Tz]), seq.crops(t_x, [win_x], [self.Sx])
        z_box = box_to_crop(box_z[:2].tolist() + (box_z[:2] + box_z[2:]).tolist(), win_z, self.Tz)
        x_box = box_to_crop(box_x[:2].tolist() + (box_x[:2] + box_x[2:]).tolist(), win_x, self.Sx)
        if self.augment:
            if rng.uniform() < 0.5:  # flips: independent for template and search
                z, z_box = z.transpose(Image.FLIP_LEFT_RIGHT), flip_box(z_box, self.Tz)
            if rng.uniform() < 0.5:
                x, x_box = x.transpose(Image.FLIP_LEFT_RIGHT), flip_box(x_box, self.Sx)
        z_box = np.clip(z_box, 0, self.Tz)
        z_mask = template_fg_mask(torch.tensor(z_box[None], dtype=torch.float32), self.Tz // self.stride, self.stride)[0]
        z, x = color_augment([z, x], rng) if self.augment else (planar(z), planar(x))
        return {'z': standardize(z), 'x': standardize(x), 'z_mask': z_mask,  # (gz, gz)
                'x_box': torch.tensor(np.clip(x_box / self.Sx, 0, 1), dtype=torch.float32)}


# -----------------------------------------------------------------------------
# Command line: speed benchmark and demo writer


def write_jpeg_benchmark_tree(folder, num=6, length=40, size=(640, 360)):
    """A GOT-10k-layout folder of real JPEGs (synthetic clips rendered at `size`)."""
    for k in range(num):
        write_got10k_sequence(Path(folder) / f"seq{k:03d}", synthetic_clip(3_000_000 + k, length, size))
    return open_dataset('custom', folder)


def benchmark(sets, weights, template_size, search_size, factor, samples, workers_list, label):
    """Print samples/s of the whole pipeline (sample, decode, crop, augment, normalize) per worker count."""
    for workers in workers_list:
        pairs = TrainingPairs(sets, weights, template_size=template_size, search_size=search_size,
                              search_factor=factor, samples_per_epoch=samples + 64, seed=0)
        loader = torch.utils.data.DataLoader(pairs, batch_size=32, num_workers=workers)
        batches = iter(loader)
        next(batches), next(batches)  # warm-up: worker start, first annotation passes
        start = time.perf_counter()
        n = sum(len(b['x']) for b in batches)
        rate = n / (time.perf_counter() - start)
        cores = max(workers, 1)
        print(f"{label:>10} {template_size:>3}/{search_size:<3} workers={workers}: {rate:7.0f} samples/s "
              f"({rate / cores:.0f} per core)", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--benchmark', action='store_true', help='samples/s of the training pipeline (synthetic + JPEG folder)')
    p.add_argument('--samples', type=int, default=640, help='samples per benchmark measurement')
    p.add_argument('--workers', default='0,1,2', help='DataLoader worker counts to benchmark')
    p.add_argument('--write-demo', metavar='DIR', help='write a synthetic clip as mp4 + GOT-10k folder')
    p.add_argument('--seed', type=int, default=2_000_001, help='synthetic clip seed for --write-demo (a test clip)')
    p.add_argument('--length', type=int, default=100)
    p.add_argument('--size', default='640x360', help='WxH of the demo clip')
    args = p.parse_args(argv)
    if args.write_demo:
        W, H = (int(v) for v in args.size.lower().split('x'))
        clip = synthetic_clip(args.seed, args.length, (W, H))
        os.makedirs(args.write_demo, exist_ok=True)
        mp4 = os.path.join(args.write_demo, f"{clip.name}.mp4")
        write_mp4(mp4, (clip.frame(i) for i in range(len(clip))))
        write_got10k_sequence(os.path.join(args.write_demo, clip.name), clip)
        np.savetxt(os.path.join(args.write_demo, f"{clip.name}.txt"), clip.boxes, fmt='%.4f', delimiter=',')
        print(f"wrote {mp4}, its GOT-10k folder and boxes ({len(clip)} frames, "
              f"{int((~clip.visible).sum())} with the target absent); first box {clip.boxes[0].round(1).tolist()}")
    if args.benchmark:
        workers = [int(w) for w in args.workers.split(',')]
        print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; batch 32")
        clips, stills = open_dataset('synthetic', split='train'), open_dataset('synthetic_stills')
        start = time.perf_counter()
        for clip in clips:  # once per process (workers inherit it): not part of the steady state
            clip.boxes
        print(f"making and annotating {len(clips)} synthetic clips: {time.perf_counter() - start:.1f} s (once)")
        for tz, sx in ((56, 112), (112, 224)):
            benchmark([clips], [1], tz, sx, 4.0, args.samples, workers, 'clips')
            benchmark([stills], [1], tz, sx, 4.0, args.samples, workers, 'stills')
            benchmark([clips, stills], [3, 1], tz, sx, 4.0, args.samples, workers, 'mix 3:1')
        with tempfile.TemporaryDirectory() as tmp:
            jpegs = write_jpeg_benchmark_tree(tmp)
            for tz, sx in ((56, 112), (112, 224)):
                benchmark([jpegs], [1], tz, sx, 4.0, args.samples, workers, 'jpeg 640p')
    if not (args.benchmark or args.write_demo):
        p.print_help()


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
