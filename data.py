"""Data for LoRAT: benchmark readers, a synthetic tracking world made of real photographs, and the
training-pair sampler.

Everything that gets a frame and its box from disk (or from nothing) into a training batch or an
evaluation loop:

    open_dataset('lasot', '/data', split='test')   -> list of Sequence (boxes x,y,w,h + visibility;
                                                       frames are read only when asked for)
    sequence_curves / curve_scores                 -> a result against the ground truth, pytracking's
                                                       OPE rules (evaluate.py, track.py's demo)
    crop_params / jitter_params / crop             -> the ONE crop, the authors' exactly, used by training,
    box_to_crop / box_from_crop                        tracking and evaluation alike
    synthetic_clip(seed)                            -> a clip of objects cut from real photographs moving
                                                       over another photograph (the default dataset)
    TrainingPairs(datasets, weights, ...)           -> the LoRAT sampler: (template, search) pairs

    python data.py --benchmark          # samples/s of the training pipeline, 0/1/2 loader workers
    python data.py --write-demo DIR     # a synthetic clip as an H.264 mp4 and a GOT-10k folder
"""
import argparse
import bisect
import io
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
import torch.nn.functional as F
from PIL import Image, ImageFilter

import lorat
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
        im = rgb_image(im)
        im.load()
        return im, im.size[0] / full_w

    def check(self, first_box=True):
        """The boxes against the frames, once per sequence: the first and the last annotated frame exist
        (no img/ folder, more boxes than images), and with `first_box` the first box is one a tracker can
        start on: finite, of positive size, overlapping the first frame. A problem is a ValueError in one
        line naming the sequence, the file and the fix. Generated sequences (no frame files) pass."""
        if self.frames is None or getattr(self, '_checked', -1) >= first_box:
            return
        where = f"{self.dataset + '/' if self.dataset else ''}{self.name}"
        n = len(self)
        if n == 0:
            raise ValueError(f"{where}: its ground truth holds no box: fix or remove the sequence")
        try:
            first = self.path(0)
        except (IndexError, OSError):
            first = None
        if first is None or not os.path.isfile(first):
            folder = os.path.dirname(first) if first else None
            missing = folder if folder and not os.path.isdir(folder) else first
            raise ValueError(f"{where}: its frames are not there ({missing or 'an empty or missing frame folder'} "
                             f"is missing): restore the images (e.g. its img/ folder) or remove the sequence")
        try:
            last = self.path(n - 1)
        except (IndexError, OSError):
            last = None
        if last is None or not os.path.isfile(last):
            raise ValueError(f"{where}: its ground truth has {n} boxes but frame {n} ({last or 'past the last image'}) "
                             f"is missing: the boxes and the images disagree; fix the ground truth or restore the images")
        if first_box:
            box = self.boxes[0]
            text = ','.join(f"{v:g}" for v in box)
            if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"{where}: its first box {text} is {'not a number' if not np.isfinite(box).all() else 'of zero size'}: "
                                 f"a tracker cannot start on it; fix the first line of its ground truth")
            with Image.open(first) as im:
                W, H = im.size
            x, y, w, h = box
            if x >= W or y >= H or x + w <= 0 or y + h <= 0:
                raise ValueError(f"{where}: its first box {text} lies outside the {W}x{H} first frame {first}: "
                                 f"a tracker cannot start on it; fix the first line of its ground truth")
        self._checked = int(first_box)

    def frame(self, i):
        return np.asarray(self.image(i)[0])

    def crops(self, i, params, sizes):
        """Crops of frame i, decoded once (uint8, as the authors' loader): [(crop (3, S, S) float32, s', t')]
        for each window (s, t) and size, padded with the frame's own per-channel float mean."""
        image = as_tensor(self.frame(i))  # (3, H, W) uint8
        fill = image_mean(image)
        return [crop(image, s, t, size, fill) for (s, t), size in zip(params, sizes)]


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


