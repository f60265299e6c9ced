"""Data for LoRAT: dataset readers, the one crop and the training-pair sampler.

Everything that gets a frame and its box from disk into a training batch or an evaluation loop:

    open_dataset('lasot', '/data', split='test')   -> list of Sequence (boxes x,y,w,h + visibility;
                                                       frames are read only when asked for)
    crop_params / jitter_params / crop             -> the ONE crop, the authors' exactly, used by training,
    box_to_crop / box_from_crop                        tracking and evaluation alike
    TrainingPairs(datasets, weights, ...)           -> the LoRAT sampler: (template, search) pairs
    pipeline_speed                                  -> samples/s of that sampler through a DataLoader

This project's stand-in for those datasets, clips cut from photographs, is synthetic.py ('synthetic').
"""
import bisect
import json
import math
import os
import sys
import time
from collections.abc import Sequence as _ListLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lorat import template_fg_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = Path(__file__).resolve().parent / 'splits'

# dataset name -> its folder's usual name under a data root (--data-root / $LORAT_DATA)
DATASETS = {'lasot': 'LaSOT', 'lasot_ext': 'LaSOT_ext', 'got10k': 'GOT-10k', 'trackingnet': 'TrackingNet',
            'coco': 'COCO', 'tnl2k': 'TNL2K', 'otb': 'OTB100', 'custom': None, 'synthetic': None}
ALIASES = {'got10k_val': ('got10k', 'val'), 'got10k_test': ('got10k', 'test'),
           'got10k_vot_train': ('got10k', 'vot_train'), 'lasot_test': ('lasot', 'test'),
           'synthetic_stills': ('synthetic', 'stills')}


def standardize(x):
    """float32 (..., 3, H, W) in 0..255 -> ImageNet-normalized torch tensor, in place."""
    for c in range(3):
        x[..., c, :, :] *= np.float32(1 / (255 * IMAGENET_STD[c]))
        x[..., c, :, :] -= np.float32(IMAGENET_MEAN[c] / IMAGENET_STD[c])
    return torch.from_numpy(x)


def normalize(img):
    """uint8 RGB (H,W,3) or (B,H,W,3), numpy or torch -> ImageNet-normalized float (3,H,W) / (B,3,H,W).
    Planar first, so per-channel work reads contiguous rows; in numpy: small torch ops on a busy CPU pay
    for thread start-up many times over."""
    a = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return standardize(np.ascontiguousarray(np.moveaxis(a, -1, -3), dtype=np.float32))


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
        first, last = self._path_or_none(0), self._path_or_none(n - 1)
        if first is None or not os.path.isfile(first):
            folder = os.path.dirname(first) if first else None
            missing = folder if folder and not os.path.isdir(folder) else first
            raise ValueError(f"{where}: its frames are not there ({missing or 'an empty or missing frame folder'} "
                             f"is missing): restore the images (e.g. its img/ folder) or remove the sequence")
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

    def _path_or_none(self, i):
        try:
            return self.path(i)
        except (IndexError, OSError):  # past the end of the folder's listing, or no folder
            return None

    def frame(self, i):
        """Frame i, uint8 RGB (H, W, 3)."""
        with Image.open(self.path(i)) as im:
            return np.asarray(rgb_image(im))

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
# it back when it writes LaSOT results, so result files stay in the dataset's own convention
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


def resolve_root(name, root=None):
    """The folder of dataset `name`: its usual folder (DATASETS) under `root` or `root` itself, else under
    $LORAT_DATA. Missing: one line that says how to give it."""
    base = DATASETS.get(name)
    for r in (root, os.environ.get('LORAT_DATA')):
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
    `options` go to synthetic.open_synthetic (num, length, size). `partial` (--partial): a LaSOT, GOT-10k,
    TrackingNet or COCO split of which only some sequences (images) are present is read, not refused."""
    name, split = ALIASES.get(name, (name, split))
    if name == 'synthetic':  # this project's world, built on this file: imported here, not at the top
        import synthetic
        return synthetic.open_synthetic(split or 'train', **options)
    readers = {'lasot': lambda r, s: open_lasot(r, s, partial=partial),
               'lasot_ext': lambda r, s: open_lasot(r, None, 'lasot_ext', partial),  # test-only: every sequence present
               'got10k': lambda r, s: open_got10k(r, s or 'train', partial),
               'trackingnet': lambda r, s: open_trackingnet(r, s, partial),
               'tnl2k': open_tnl2k, 'otb': open_otb, 'coco': lambda r, s: CocoObjects(r, s, partial),
               'custom': open_custom}
    if name not in readers:
        raise ValueError(f"unknown dataset {name!r}: choose from {', '.join(list(DATASETS) + list(ALIASES))}")
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
    whole-pixel source region into the whole-pixel crop region, the rest filled with `fill` (C,), or with
    `fill()` when fill is a function: called only if the window has padding (a costly fill is then made only
    where it shows).

    image: a (C, H, W) tensor, uint8 or float in 0..255 (or only its shape, with `read(x1, y1, x2, y2) ->
    (C, h, w)` reading that part: the synthetic world renders just that). The crop is made on fill's device.
    -> (crop (C, size, size) float32, s', t'): the *adjusted* parameters that the snapping produced,
    (out size) / (source size) per axis; every box into or out of this crop must go through them."""
    C, H, W = image.shape if torch.is_tensor(image) else image
    read = read or (lambda x1, y1, x2, y2: image[:, y1:y2, x1:x2])
    out, src = crop_regions(W, H, s, t, size)
    if callable(fill):  # without padding every fill pixel is overwritten
        fill = fill() if out != (0, 0, size, size) or src[2] <= src[0] or src[3] <= src[1] else torch.zeros(C)
    fill = torch.as_tensor(fill, dtype=torch.float32)
    result = fill.view(C, 1, 1).repeat(1, size, size)  # (C, S, S)
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
    Returns z (3,Tz,Tz), x (3,Sx,Sx) float, z_mask (gz,gz) int64, x_box (4,) normalized xyxy: `z` is the
    template crop (the target as its template frame shows it) and `x` the search crop (where it is looked
    for), the paper's and SiamFC's names."""

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


def pipeline_speed(datasets, weights, template_size, search_size, search_factor, samples=640, workers=0, batch=32):
    """Samples/s of the whole training pipeline (sample, decode, crop, augment, normalize): `samples`
    TrainingPairs through a DataLoader of `workers` processes, after two batches of warm-up; what
    `python evaluate.py efficiency` reports. A rate over all of them, not common.median_seconds per batch:
    loader workers hand batches over in bursts."""
    pairs = TrainingPairs(datasets, weights, template_size=template_size, search_size=search_size,
                          search_factor=search_factor, samples_per_epoch=samples + 2 * batch, seed=0)
    batches = iter(torch.utils.data.DataLoader(pairs, batch_size=batch, num_workers=workers))
    next(batches), next(batches)  # warm-up: worker start, first annotation passes
    start = time.perf_counter()
    n = sum(len(b['x']) for b in batches)
    return n / (time.perf_counter() - start)

