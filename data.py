"""Data for LoRAT: benchmark readers, a synthetic tracking world, and the training-pair sampler.

Everything that gets a frame and its box from disk (or from nothing) into a training batch or an
evaluation loop:

    open_dataset('lasot', '/data', split='test')   -> list of Sequence (boxes x,y,w,h + visibility;
                                                       frames are read only when asked for)
    crop_window / jitter_window / crop_image       -> the ONE SiamFC-style crop, used by training,
    box_to_crop / box_from_crop                        tracking and evaluation alike
    synthetic_clip(seed)                            -> a rendered tracking clip (the default dataset)
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

from lorat import template_fg_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = Path(__file__).resolve().parent / 'splits'

# dataset name -> its folder's usual name under a data root (--data-root / $LORAT_DATA)
DATASETS = {'lasot': 'LaSOT', 'lasot_ext': 'LaSOT_ext', 'got10k': 'GOT-10k', 'trackingnet': 'TrackingNet',
            'coco': 'COCO', 'tnl2k': 'TNL2K', 'otb': 'OTB100', 'custom': None, 'synthetic': None}
ALIASES = {'got10k_val': ('got10k', 'val'), 'got10k_test': ('got10k', 'test'),
           'got10k_vot_train': ('got10k', 'vot_train'), 'lasot_test': ('lasot', 'test')}


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


def open_lasot(root, split=None, dataset='lasot'):
    """<root>/<class>/<class>-N/. split 'train' (1120) / 'test' (280) / None (every sequence present),
    so a root holding only the 280 test sequences works too."""
    found = {p.parent.name: p.parent for p in sorted(Path(root).glob('*/*/groundtruth.txt'))}
    if split is None:
        names = list(found)
    else:
        if split not in ('train', 'test'):
            raise ValueError(f"{dataset} split must be train or test, not {split!r}")
        names = read_split(f'lasot_{split}_split.txt')
        missing = [n for n in names if n not in found]
        if missing:
            raise ValueError(f"{root}: {len(missing)} of the {len(names)} LaSOT {split} sequences are missing "
                             f"(first: {missing[0]}); pass split=None to use the ones present")
    return [lasot_sequence(found[n], dataset) for n in names]


def open_got10k(root, split='train'):
    """<root>/{train,val,test}/list.txt. 'vot_train' / 'vot_val': the VOT-excluded split of train
    (0-based indices into train/list.txt), which LoRAT trains on with the other datasets."""
    sub = 'train' if split in ('vot_train', 'vot_val') else split
    if sub not in ('train', 'val', 'test'):
        raise ValueError(f"got10k split must be train, val, test, vot_train or vot_val, not {split!r}")
    list_file = Path(root) / sub / 'list.txt'
    if not list_file.exists():
        raise ValueError(f"{list_file} not found: is {root} the GOT-10k folder (with train/ val/ test/)?")
    names = list_file.read_text().split()
    if split != sub:
        names = [names[int(i)] for i in read_split(f'got10k_{split}_split.txt')]
    return [got10k_sequence(Path(root) / sub / n) for n in names]


def open_trackingnet(root, split='train'):
    """TRAIN_0..11/ and TEST/, each anno/<seq>.txt and frames/<seq>/<i>.jpg (from 0). Split 'train'
    = every TRAIN_k present, 'test', or one chunk like 'TRAIN_3'. No visibility flags: w,h > 0."""
    if split in (None, 'train'):
        chunks = sorted((p for p in Path(root).glob('TRAIN_*') if p.is_dir()), key=lambda p: int(p.name[6:]))
    else:
        chunks = [Path(root) / ('TEST' if split == 'test' else split)]
    seqs = []
    for chunk in chunks:
        for anno in sorted((chunk / 'anno').glob('*.txt')):
            boxes = read_boxes(anno)
            frames = chunk / 'frames' / anno.stem
            if len(boxes) == 1 and frames.exists():  # test: only the first box is public
                n = sum(1 for _ in frames.glob('*.jpg'))
                boxes = np.concatenate([boxes, np.full((max(n, 1) - 1, 4), np.nan)])
            seqs.append(Sequence(anno.stem, boxes, box_valid(boxes),
                                 lambda i, f=frames: str(f / f"{i}.jpg"), 'trackingnet'))
    return seqs


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

    def __init__(self, root, split='train'):
        split = split or 'train'
        ann = Path(root) / 'annotations' / f'instances_{split}2017.json'
        if not ann.exists():
            raise ValueError(f"{ann} not found: is {root} the COCO folder (annotations/, {split}2017/)?")
        coco = json.loads(ann.read_text())
        files = {im['id']: im['file_name'] for im in coco['images']}
        objs = [(a['image_id'], a['bbox']) for a in coco['annotations']
                if not a.get('iscrowd', 0) and a['bbox'][2] > 0 and a['bbox'][3] > 0]
        self.folder = Path(root) / f'{split}2017'
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


def open_dataset(name, root=None, split=None, **options):
    """Name -> list of Sequence (COCO: a list-like of one-frame sequences). `root` is the dataset's
    folder or a data root holding it under its usual name (DATASETS). Synthetic needs no root;
    `options` go to open_synthetic (num, length, size)."""
    name, split = ALIASES.get(name, (name, split))
    if name == 'synthetic':
        return open_synthetic(split or 'train', **options)
    readers = {'lasot': open_lasot, 'lasot_ext': lambda r, s: open_lasot(r, s, 'lasot_ext'),
               'got10k': open_got10k, 'trackingnet': open_trackingnet, 'tnl2k': open_tnl2k, 'otb': open_otb,
               'coco': CocoObjects, 'custom': open_custom}
    if name not in readers:
        raise ValueError(f"unknown dataset {name!r}: choose from {', '.join(list(DATASETS) + list(ALIASES))}")
    if name == 'lasot_ext':
        split = None  # a test-only set: every sequence present
    if name == 'got10k' and split is None:
        split = 'train'
    return readers[name](resolve_root(name, root), split)


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
# Synthetic world: textured objects, look-alike distractors, occluders, over textured backgrounds

SHAPES = ('ellipse', 'box', 'triangle', 'diamond', 'cross', 'ring')
PATTERNS = ('stripes', 'checker', 'dots', 'rings', 'gradient')


def _hsv_to_rgb(h, s, v):
    """Hue in turns, s, v in [0,1] -> RGB in [0,255] (3,)."""
    k = (np.array([5, 3, 1]) + h * 6) % 6
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _shape_mask(shape, u, v):
    """Inside-test of a shape on coordinates u, v in [-1, 1] across its box (each touches all 4 sides)."""
    r2 = u * u + v * v
    return {'ellipse': lambda: r2 <= 1,
            'box': lambda: u ** 4 + v ** 4 <= 1,
            'triangle': lambda: np.abs(u) <= (v + 1) / 2,
            'diamond': lambda: np.abs(u) + np.abs(v) <= 1,
            'cross': lambda: (np.abs(u) <= .4) | (np.abs(v) <= .4),
            'ring': lambda: (r2 <= 1) & (r2 >= .3)}[shape]()


def _pattern(kind, u, v, freq, angle):
    """Texture in [0, 1] on object coordinates, so it scales and moves with the object."""
    a = u * math.cos(angle) + v * math.sin(angle)
    b = -u * math.sin(angle) + v * math.cos(angle)
    f = freq * math.pi
    return {'stripes': lambda: np.sin(f * a) > 0,
            'checker': lambda: np.sin(f * a) * np.sin(f * b) > 0,
            'dots': lambda: np.cos(f * a) * np.cos(f * b) > .3,
            'rings': lambda: np.sin(f * np.sqrt(u * u + v * v)) > 0,
            'gradient': lambda: (a + 1.5) / 3}[kind]().astype(np.float32)


class Thing:
    """One drawn object: a shape with a two-color texture and a trajectory (cx, cy, w, h) per frame."""

    def __init__(self, shape, pattern, colors, freq, angle, track):
        self.shape, self.pattern, self.freq, self.angle = shape, pattern, freq, angle
        self.colors = np.asarray(colors, np.float32)  # (2, 3): float32 keeps the drawing in float32
        self.track = track  # (T, 4) cx, cy, w, h

    def extent(self, t):
        """The pixel patch [x0, x1) x [y0, y1) that frame t's drawing (with its motion smear) covers."""
        cx, cy, w, h = self.track[t]
        vx, vy = np.abs(self.track[t, :2] - self.track[max(t - 1, 0), :2])
        return (math.floor(cx - w / 2 - vx), math.floor(cy - h / 2 - vy),
                math.ceil(cx + w / 2 + vx) + 1, math.ceil(cy + h / 2 + vy) + 1)

    def draw(self, t, with_color=True):
        """Rasterize at frame t over the pixel patch extent(t) -> (x0, y0, alpha (h,w), rgb (h,w,3)),
        the patch starting at column x0, row y0. alpha > 0 exactly where it is drawn."""
        x0, y0, x1, y1 = self.extent(t)
        px, py = np.arange(x0, x1, dtype=np.float32) + 0.5, np.arange(y0, y1, dtype=np.float32) + 0.5
        return (x0, y0) + self.sample(t, px, py, with_color)

    def sample(self, t, px, py, with_color=True):
        """The drawing at frame t, motion-blurred along its velocity, at the points px (w,) x py (h,)
        (image coordinates: pixel centers for a frame, a crop's grid for a crop) -> alpha (h, w), rgb (h, w, 3)."""
        cx, cy, w, h = self.track[t]
        vx, vy = self.track[t, :2] - self.track[max(t - 1, 0), :2]  # pixels moved since the last frame
        n = int(min(max(abs(vx), abs(vy)) // 2, 4)) + 1  # smear over the motion: fast = blurred
        py = py[:, None]
        alpha = np.zeros((len(py), len(px)), np.float32)
        rgb = np.zeros((len(py), len(px), 3), np.float32) if with_color else None
        for k in range(n):  # n exposures along the last frame's motion
            s = k / n if n > 1 else 0.0
            u, v = (px - cx + s * vx) / (w / 2), (py - cy + s * vy) / (h / 2)
            inside = _shape_mask(self.shape, u, v)
            alpha += inside / n
            if with_color:
                mix = _pattern(self.pattern, u, v, self.freq, self.angle)[..., None]
                rgb += inside[..., None] * (self.colors[0] + (self.colors[1] - self.colors[0]) * mix) / n
        return alpha, rgb


def _smooth_walk(rng, n, size, lo, hi, speed):
    """A random walk with momentum that bounces inside [lo, hi]: (n,) positions."""
    p, v, out = rng.uniform(lo, hi), rng.normal(0, speed), np.empty(n)
    for t in range(n):
        v = 0.9 * v + rng.normal(0, speed * 0.45)
        p += v
        if p < lo or p > hi:
            p, v = np.clip(p, lo, hi), -v
        out[t] = p
    return out


def _trajectory(rng, n, W, H, size):
    """(n, 4) cx, cy, w, h: smooth motion, scale and aspect-ratio change."""
    t = np.arange(n)
    scale = size * np.exp(0.3 * np.sin(2 * np.pi * t / rng.uniform(60, 200) + rng.uniform(0, 6)))
    aspect = np.exp(rng.uniform(-0.5, 0.5) + 0.2 * np.sin(2 * np.pi * t / rng.uniform(50, 150) + rng.uniform(0, 6)))
    w, h = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    m = size * 0.6
    speed = rng.uniform(0.5, 2.0) * min(W, H) / 240
    return np.stack([_smooth_walk(rng, n, size, m, W - m, speed), _smooth_walk(rng, n, size, m, H - m, speed),
                     w, h], 1)


class SyntheticClip(Sequence):
    """A deterministic synthetic tracking clip: the target, 1-3 look-alike distractors (same shape, other
    colors or texture), sometimes an occluding bar, excursions out of view, motion blur, illumination
    change and a panning textured background. Frames are rendered on demand; boxes tightly enclose the
    visible drawn pixels of the target; it is visible when >= 15 % of it shows."""

    def __init__(self, seed, length=100, size=(320, 240), dataset='synthetic'):
        self.seed, self.size = seed, tuple(size)
        self.name, self.dataset, self.attributes, self.frames = f"synthetic-{seed:07d}", dataset, {}, None
        self.length = length
        rng = np.random.default_rng([seed, 1])
        W, H = self.size
        s = rng.uniform(0.12, 0.26) * min(W, H)
        shape = SHAPES[rng.integers(len(SHAPES))]
        hue = rng.uniform()
        colors = np.stack([_hsv_to_rgb(hue, rng.uniform(.5, 1), rng.uniform(.6, 1)),
                           _hsv_to_rgb(hue + rng.uniform(.25, .75), rng.uniform(.3, 1), rng.uniform(.3, 1))])
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
        freq, angle = rng.uniform(1.5, 4), rng.uniform(0, np.pi)
        track = _trajectory(rng, length, W, H, s)
        self._excursion(rng, track, W, H)
        self.target = Thing(shape, pattern, colors, freq, angle, track)
        self.below, self.above = [], []  # distractors drawn under / over the target
        for _ in range(rng.choice([1, 2, 2, 3])):  # look-alikes: same shape and size range
            if rng.uniform() < 0.5:  # other colors, same texture
                c = np.stack([_hsv_to_rgb(hue + rng.uniform(.2, .8), rng.uniform(.5, 1), rng.uniform(.6, 1)),
                              _hsv_to_rgb(rng.uniform(), rng.uniform(.3, 1), rng.uniform(.3, 1))])
                p = pattern
            else:  # same colors, other texture
                c, p = colors, PATTERNS[(PATTERNS.index(pattern) + rng.integers(1, len(PATTERNS))) % len(PATTERNS)]
            track = _trajectory(rng, length, W, H, s * rng.uniform(.8, 1.2))
            d = Thing(shape, p, c, rng.uniform(1.5, 4), rng.uniform(0, np.pi), track)
            (self.above if rng.uniform() < 0.3 else self.below).append(d)
        if rng.uniform() < 0.4:
            self.above.append(self._occluder(rng, W, H, s, length))
        self.light = (rng.uniform(60, 200), rng.uniform(0, 6), rng.uniform(0.1, 0.3), rng.uniform(-0.3, 0.3))
        self.pan = (rng.uniform(50, 200), rng.uniform(0, 6), rng.uniform(50, 200), rng.uniform(0, 6))
        # the background: one of 32 textures of this split's bank, a channel permutation, a panning view
        self.texture, self.channels = (seed // 1_000_000, int(rng.integers(32))), rng.permutation(3)
        self.view = (int(rng.integers(W // 4 + 1)), int(rng.integers(H // 4 + 1)))  # top-left of the pan range
        self._boxes = None

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

    @staticmethod
    def _occluder(rng, W, H, s, n):
        """A flat bar that sweeps across the frame once (partial, short occlusions)."""
        vertical = rng.uniform() < 0.5
        t = np.arange(n)
        t0, dur = rng.uniform(0, n * 0.6), rng.uniform(20, 40)
        thick = s * rng.uniform(0.4, 1.0)
        along = (W if vertical else H)
        pos = -thick + (along + 2 * thick) * np.clip((t - t0) / dur, 0, 1)
        other = (H if vertical else W)
        track = np.stack([pos, np.full(n, other / 2), np.full(n, thick), np.full(n, other * 1.2)], 1)
        track = track if vertical else track[:, [1, 0, 3, 2]]
        color = _hsv_to_rgb(rng.uniform(), rng.uniform(0, .5), rng.uniform(.2, .9))
        return Thing('box', 'gradient', np.stack([color, color * 0.7]), 1.0, 0.0, track)

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

    def _visible_alpha(self, t):
        """The target's alpha left visible at frame t (in frame, not covered) over its patch."""
        W, H = self.size
        x0, y0, alpha, _ = self.target.draw(t, with_color=False)
        h, w = alpha.shape
        cols, rows = np.arange(x0, x0 + w), np.arange(y0, y0 + h)
        alpha = alpha * ((cols >= 0) & (cols < W))[None] * ((rows >= 0) & (rows < H))[:, None]
        for thing in self.above:
            ex0, ey0, ex1, ey1 = thing.extent(t)
            if ex0 >= x0 + w or ey0 >= y0 + h or ex1 <= x0 or ey1 <= y0:
                continue  # does not reach the target: skip drawing it
            xa, ya, xb, yb = max(ex0, x0), max(ey0, y0), min(ex1, x0 + w), min(ey1, y0 + h)  # the overlap only
            oa, _ = thing.sample(t, np.arange(xa, xb, dtype=np.float32) + 0.5,
                                 np.arange(ya, yb, dtype=np.float32) + 0.5, with_color=False)
            alpha[ya - y0:yb - y0, xa - x0:xb - x0] *= 1 - oa
        return x0, y0, alpha

    def _annotate(self):
        """Boxes = the tight box of the visible drawn pixels; absent frames keep the full object box."""
        boxes, visible = np.zeros((self.length, 4)), np.zeros(self.length, bool)
        for t in range(self.length):
            cx, cy, w, h = self.target.track[t]
            x0, y0, alpha = self._visible_alpha(t)
            rows, cols = np.nonzero(alpha.any(1))[0], np.nonzero(alpha.any(0))[0]
            visible[t] = alpha.sum() >= 0.15 * (math.pi / 4) * w * h and len(rows) > 0
            if visible[t]:
                boxes[t] = x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
            else:
                boxes[t] = cx - w / 2, cy - h / 2, w, h
        return boxes, visible

    def image(self, i, shrink=1.0):
        return Image.fromarray(self.frame(i)), 1.0

    def frame(self, i, hide_target=False):
        """Render frame i -> uint8 (H, W, 3)."""
        W, H = self.size
        return self.render(i, (0, 0, W, H), (W, H), hide_target)

    def crops(self, i, windows, sizes):
        """Crops of frame i rendered straight at crop resolution (no full frame is drawn): the same
        geometry and mean-color padding as crop_pil on the rendered frame, for a fraction of the work."""
        W, H = self.size
        fill = None
        out = []
        for window, size in zip(windows, sizes):
            (u0, v0, u1, v1), box = _inside(window, size, W, H)
            if u0 >= u1 or v0 >= v1:
                part = None  # the window misses the frame
            else:  # at most one sample per frame pixel: a crop that enlarges is rendered small, then resized
                w, h = min(u1 - u0, math.ceil(box[2] - box[0])), min(v1 - v0, math.ceil(box[3] - box[1]))
                part = Image.fromarray(self.render(i, box, (w, h))).resize((u1 - u0, v1 - v0), Image.BILINEAR)
            if (u0, v0, u1, v1) == (0, 0, size, size):
                out.append(part)
                continue
            if fill is None:  # the frame's mean color, from an 8x coarser rendering
                fill = tuple(int(v) for v in self.render(i, (0, 0, W, H), (W // 8, H // 8)).mean((0, 1)).round())
            out.append(_padded(part, (u0, v0), size, fill))
        return out

    def render(self, i, box, size, hide_target=False):
        """Frame i sampled on a size[0] x size[1] grid spanning box (x0, y0, x1, y1, frame pixels, inside
        the frame): background, distractors below, target, things above, illumination -> uint8 (h, w, 3).
        Box (0, 0, W, H) at size (W, H) is the frame itself; a crop's box renders only what the crop shows."""
        W, H = self.size
        x0, y0, x1, y1 = box
        w, h = size
        xs = x0 + (np.arange(w, dtype=np.float32) + 0.5) * np.float32((x1 - x0) / w)  # (w,) sample points
        ys = y0 + (np.arange(h, dtype=np.float32) + 0.5) * np.float32((y1 - y0) / h)  # (h,)
        P, p1, P2, p2 = self.pan
        m = min(W, H) // 8  # pan amplitude
        ox = self.view[0] + round(m * (1 + math.sin(2 * math.pi * i / P + p1)))
        oy = self.view[1] + round(m * (1 + math.sin(2 * math.pi * i / P2 + p2)))
        bg = _texture(*self.texture, W, H).resize(size, Image.BILINEAR, box=(x0 + ox, y0 + oy, x1 + ox, y1 + oy))
        img = np.asarray(bg)[..., self.channels].astype(np.float32)  # (h, w, 3)
        for thing in self.below + ([] if hide_target else [self.target]) + self.above:
            ex0, ey0, ex1, ey1 = thing.extent(i)
            (c0, c1), (r0, r1) = np.searchsorted(xs, (ex0, ex1)), np.searchsorted(ys, (ey0, ey1))
            if c0 < c1 and r0 < r1:  # only the grid points its patch covers
                alpha, rgb = thing.sample(i, xs[c0:c1], ys[r0:r1])
                _composite(img, int(c0), int(r0), alpha, rgb)
        period, phase, amp, tilt = self.light
        gain = 1 + amp * math.sin(2 * math.pi * i / period + phase)
        ramp = gain * (1 + tilt * math.sin(2 * math.pi * i / period / 2) * (xs / W - 0.5))  # (w,)
        img *= ramp[None, :, None].astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)


def _composite(img, x0, y0, alpha, rgb):
    """Alpha-blend a patch into img (H, W, 3) float in place, clipped to the frame."""
    H, W = img.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xa >= xb or ya >= yb:
        return
    a = alpha[ya - y0:yb - y0, xa - x0:xb - x0, None]
    img[ya:yb, xa:xb] = img[ya:yb, xa:xb] * (1 - a) + rgb[ya - y0:yb - y0, xa - x0:xb - x0]


@lru_cache(maxsize=48)
def _texture(bank, k, W, H):
    """Background texture k of a bank (one bank per split, so train and test share none): a smooth
    color field + mid-frequency texture + static clutter blobs, 1.5x the frame per side. PIL RGB."""
    rng = np.random.default_rng([bank, k, 2])
    size = (W * 3 // 2, H * 3 // 2)
    coarse = Image.fromarray(rng.integers(30, 225, (5, 6, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 255, (size[1] // 12, size[0] // 12), dtype=np.uint8)).resize(size, Image.BICUBIC)
    img = np.asarray(coarse, np.float32)
    img = img + (img.mean(2, keepdims=True) - img) * rng.uniform(0.3, 0.7)  # muted: objects stand out by color
    img = img + (np.asarray(fine, np.float32)[..., None] - 128) * rng.uniform(0.05, 0.2)
    for _ in range(rng.integers(3, 8)):  # clutter: textured blobs that are not look-alikes
        s = rng.uniform(0.05, 0.25) * min(W, H)
        colors = np.stack([_hsv_to_rgb(rng.uniform(), rng.uniform(0, .7), rng.uniform(.3, .9)) for _ in range(2)])
        track = np.array([[rng.uniform(0, size[0]), rng.uniform(0, size[1]), s * rng.uniform(.5, 2), s * rng.uniform(.5, 2)]])
        _composite(img, *Thing(SHAPES[rng.integers(len(SHAPES))], PATTERNS[rng.integers(5)], colors,
                               rng.uniform(1, 3), rng.uniform(0, 3), track).draw(0))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def synthetic_clip(seed, length=100, size=(320, 240)):
    """A synthetic tracking clip (a Sequence): deterministic in seed, frames rendered on demand."""
    return SyntheticClip(seed, length, size)


SYNTHETIC_SPLITS = {'train': (0, 1000), 'val': (1_000_000, 20), 'test': (2_000_000, 20)}


def open_synthetic(split='train', num=None, length=100, size=(320, 240)):
    """The synthetic world's splits: disjoint seed ranges (train 0.., val 1e6.., test 2e6..)."""
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"synthetic split must be one of {', '.join(SYNTHETIC_SPLITS)}, not {split!r}")
    first, default_num = SYNTHETIC_SPLITS[split]
    return [SyntheticClip(first + k, length, size) for k in range(num or default_num)]


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


def write_atomic(path, write):
    """Write a file through `write(tmp_path)` then rename: a reader never sees half a file, and a kill
    mid-write leaves the previous file intact. Every file the project writes goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    write(tmp)
    os.replace(tmp, path)


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


def benchmark(sets, template_size, search_size, factor, samples, workers_list, label):
    """Print samples/s of the whole pipeline (sample, decode, crop, augment, normalize) per worker count."""
    for workers in workers_list:
        pairs = TrainingPairs([sets], [1.0], template_size=template_size, search_size=search_size,
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
    p.add_argument('--seed', type=int, default=2_000_000, help='synthetic clip seed for --write-demo (a test clip)')
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
        synthetic = open_dataset('synthetic', split='train')
        start = time.perf_counter()
        for clip in synthetic:  # once per process (workers inherit it): not part of the steady state
            clip.boxes
        print(f"annotating {len(synthetic)} synthetic clips: {time.perf_counter() - start:.1f} s (once)")
        for tz, sx in ((56, 112), (112, 224)):
            benchmark(synthetic, tz, sx, 4.0, args.samples, workers, 'synthetic')
        with tempfile.TemporaryDirectory() as tmp:
            jpegs = write_jpeg_benchmark_tree(tmp)
            for tz, sx in ((56, 112), (112, 224)):
                benchmark(jpegs, tz, sx, 4.0, args.samples, workers, 'jpeg 640p')
    if not (args.benchmark or args.write_demo):
        p.print_help()


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