def rgb_image(im):
    """A PIL image of any mode as 8-bit RGB. 16-bit (and 32-bit integer) images are scaled to 0..255:
    PIL's convert('RGB') clips them, so a 16-bit PNG would be a white frame."""
    if im.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        a = np.asarray(im, dtype=np.float64)
        top = a.max() if a.size else 0
        scale = 255.0 / 65535.0 if top > 255 and top <= 65535 else (255.0 / top if top > 65535 else 1.0)
        a = np.clip(a * scale + 0.5 * (scale != 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(a[..., None], 3, axis=2))
    return im if im.mode == 'RGB' else im.convert('RGB')


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


# LaSOT and LaSOT_ext count pixels from 1: the authors' loader subtracts 1 from x and y on reading and adds
# it back when it writes LaSOT results, so result files stay in the benchmark's own convention
ONE_BASED = ('lasot', 'lasot_ext')


def boxes_from_file(boxes, dataset):
    """x,y,w,h as a dataset's files hold them -> 0-based image pixels (the tracker's coordinates)."""
    boxes = np.array(boxes, np.float64)
    if dataset in ONE_BASED:
        boxes[:, :2] -= 1
    return boxes


def boxes_to_file(boxes, dataset):
    """0-based x,y,w,h -> the dataset's own convention, for its result files."""
    boxes = np.array(boxes, np.float64)
    if dataset in ONE_BASED:
        boxes[:, :2] += 1
    return boxes


def lasot_sequence(folder, dataset='lasot'):
    """LaSOT layout: img/%08d.jpg, groundtruth.txt (1-based), full_occlusion.txt, out_of_view.txt.
    Visibility comes from the two flag files, never from the box (absent frames may carry one)."""
    folder = Path(folder)
    boxes = boxes_from_file(read_boxes(folder / 'groundtruth.txt'), dataset)
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
    no_splits('tnl2k', split)
    seqs = []
    for gt in sorted(Path(root).glob('*/groundtruth.txt')):
        boxes = read_boxes(gt)
        seqs.append(Sequence(gt.parent.name, boxes, box_valid(boxes), listed(gt.parent / 'imgs'), 'tnl2k',
                             _read_language(gt.parent / 'language.txt')))
    return seqs


def no_splits(dataset, split):
    """TNL2K and OTB come as one set of sequences: a --split is a mistake, not something to ignore."""
    if split is not None:
        raise ValueError(f"{dataset} has no splits, so --split {split} means nothing: drop --split (or give --split all)")


# OTB sequences whose first annotated frame is not img/0001 (pytracking's sequence table)
OTB_START = {'BlurCar1': 247, 'BlurCar3': 3, 'BlurCar4': 18, 'David': 300}


def open_otb(root, split=None):
    """<seq>/img/%04d.jpg, groundtruth_rect.txt (comma, tab or spaces). Jogging and Skating2 have two
    targets (groundtruth_rect.1.txt, .2.txt -> Jogging_1, Jogging_2); some have fewer boxes than frames."""
    no_splits('otb', split)
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
    root = resolve_root(name, root)
    seqs = readers[name](root, split)
    if len(seqs) == 0:
        raise ValueError(f"{name}: {root} holds no sequence in {name}'s layout ({LAYOUTS.get(name, 'see data.py')}): "
                         f"is it the right folder?")
    return seqs


# what each reader looks for, for the error of a root that holds none
LAYOUTS = {'lasot': '<class>/<class>-N/groundtruth.txt', 'lasot_ext': '<class>/<class>-N/groundtruth.txt',
           'got10k': '<split>/list.txt and <seq>/groundtruth.txt', 'trackingnet': 'TRAIN_k/ or TEST/ with anno/<seq>.txt',
           'tnl2k': '<seq>/groundtruth.txt and <seq>/imgs/', 'otb': '<seq>/groundtruth_rect.txt and <seq>/img/',
           'coco': 'annotations/instances_<split>2017.json', 'custom': '<seq>/groundtruth.txt'}


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
# The one crop, the authors' exactly: a window is a scale s and a translation t per axis,
# crop pixel = image pixel * s + t. Training, tracking and evaluation all cut with `crop`.


def crop_params(box_xywh, factor, size):
    """SiamFC's context window as crop parameters: a square of side sqrt((w+p)(h+p)), p = (factor-1)(w+h)/2,
    centered on the box, resampled to `size` px -> s (2,), t (2,) (float64)."""
    x, y, w, h = (float(v) for v in box_xywh)
    p = (factor - 1) * (w + h) / 2
    s = np.full(2, size / math.sqrt((w + p) * (h + p)))
    return s, size / 2 - np.array([x + w / 2, y + h / 2]) * s


def jitter_params(box_xywh, factor, size, rng, scale_jitter=0.25, center_jitter=3.0):
    """LoRAT's search-crop jitter, one draw: s / exp(N(0,1) * 0.25) per axis (so the window is not square),
    then the object moved in the crop by U(-1,1) * 0.5 * 3 * (w sx + h sy) per axis -> s, t."""
    x, y, w, h = (float(v) for v in box_xywh)
    s = crop_params(box_xywh, factor, size)[0] / np.exp(rng.standard_normal(2) * scale_jitter)
    t = size / 2 - np.array([x + w / 2, y + h / 2]) * s
    return s, t + rng.uniform(-1, 1, 2) * 0.5 * center_jitter * (w * s[0] + h * s[1])


def box_to_crop(box_xyxy, s, t):
    """Image pixels -> crop pixels, boxes (..., 4) xyxy (numpy float64)."""
    return np.asarray(box_xyxy, np.float64) * np.tile(s, 2) + np.tile(t, 2)


def box_from_crop(box_xyxy, s, t):
    """Crop pixels -> image pixels, the inverse of box_to_crop."""
    return (np.asarray(box_xyxy, np.float64) - np.tile(t, 2)) / np.tile(s, 2)


def rasterize(box):
    """A float box (x1, y1, x2, y2) -> whole pixels, end-exclusive: a box edge on a pixel border does not
    claim the next pixel, a box inside one pixel keeps it (the template mask rasterizes cells alike)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return math.floor(x1), math.floor(y1), math.floor(x2 + 1 - 1e-4), math.floor(y2 + 1 - 1e-4)


def crop_regions(W, H, s, t, size):
    """Where the crop's pixels come from, snapped to whole pixels as the authors do -> (out, src):
    out, the W x H image mapped into the crop, clipped to it and rasterized; src, `out` mapped back into the
    image, rasterized and clipped to it. Both (x1, y1, x2, y2) ints; out may be empty."""
    (sx, sy), (tx, ty) = s, t
    out = rasterize(np.clip([tx, ty, W * sx + tx, H * sy + ty], 0, size))
    src = rasterize([(out[0] - tx) / sx, (out[1] - ty) / sy, (out[2] - tx) / sx, (out[3] - ty) / sy])
    return out, (min(max(src[0], 0), W), min(max(src[1], 0), H), min(max(src[2], 0), W), min(max(src[3], 0), H))


def crop(image, s, t, size, fill, read=None):
    """LoRAT's crop: one bilinear resample (align_corners=False, no antialiasing, also when shrinking) of the
    whole-pixel source region into the whole-pixel crop region, the rest filled with `fill` (C,).

    image: a (C, H, W) tensor, uint8 or float in 0..255 (or only its shape, with `read(x1, y1, x2, y2) ->
    (C, h, w)` reading that part: the synthetic world renders just that). The crop is made on fill's device.
    -> (crop (C, size, size) float32, s', t'): the *adjusted* parameters that the snapping produced,
    (out size) / (source size) per axis; every box into or out of this crop must go through them."""
    C, H, W = image.shape if torch.is_tensor(image) else image
    read = read or (lambda x1, y1, x2, y2: image[:, y1:y2, x1:x2])
    fill = torch.as_tensor(fill, dtype=torch.float32)
    result = fill.view(C, 1, 1).repeat(1, size, size)  # (C, S, S)
    out, src = crop_regions(W, H, s, t, size)
    ow, oh, iw, ih = out[2] - out[0], out[3] - out[1], src[2] - src[0], src[3] - src[1]
    if min(ow, oh, iw, ih) <= 0:  # the window misses the image: all padding, the window as it was
        return result, np.asarray(s, np.float64), np.asarray(t, np.float64)
    part = read(*src).to(fill.device)[None].float()  # (1, C, ih, iw)
    result[:, out[1]:out[3], out[0]:out[2]] = F.interpolate(part, size=(oh, ow), mode='bilinear',
                                                            align_corners=False, antialias=False)[0]
    s_adj = np.array([ow / iw, oh / ih])
    return result, s_adj, np.array(out[:2], np.float64) - np.array(src[:2], np.float64) * s_adj


def image_mean(image):
    """The per-channel float mean of a (C, H, W) image tensor: the padding color of its crops."""
    return image.mean(dim=(-2, -1), dtype=torch.float64).float()


def as_tensor(frame):
    """uint8 RGB (H, W, 3), numpy or PIL -> uint8 (3, H, W) tensor (a view where the array is writable)."""
    a = np.asarray(frame)
    return torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else a.copy()).permute(2, 0, 1)


def standardize_crops(crops):
    """Float crops (..., 3, H, W) in 0..255 -> ImageNet-normalized, on the crops' device."""
    mean = torch.tensor(IMAGENET_MEAN, device=crops.device).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=crops.device).view(3, 1, 1) * 255
    return (crops - mean) / std


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
# What each clip draws once. Real targets are made of parts of different look (a head, a body, legs), are
# often a part of something larger (a head, a wheel), blur when fast and are filmed by poor cameras; a
# tracker trained on one patch of one photo learns "the box is the connected patch" and boxes loosely.
PARTS = (0.6, 0.2, 0.1, 0.1)  # P(the target has 1, 2, 3, 4 parts), cut from different photos
PART_OF = 0.3  # P(the target is a part of a larger object that moves with it, outside its box)
# P(the target's first part is cut from the background's own photo): fixed, so that training clips (10
# photos) and held-out clips (4 photos) are as often camouflaged, and not more often than real footage is.
CAMOUFLAGE = 0.15
CAMERA = {'sharp': .7, 'low resolution': .1, 'jpeg': .1, 'both': .1}  # P(each kind of camera)
LOWRES, JPEG_QUALITY = (1.5, 3.0), (10, 40)  # resolution 1.5-3x below the frame's; JPEG quality 10-40
# Motion blur: an object moving more than 5 % of the frame's short side in one frame (the target in about
# one frame of eight) is smeared over EXPOSURE of its step (a shutter open half the frame time).
FAST, EXPOSURE = 0.05, 0.5


@lru_cache(maxsize=None)
def load_photo(name):
    """One photo of photos/ as PIL RGB (read once per process)."""
    path = PHOTOS / f"{name}.jpg"
    if not path.is_file():
        raise ValueError(f"photo {path} is missing (the synthetic world is cut from the photos in {PHOTOS}): "
                         f"restore it with `git checkout -- photos/`")
    try:
        with Image.open(path) as im:
            return im.convert('RGB')
    except OSError as e:  # truncated, or not an image at all
        raise ValueError(f"photo {path} is damaged ({e}): restore it with `git checkout -- photos/`") from None


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
    shrinks = source[2] - source[0] >= pw and source[3] - source[1] >= ph
    # shrinking, an area average (BOX) is as smooth as bilinear at half the cost; enlarging, it would be blocky
    rgb = np.asarray(photo.resize((pw, ph), Image.BOX if shrinks else Image.BILINEAR, box=source), np.float32)
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
    and, sometimes, a soft shadow cast at an offset (fractions of its box) with a strength in [0, 1].
    A step of more than `fast` frame pixels between frames smears it (motion blur)."""

    def __init__(self, patch, track, shadow=None, fast=math.inf):
        self.patch, self.track, self.fast = patch, track, fast
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
        smear = self.smear(t)
        if self.shadow is not None and fill is None:
            dx, dy, shade = self.shadow
            w, h = self.track[t, 2:]
            _paste(img, shade, self.track[t] + [dx * w, dy * h, 0, 0], grid, 0, smear)
        _paste(img, self.patch if fill is None else self.alpha, self.track[t], grid, fill, smear)

    def smear(self, t):
        """Motion blur at frame t: box-blur radii (x, y, frame pixels) as long as EXPOSURE of the step from
        the last frame when that step is longer than `fast` (a shutter open half the frame time), else 0."""
        s = max(t, 1)
        dx, dy = self.track[s, :2] - self.track[s - 1, :2] if len(self.track) > 1 else (0.0, 0.0)
        if math.hypot(dx, dy) <= self.fast:
            return 0.0, 0.0
        return EXPOSURE * abs(dx) / 2, EXPOSURE * abs(dy) / 2


class Figure:
    """The target: 1-4 parts (Cutouts) that move with the object's box (`track`, which holds every
    part in every frame) and sway against each other. Drawn as one: its mask is the union of its parts'
    masks; `area` (mask area / box area) is measured at frame 0."""

    def __init__(self, parts, track):
        self.parts, self.track = parts, track
        self.shadow = parts[0].shadow  # only the first part casts one
        self.area = parts[0].area if len(parts) == 1 else self._area()

    def _area(self, n=64):
        """Mask area / box area at frame 0: the parts drawn on an n x n grid over the box."""
        cx, cy, w, h = self.track[0]
        img = Image.new('L', (n, n), 0)
        self.draw(img, 0, (cx - w / 2, cy - h / 2, w / n, h / n), 255)
        return np.asarray(img, np.float32).mean() / 255

    def draw(self, img, t, grid, fill=None):
        """Draw the parts in order (later parts in front), as Cutout.draw."""
        for part in self.parts:
            part.draw(img, t, grid, fill)


def _paste(img, patch, box, grid, fill=None, smear=(0.0, 0.0)):
    """Resample `patch` onto the box (cx, cy, w, h, frame pixels) through the output grid and paste it
    (an RGBA patch by its alpha; an L patch as the mask of color `fill`). Only the pixels it covers.
    `smear`: motion blur radii (frame pixels), blurred at output resolution (a crop blurs few pixels) over
    a margin beyond the box and the image, so that the smear is neither cut off nor dimmed at borders."""
    cx, cy, w, h = box
    x0, y0, sx, sy = grid
    W, H = img.size
    rx, ry = smear[0] / sx, smear[1] / sy  # in output pixels
    mx, my = math.ceil(rx), math.ceil(ry)
    bx0, by0 = cx - w / 2, cy - h / 2
    u0, v0 = max(math.floor((bx0 - x0) / sx) - mx, -mx), max(math.floor((by0 - y0) / sy) - my, -my)
    u1, v1 = min(math.ceil((bx0 + w - x0) / sx) + mx, W + mx), min(math.ceil((by0 + h - y0) / sy) + my, H + my)
    if max(u0, 0) >= min(u1, W) or max(v0, 0) >= min(v1, H):
        return
    pw, ph = patch.size
    # output pixel u -> frame x0 + u sx -> patch (x - bx0) pw / w: one affine resample
    coeffs = (sx * pw / w, 0, (x0 + u0 * sx - bx0) * pw / w, 0, sy * ph / h, (y0 + v0 * sy - by0) * ph / h)
    part = patch.transform((u1 - u0, v1 - v0), Image.AFFINE, coeffs, Image.BILINEAR)
    if mx or my:
        part = _smeared(part, rx, ry).crop((-min(u0, 0), -min(v0, 0), min(u1, W) - u0, min(v1, H) - v0))
        u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, W), min(v1, H)
    if patch.mode == 'L':
        img.paste(fill, (u0, v0, u1, v1), part)
    elif fill is None:
        img.paste(part, (u0, v0), part)
    else:
        img.paste(fill, (u0, v0, u1, v1), part.getchannel('A'))


def _smeared(part, rx, ry):
    """Motion blur: a box blur of radii (rx, ry), on premultiplied colours for RGBA (so that the photo
    around the cut, under alpha 0, does not bleed in)."""
    if part.mode == 'L':
        return part.filter(ImageFilter.BoxBlur((rx, ry)))
    return part.convert('RGBa').filter(ImageFilter.BoxBlur((rx, ry))).convert('RGBA')

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


def _target_photos(rng, pool, background, k):
    """The photos of a target's k parts: other than the background's and, as far as the pool allows,
    different from each other; but with probability CAMOUFLAGE (whatever the pool's size) the first part
    is cut from the background's own photo."""
    others = [str(p) for p in rng.permutation([p for p in pool if p != background])]
    names = [others[j % len(others)] for j in range(k)]
    if rng.uniform() < CAMOUFLAGE:
        names[0] = background
    return names


def _part_layout(rng, k, tall):
    """k parts' boxes (k, 4: cx, cy, w, h in units of the object's box): a stack along the object's long
    side (a head, a body, legs), neighbours overlapping a little so that they touch, one of them as wide
    as the object; or a main part with smaller parts on it (a lid, a handle of another colour)."""
    if k == 1:
        return np.array([[.5, .5, 1, 1]])
    if rng.uniform() < .6:
        ends = np.concatenate([[0], np.cumsum(rng.dirichlet(np.full(k, 2.0)))])
        lo, hi = np.maximum(ends[:-1] - .05, 0), np.minimum(ends[1:] + .05, 1)
        across = rng.uniform(.4, 1, k)
        across[rng.integers(k)] = 1
        boxes = np.column_stack([.5 + rng.uniform(-.5, .5, k) * (1 - across), (lo + hi) / 2, across, hi - lo])
        return boxes if tall else boxes[:, [1, 0, 3, 2]]
    size = rng.uniform(.2, .5, (k - 1, 2))
    return np.vstack([[.5, .5, 1, 1], np.column_stack([rng.uniform(size / 2, 1 - size / 2), size])])


def _sway(rng, n, k, amp):
    """(n, k, 2) offsets of k parts, in units of the object's box: swings at one gait frequency (a period
    of 8-30 frames), each part and axis with its own phase and an amplitude of 30-100 % of `amp`."""
    t = np.arange(n)[:, None, None]
    a = amp * rng.uniform(.3, 1, (k, 2))
    return a * np.sin(2 * np.pi * t / rng.uniform(8, 30) + rng.uniform(0, 2 * np.pi, (k, 2)))


def _part_track(track, unit, sway):
    """A part's boxes (n, 4) from the object's `track`, the part's box in it (`unit`: cx, cy, w, h) and
    its sway (n, 2), both in units of the object's box."""
    cx, cy, w, h = track.T
    return np.column_stack([cx + (unit[0] + sway[:, 0] - .5) * w, cy + (unit[1] + sway[:, 1] - .5) * h,
                            unit[2] * w, unit[3] * h])


def _host_box(rng):
    """The box of the larger object the target is a part of, in units of the target's box (cx, cy, w, h):
    1.5-3 times its size, with its edge 20-120 % of the target's size into the target on one side: the
    target sticks out of it (a head above a body, a hand at an arm's end) or lies inside it near that edge
    (a wheel of a car)."""
    across, along = rng.uniform(1.5, 3, 2)
    depth = rng.uniform(.2, 1.2)
    box = np.array([.5 + rng.uniform(-.5, .5) * (across - 1), 1 - depth + along / 2, across, along])  # below
    side = rng.integers(4)  # the larger object below, above, right or left of the target
    if side % 2:
        box[1] = 1 - box[1]
    return box if side < 2 else box[[1, 0, 3, 2]]


def _near(rng, source, photo_size):
    """A rectangle of source's size about its own size away from it inside the photo: where a look-alike
    is cut."""
    x0, y0, x1, y1 = source
    PW, PH = photo_size
    dx, dy = rng.normal(0, .6, 2) * (x1 - x0, y1 - y0)
    dx, dy = np.clip(dx, -x0, PW - x1), np.clip(dy, -y0, PH - y1)
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


def _darkened(patch, gain):
    """A part in shadow: its colours times gain, its mask kept."""
    rgba = np.array(patch)
    rgba[..., :3] = (rgba[..., :3] * gain).astype(np.uint8)
    return Image.fromarray(rgba, 'RGBA')


def _jpeg(img, quality):
    """img after a JPEG round trip at `quality`: the blocks and ringing of a compressed video."""
    buf = io.BytesIO()
    img.save(buf, 'JPEG', quality=quality)
    with Image.open(buf) as out:
        return out.convert('RGB')


class _Scene:
    """What a clip shows, drawn once from its seed: a target of 1-4 parts cut from different photos
    (irregular soft masks, shading, one part sometimes in shadow) swaying against each other, sometimes a
    part of a larger object that moves with it, moving with scale change and bursts of speed (smeared when
    fast) over a panning, zooming, slightly rotating view of another photo; look-alikes cut near the
    target in its photos; objects of other photos that cross its path, above or below it; sometimes an
    occluding bar; excursions out of view; flickering light; sometimes a camera of low resolution or
    strong compression. `photos` is the photo split it is made of ('train' or 'held_out')."""

    def __init__(self, seed, length, size, photos):
        self.seed, self.size, self.length, self.photos = seed, tuple(size), length, photos
        rng = np.random.default_rng([seed, 1])
        pool = PHOTO_SPLIT[photos]
        self.background = pool[rng.integers(len(pool))]
        self._camera_path(rng, load_photo(self.background).size)
        self._camera_quality(rng)
        self.fast = FAST * min(self.size)  # frame px per frame: a faster object is smeared
        self.below, self.above = [], []
        self._target(rng, pool)
        self.photo_names = {self.background, *self.target_photos}  # every photo this clip shows
        self._look_alikes(rng)
        self._passers_by(rng, pool)
        if rng.uniform() < PART_OF:
            self.host = self._host(rng, pool)
            self.below.append(self.host)  # right under the target
        else:
            self.host = None
        if rng.uniform() < .25:
            self.above.append(self._occluder(rng, *self.size, min(self.target.track[0, 2:]), length, pool))
        self.light = (rng.uniform(.5, 3), rng.uniform(0, 6), rng.uniform(0, .25))  # cycles per clip, phase, depth

    @property
    def camouflaged(self):
        """Is the target (its first part) cut from the background's own photo?"""
        return self.target_photos[0] == self.background

    def _target(self, rng, pool):
        """The target: an object box on a trajectory (with excursions out of view) and a layout of 1-4 parts
        in it, cut from different photos (_target_photos), swaying by up to 2-8 % of the box."""
        W, H = self.size
        w, h = object_box(rng, W, H)
        track = _trajectory(rng, self.length, W, H, w, h)
        self._excursion(rng, track, W, H)
        k = 1 + rng.choice(4, p=PARTS)
        self.target_photos = _target_photos(rng, pool, self.background, k)
        self.layout, self.amp = _part_layout(rng, k, h >= w), (rng.uniform(.02, .08) if k > 1 else 0.0)
        self.target, self.cuts = self._figure(rng, self.target_photos, track)

    def _figure(self, rng, photos, track, like=None):
        """A Figure of self.layout's parts cut from `photos`, laid out inside track's box shrunk by the sway
        (so that swaying parts stay in it); one part of two or more darkened half the time. `like`: each
        part's (source, recolor) of a figure to look like (cut near it, recolored alike).
        -> (Figure, each part's (source, recolor))."""
        a = self.amp
        units = self.layout * (1 - 2 * a) + [a, a, 0, 0]
        sway = _sway(rng, self.length, len(units), a)
        sway[:, 0] = 0  # the first part holds still: the others move against it
        dark = rng.integers(len(units)) if len(units) > 1 and rng.uniform() < .5 else None
        parts, cuts = [], []
        for k, (name, unit) in enumerate(zip(photos, units)):
            part, photo = _part_track(track, unit, sway[:, k]), load_photo(name)
            source, recolor = (None, None) if like is None else (_near(rng, like[k][0], photo.size), like[k][1])
            patch, source, recolor = cut_object(rng, photo, *self._patch_size(part), source, recolor)
            if k == dark:
                patch = _darkened(patch, rng.uniform(.35, .7))
            parts.append(Cutout(patch, part, self._shadow(rng) if k == 0 else None, self.fast))
            cuts.append((source, recolor))
        return Figure(parts, track), cuts

    def _look_alikes(self, rng):
        """0-2 objects that look like the target: its layout, each part cut near the target's part in the
        same photo and recolored alike, 0.75-1.3 times its size, on a path of their own."""
        W, H = self.size
        for _ in range(rng.choice([0, 1, 1, 2])):
            w, h = _fit(*self.target.track[0, 2:] * rng.uniform(.75, 1.3), W, H)
            look, _ = self._figure(rng, self.target_photos, _trajectory(rng, self.length, W, H, w, h), self.cuts)
            (self.above if rng.uniform() < .3 else self.below).append(look)

    def _passers_by(self, rng, pool):
        """0-3 objects of any photo of the pool that pass by or cross the target, above or below it."""
        W, H = self.size
        for _ in range(rng.choice([0, 1, 2, 3])):
            other = pool[rng.integers(len(pool))]
            self.photo_names.add(other)
            pass_by = _crossing(rng, self.length, W, H, *object_box(rng, W, H), self.target.track)
            patch, _, _ = cut_object(rng, load_photo(other), *self._patch_size(pass_by))
            (self.above if rng.uniform() < .5 else self.below).append(Cutout(patch, pass_by, self._shadow(rng), self.fast))

    def _host(self, rng, pool):
        """The larger object the target is a part of (a body under a head, a car around a wheel): cut from
        a photo other than the background's, its box in units of the target's (_host_box) swaying by up to
        4 % against it, so it moves with the target; drawn under it, outside the target's box."""
        name = str(rng.choice([p for p in pool if p != self.background]))
        self.photo_names.add(name)
        track = _part_track(self.target.track, _host_box(rng), _sway(rng, self.length, 1, .04)[:, 0])
        patch, _, _ = cut_object(rng, load_photo(name), *self._patch_size(track))
        return Cutout(patch, track, self._shadow(rng), self.fast)

    def _camera_quality(self, rng):
        """The camera (CAMERA): sharp, or a resolution LOWRES times below the frame's (drawn small, shown
        enlarged), or JPEG compression at quality JPEG_QUALITY, or both."""
        kind = rng.choice(list(CAMERA), p=list(CAMERA.values()))
        self.lowres = rng.uniform(*LOWRES) if kind in ('low resolution', 'both') else 1.0
        self.jpeg = int(rng.integers(*JPEG_QUALITY)) if kind in ('jpeg', 'both') else None

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


class SyntheticClip(_Scene, Sequence):
    """A deterministic clip of the photographic world (_Scene), annotated and rendered. Frames are
    rendered on demand, crops straight at crop resolution. Boxes tightly enclose the target's visible
    pixels, all its parts' (mask >= 0.5); it is visible when >= 15 % of it shows. A still is a clip of
    length 1."""

    def __init__(self, seed, length=100, size=(320, 240), photos='train', dataset='synthetic'):
        super().__init__(seed, length, size, photos)
        self.name, self.dataset, self.attributes, self.frames = f"synthetic-{seed:07d}", dataset, {}, None
        self._boxes = None

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

    def frame(self, i, hide_target=False, sharp=False):
        """Render frame i -> uint8 (H, W, 3); `sharp`: as drawn, without the camera's low resolution and
        compression."""
        W, H = self.size
        render = self.scene if sharp else self.render
        return np.asarray(render(i, (0, 0, W, H), (W, H), hide_target))

    def crops(self, i, params, sizes):
        """Crops of frame i rendered straight from the photos: `crop` reads each window's source region
        (whole frame pixels) rendered at frame resolution, so no full frame is drawn; the padding is the
        frame's mean color, from an 8x coarser rendering -> [(crop (3, S, S) float32, s', t')]."""
        W, H = self.size
        shape = torch.Size((3, H, W))  # the frame, never drawn whole
        read = lambda x1, y1, x2, y2: as_tensor(self.render(i, (x1, y1, x2, y2), (x2 - x1, y2 - y1)))  # (3, h, w)
        small = np.asarray(self.render(i, (0, 0, W, H), (max(W // 8, 1), max(H // 8, 1))), np.float32)
        fill = torch.from_numpy(small.mean((0, 1)))  # (3,)
        return [crop(shape, s, t, size, fill, read) for (s, t), size in zip(params, sizes)]

    def render(self, i, box, size, hide_target=False):
        """Frame i as the clip's camera records it, on a size[0] x size[1] grid spanning box (as `scene`):
        drawn at the camera's resolution (1 / self.lowres of the frame's, unless the grid is coarser),
        JPEG-compressed at its quality, enlarged to the grid -> PIL RGB. A crop's box gets the blocks and
        blur of that part of the frame (block edges fall elsewhere than in the whole frame's compression)."""
        if self.lowres == 1 and self.jpeg is None:
            return self.scene(i, box, size, hide_target)
        small = tuple(max(1, min(n, round((box[k + 2] - box[k]) / self.lowres))) for k, n in enumerate(size))
        img = self.scene(i, box, small, hide_target)
        img = _jpeg(img, self.jpeg) if self.jpeg else img
        return img.resize(size, Image.BILINEAR) if small != tuple(size) else img

    def scene(self, i, box, size, hide_target=False):
        """Frame i drawn on a size[0] x size[1] grid spanning box (x0, y0, x1, y1, frame pixels): the
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
        # img * gain, clipped to 255: blend's extrapolation from black, in C (a 768-entry LUT costs more)
        return Image.blend(Image.new('RGB', img.size), img, gain) if depth else img


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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(seq)):
            Image.fromarray(seq.frame(i)).save(folder / f"{i + 1:08d}.jpg", quality=95)
        (folder / 'groundtruth.txt').write_text(''.join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in seq.boxes))
        (folder / 'absence.label').write_text(''.join(f"{int(not v)}\n" for v in seq.visible))
        (folder / 'cover.label').write_text(''.join(f"{8 if v else 0}\n" for v in seq.visible))
    except OSError as e:  # the writer's one line: a full disk, a read-only folder...
        raise SystemExit(f"error: cannot write the sequence folder {folder}: {lorat.write_error(e, folder / 'x')}") from None


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

    Float crops (3, H, W) in 0..255 in (the crop's output), planar float32 numpy arrays in 0..255 out.
    The blur runs first: it is linear, so it commutes with the jitter (up to clipping)."""
    factors, order = rng.uniform(0.6, 1.4, 3), rng.permutation(3)
    choice, sigma = rng.integers(3), rng.uniform(0.1, 2.0)
    out = []
    for p in images:
        p = gaussian_blur(p, sigma) if choice == 2 else p
        p = np.asarray(p, np.float32)  # (3, H, W)
        M, b = jitter_map(p.reshape(3, -1).mean(1), factors, order)
        p = np.clip(np.tensordot(M.T, p, 1) + b[:, None, None], 0, 255)  # every pixel @ M + b
        if choice == 0:  # grayscale, kept 3-channel
            p = np.repeat(np.tensordot(LUMA, p, 1)[None], 3, axis=0)
        elif choice == 1:  # solarize: values above the middle inverted
            p = np.minimum(p, 255 - p)
        out.append(p)
    return out


def gaussian_blur(image, sigma):
    """A separable gaussian blur of a (C, H, W) float tensor, kernel 2 * ceil(3 sigma) + 1, edges reflected."""
    r = min(math.ceil(3 * sigma), min(image.shape[-2:]) - 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(image.dtype)
    x = F.pad(image[:, None], (r, r, r, r), mode='reflect')  # (C, 1, H + 2r, W + 2r)
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return x[:, 0]


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

    def search_params(self, box, rng):
        """Jitter until the object keeps >= min_object px per side inside the crop (up to `tries`)."""
        x, y, w, h = box
        for _ in range(self.tries):
            s, t = jitter_params(box, self.search_factor, self.Sx, rng)
            b = np.clip(box_to_crop([x, y, x + w, y + h], s, t), 0, self.Sx)
            if b[2] - b[0] >= self.min_object and b[3] - b[1] >= self.min_object:
                return s, t
        return crop_params(box, self.search_factor, self.Sx)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        seq, t_z, t_x = self.sample_frames(rng)
        box_z, box_x = seq.boxes[t_z], seq.boxes[t_x]
        params_z = crop_params(box_z, self.template_factor, self.Tz)
        params_x = self.search_params(box_x, rng)
        if t_z == t_x:  # one image (COCO): read it once
            (z, *adjusted_z), (x, *adjusted_x) = seq.crops(t_z, [params_z, params_x], [self.Tz, self.Sx])
        else:
            ((z, *adjusted_z),), ((x, *adjusted_x),) = seq.crops(t_z, [params_z], [self.Tz]), seq.crops(t_x, [params_x], [self.Sx])
        # the boxes through the crops' adjusted (s', t'), as the tracker maps them
        z_box = box_to_crop(np.concatenate([box_z[:2], box_z[:2] + box_z[2:]]), *adjusted_z)
        x_box = box_to_crop(np.concatenate([box_x[:2], box_x[:2] + box_x[2:]]), *adjusted_x)
        if self.augment:
            if rng.uniform() < 0.5:  # flips: independent for template and search
                z, z_box = z.flip(-1), flip_box(z_box, self.Tz)
            if rng.uniform() < 0.5:
                x, x_box = x.flip(-1), flip_box(x_box, self.Sx)
        z_mask = template_fg_mask(z_box[None], self.Tz // self.stride, self.stride)[0]
        z, x = color_augment([z, x], rng) if self.augment else (z.numpy(), x.numpy())
        return {'z': standardize(np.ascontiguousarray(z)), 'x': standardize(np.ascontiguousarray(x)),
                'z_mask': z_mask,  # (gz, gz)
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


def benchmark_crop(size=(1280, 720), iters=200):
    """Print crops/s of `crop` from one frame (a 1280x720 frame, a 120x90 target: the window shrinks)."""
    frame = torch.randint(0, 256, (3, size[1], size[0]), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fill = image_mean(frame)
    for S, factor in ((224, 4.0), (378, 5.0)):
        params = crop_params((size[0] / 2 - 60, size[1] / 2 - 45, 120, 90), factor, S)
        for _ in range(5):
            crop(frame, *params, S, fill)
        start = time.perf_counter()
        for _ in range(iters):
            crop(frame, *params, S, fill)
        print(f"      crop {S}x{S} from {size[0]}x{size[1]}: {iters / (time.perf_counter() - start):7.0f} crops/s "
              f"({torch.get_num_threads()} threads)", flush=True)


MAX_DEMO_SIDE = 3840  # px: a 4K frame; 100000x100000 would be 30 GB a frame


def main(argv=None):
    p = lorat.Parser(description=__doc__.split('\n')[0])
    p.add_argument('--benchmark', action='store_true', help='samples/s of the training pipeline (synthetic + JPEG folder)')
    p.add_argument('--samples', type=lorat.positive_int, default=640, help='samples per benchmark measurement')
    p.add_argument('--workers', type=lorat.csv_of(lorat.nonneg_int, 'worker counts >= 0, comma-separated'), default=[0, 1, 2], help='DataLoader worker counts to benchmark')
    p.add_argument('--write-demo', metavar='DIR', help='write a synthetic clip as mp4 + GOT-10k folder')
    p.add_argument('--seed', type=lorat.seed_int, default=2_000_001, help='synthetic clip seed for --write-demo (a test clip)')
    p.add_argument('--length', type=lorat.positive_int, default=100)
    p.add_argument('--size', type=lorat.frame_size(MAX_DEMO_SIDE), default=(640, 360), help=f'WxH of the demo clip (each side up to {MAX_DEMO_SIDE} px)')
    args = p.parse_args(argv)
    if args.write_demo:
        W, H = args.size
        lorat.check_writable(args.write_demo, '--write-demo', folder=True)
        clip = synthetic_clip(args.seed, args.length, (W, H))
        os.makedirs(args.write_demo, exist_ok=True)
        mp4 = os.path.join(args.write_demo, f"{clip.name}.mp4")
        write_mp4(mp4, (clip.frame(i) for i in range(len(clip))))
        write_got10k_sequence(os.path.join(args.write_demo, clip.name), clip)
        np.savetxt(os.path.join(args.write_demo, f"{clip.name}.txt"), clip.boxes, fmt='%.4f', delimiter=',')
        print(f"wrote {mp4}, its GOT-10k folder and boxes ({len(clip)} frames, "
              f"{int((~clip.visible).sum())} with the target absent); first box {clip.boxes[0].round(1).tolist()}")
    if args.benchmark:
        workers = args.workers
        print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; batch 32")
        clips, stills = open_dataset('synthetic', split='train'), open_dataset('synthetic_stills')
        start = time.perf_counter()
        for clip in clips:  # once per process (workers inherit it): not part of the steady state
            clip.boxes
        print(f"making and annotating {len(clips)} synthetic clips: {time.perf_counter() - start:.1f} s (once)")
        benchmark_crop()
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
    except (ValueError, OSError) as e:  # a damaged photo, a folder that cannot be written...
        sys.exit(f"error: {e}")
