"""This project's synthetic world: tracking clips cut from real photographs, made on the CPU from a seed.

Not part of LoRAT: it stands in for LaSOT-like datasets where there are none (a laptop, a CI machine),
so that the whole recipe trains and is scored without a download (size T's default --data). A clip is a
data.Sequence like any dataset's, so training, tracking and evaluation read it as they read LaSOT:

    synthetic_clip(seed)                  -> a clip: objects cut from photos moving over another photo
    open_synthetic('train' | 'stills' | 'val' | 'test')
                                          -> a split (data.open_dataset('synthetic', ...) opens it by name)

A clip is three pieces: a Scene (what it shows, every random draw made once from the seed), its Footage
(frames and crops rendered on demand, as its camera records them) and its annotation (SyntheticClip: the
tight box of the target's visible pixels, and whether it is visible).
"""
import io
import math
from collections.abc import Sequence as _ListLike
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from data import LUMA, Sequence, as_tensor, crop

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
# Real objects turn in the image plane (a swinging bag, a tilting head, a car on a bend), and their tight
# box widens and narrows as they do. TURN of the targets (and of their look-alikes) swing about a tilt of
# up to TILT radians by an amplitude drawn from SWING (6-34 degrees), with a period of 20-100 frames.
TURN, TILT, SWING = 0.5, 0.3, (0.1, 0.6)


# -----------------------------------------------------------------------------
# Photos and the objects cut from them


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
    turned about its centre by `spin` (T,) radians (None: upright) and, sometimes, a soft shadow cast at an
    offset (fractions of its box) with a strength in [0, 1]. A step of more than `fast` frame pixels between
    frames smears it (motion blur)."""

    def __init__(self, patch, track, shadow=None, fast=math.inf, spin=None):
        self.patch, self.track, self.fast = patch, track, fast
        self.spin = np.zeros(len(track)) if spin is None else spin
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
        smear, angle = self.smear(t), self.spin[t]
        if self.shadow is not None and fill is None:
            dx, dy, shade = self.shadow
            w, h = self.track[t, 2:]
            _paste(img, shade, self.track[t] + [dx * w, dy * h, 0, 0], grid, 0, smear, angle)
        _paste(img, self.patch if fill is None else self.alpha, self.track[t], grid, fill, smear, angle)

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
    part in every frame), turn with it (`spin`, as the parts') and sway against each other. Drawn as one:
    its mask is the union of its parts' masks; `area` (mask area / box area) is measured at frame 0."""

    def __init__(self, parts, track, dark=None):
        self.parts, self.track, self.spin = parts, track, parts[0].spin
        self.dark = dark  # (the part in shadow, its gain) or None
        self.shadow = parts[0].shadow  # only the first part casts one
        self.area = parts[0].area if len(parts) == 1 else self._area()

    def _area(self, n=64):
        """Mask area / box area at frame 0: the parts drawn on an n x n grid over the turned box's hull."""
        cx, cy, w, h = self.track[0]
        hw, hh = hull(w, h, self.spin[0])
        img = Image.new('L', (n, n), 0)
        self.draw(img, 0, (cx - hw, cy - hh, 2 * hw / n, 2 * hh / n), 255)
        return np.asarray(img, np.float32).mean() / 255 * 4 * hw * hh / (w * h)

    def draw(self, img, t, grid, fill=None):
        """Draw the parts in order (later parts in front), as Cutout.draw."""
        for part in self.parts:
            part.draw(img, t, grid, fill)


def hull(w, h, angle):
    """Half the sides of the upright box around a w x h box turned by `angle` radians -> (hw, hh)."""
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    return (w * c + h * s) / 2, (w * s + h * c) / 2


def _paste(img, patch, box, grid, fill=None, smear=(0.0, 0.0), angle=0.0):
    """Resample `patch` onto the box (cx, cy, w, h, frame pixels) turned by `angle` radians about its centre,
    through the output grid, and paste it (an RGBA patch by its alpha; an L patch as the mask of color
    `fill`). Only the pixels it covers. `smear`: motion blur radii (frame pixels), blurred at output
    resolution (a crop blurs few pixels) over a margin beyond the box and the image, so that the smear is
    neither cut off nor dimmed at borders."""
    cx, cy, w, h = box
    x0, y0, sx, sy = grid
    W, H = img.size
    rx, ry = smear[0] / sx, smear[1] / sy  # in output pixels
    mx, my = math.ceil(rx), math.ceil(ry)
    hw, hh = hull(w, h, angle)
    u0, v0 = max(math.floor((cx - hw - x0) / sx) - mx, -mx), max(math.floor((cy - hh - y0) / sy) - my, -my)
    u1, v1 = min(math.ceil((cx + hw - x0) / sx) + mx, W + mx), min(math.ceil((cy + hh - y0) / sy) + my, H + my)
    if max(u0, 0) >= min(u1, W) or max(v0, 0) >= min(v1, H):
        return
    pw, ph = patch.size
    # output pixel (u, v) -> frame point (x0 + u sx, y0 + v sy) -> turned back about the box centre by
    # -angle -> patch pixel ((x' + w/2) pw / w, (y' + h/2) ph / h): one affine resample
    c, s = math.cos(angle), math.sin(angle)
    X, Y = x0 + u0 * sx - cx, y0 + v0 * sy - cy  # output pixel (0, 0) from the centre
    kx, ky = pw / w, ph / h
    coeffs = (kx * c * sx, kx * s * sy, kx * (c * X + s * Y + w / 2),
              -ky * s * sx, ky * c * sy, ky * (-s * X + c * Y + h / 2))
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


# -----------------------------------------------------------------------------
# Motion and layout: paths, parts, look-alikes


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


def _part_track(track, unit, sway, spin):
    """A part's boxes (n, 4) from the object's `track`, the part's box in it (`unit`: cx, cy, w, h) and
    its sway (n, 2), both in units of the object's box, and the object's turn `spin` (n,): the part's
    centre turns about the object's."""
    cx, cy, w, h = track.T
    dx, dy = (unit[0] + sway[:, 0] - .5) * w, (unit[1] + sway[:, 1] - .5) * h
    c, s = np.cos(spin), np.sin(spin)
    return np.column_stack([cx + c * dx - s * dy, cy + s * dx + c * dy, unit[2] * w, unit[3] * h])


def _spin(rng, n):
    """(n,) an object's turn in the image plane, radians: upright, or (TURN of them) a swing of amplitude
    SWING and a period of 20-100 frames about a tilt of up to TILT."""
    if rng.uniform() >= TURN:
        return np.zeros(n)
    t = np.arange(n)
    swing = rng.uniform(*SWING) * np.sin(2 * np.pi * t / rng.uniform(20, 100) + rng.uniform(0, 2 * np.pi))
    return rng.uniform(-TILT, TILT) + swing


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


def _patch_size(track):
    """A patch resolution of about the object's largest drawn size (4..128 px per side)."""
    w, h = track[:, 2].max(), track[:, 3].max()
    k = min(1.0, 128 / max(w, h))
    return max(4, round(w * k)), max(4, round(h * k))


def _shadow(rng):
    """Half of the objects cast a soft shadow below and beside them."""
    return (rng.uniform(-.15, .15), rng.uniform(.05, .2), rng.uniform(.3, .6)) if rng.uniform() < .5 else None


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


# -----------------------------------------------------------------------------
# The scene: what a clip shows, every random draw made here


class Scene:
    """What a clip shows, drawn once from its seed: a target of 1-4 parts cut from different photos
    (irregular soft masks, shading, one part sometimes in shadow) swaying against each other, sometimes a
    part of a larger object that moves with it, moving with scale change and bursts of speed (smeared when
    fast), half of the time turning in the image plane, over a panning, zooming, slightly rotating view of
    another photo; look-alikes cut near the target in its photos; objects of other photos that cross its
    path, above or below it; sometimes an occluding bar; excursions out of view; flickering light;
    sometimes a camera of low resolution or strong compression. `photos` is the photo split it is made
    of ('train' or 'held_out')."""

    def __init__(self, seed, length, size, photos):
        self.seed, self.size, self.length, self.photos = seed, tuple(size), length, photos
        rng = np.random.default_rng([seed, 1])
        self.turns = np.random.default_rng([seed, 2])  # the objects' turns: the other draws stay as they were
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
        _excursion(rng, track, W, H)
        k = 1 + rng.choice(4, p=PARTS)
        self.target_photos = _target_photos(rng, pool, self.background, k)
        self.layout, self.amp = _part_layout(rng, k, h >= w), (rng.uniform(.02, .08) if k > 1 else 0.0)
        self.target, self.cuts = self._figure(rng, self.target_photos, track, _spin(self.turns, self.length))

    def _figure(self, rng, photos, track, spin, like=None):
        """A Figure of self.layout's parts cut from `photos`, laid out inside track's box shrunk by the sway
        (so that swaying parts stay in it), turned by `spin`; one part of two or more darkened half the time.
        `like`: each part's (source, recolor) of a figure to look like (cut near it, recolored alike).
        -> (Figure, each part's (source, recolor))."""
        a = self.amp
        units = self.layout * (1 - 2 * a) + [a, a, 0, 0]
        sway = _sway(rng, self.length, len(units), a)
        sway[:, 0] = 0  # the first part holds still: the others move against it
        dark = rng.integers(len(units)) if len(units) > 1 and rng.uniform() < .5 else None
        parts, cuts, gain = [], [], None
        for k, (name, unit) in enumerate(zip(photos, units)):
            part, photo = _part_track(track, unit, sway[:, k], spin), load_photo(name)
            source, recolor = (None, None) if like is None else (_near(rng, like[k][0], photo.size), like[k][1])
            patch, source, recolor = cut_object(rng, photo, *_patch_size(part), source, recolor)
            if k == dark:
                gain = rng.uniform(.35, .7)
                patch = _darkened(patch, gain)
            parts.append(Cutout(patch, part, _shadow(rng) if k == 0 else None, self.fast, spin))
            cuts.append((source, recolor))
        return Figure(parts, track, None if dark is None else (int(dark), gain)), cuts

    def _look_alikes(self, rng):
        """0-2 objects that look like the target: its layout, each part cut near the target's part in the
        same photo and recolored alike, 0.75-1.3 times its size, on a path of their own."""
        W, H = self.size
        for _ in range(rng.choice([0, 1, 1, 2])):
            w, h = _fit(*self.target.track[0, 2:] * rng.uniform(.75, 1.3), W, H)
            path, spin = _trajectory(rng, self.length, W, H, w, h), _spin(self.turns, self.length)
            look, _ = self._figure(rng, self.target_photos, path, spin, self.cuts)
            (self.above if rng.uniform() < .3 else self.below).append(look)

    def _passers_by(self, rng, pool):
        """0-3 objects of any photo of the pool that pass by or cross the target, above or below it."""
        W, H = self.size
        for _ in range(rng.choice([0, 1, 2, 3])):
            other = pool[rng.integers(len(pool))]
            self.photo_names.add(other)
            pass_by = _crossing(rng, self.length, W, H, *object_box(rng, W, H), self.target.track)
            patch, _, _ = cut_object(rng, load_photo(other), *_patch_size(pass_by))
            (self.above if rng.uniform() < .5 else self.below).append(Cutout(patch, pass_by, _shadow(rng), self.fast))

    def _host(self, rng, pool):
        """The larger object the target is a part of (a body under a head, a car around a wheel): cut from
        a photo other than the background's, its box in units of the target's (_host_box) swaying by up to
        4 % against it, so it moves and turns with the target; drawn under it, outside the target's box."""
        name = str(rng.choice([p for p in pool if p != self.background]))
        self.photo_names.add(name)
        spin = self.target.spin
        track = _part_track(self.target.track, _host_box(rng), _sway(rng, self.length, 1, .04)[:, 0], spin)
        patch, _, _ = cut_object(rng, load_photo(name), *_patch_size(track))
        return Cutout(patch, track, _shadow(rng), self.fast, spin)

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


# -----------------------------------------------------------------------------
# Rendering: the scene filmed


class Footage(Scene):
    """A Scene as its camera films it, rendered on demand on any grid of frame pixels: a whole frame, or
    a crop's window straight at crop resolution (only what it shows is drawn)."""

    def frame(self, i, hide_target=False, sharp=False):
        """Render frame i -> uint8 (H, W, 3); `sharp`: as drawn, without the camera's low resolution and
        compression."""
        W, H = self.size
        render = self.draw if sharp else self.render
        return np.asarray(render(i, (0, 0, W, H), (W, H), hide_target))

    def crops(self, i, params, sizes):
        """Crops of frame i rendered straight from the photos: `crop` reads each window's source region
        (whole frame pixels) rendered at frame resolution, so no full frame is drawn; the padding is the
        frame's mean color (`mean_color`), worked out once and only when a window reaches outside the frame
        -> [(crop (3, S, S) float32, s', t')]."""
        W, H = self.size
        shape = torch.Size((3, H, W))  # the frame, never drawn whole
        read = lambda x1, y1, x2, y2: as_tensor(self.render(i, (x1, y1, x2, y2), (x2 - x1, y2 - y1)))  # (3, h, w)
        fill = cache(lambda: self.mean_color(i))  # one rendering for all the windows
        return [crop(shape, s, t, size, fill, read) for (s, t), size in zip(params, sizes)]

    def mean_color(self, i):
        """Frame i's mean color, from an 8x coarser rendering: the padding of its crops -> float32 (3,)."""
        W, H = self.size
        small = np.asarray(self.render(i, (0, 0, W, H), (max(W // 8, 1), max(H // 8, 1))), np.float32)
        return torch.from_numpy(small.mean((0, 1)))

    def render(self, i, box, size, hide_target=False):
        """Frame i as the clip's camera records it, on a size[0] x size[1] grid spanning box (as `draw`):
        drawn at the camera's resolution (1 / self.lowres of the frame's, unless the grid is coarser),
        JPEG-compressed at its quality, enlarged to the grid -> PIL RGB. A crop's box gets the blocks and
        blur of that part of the frame (block edges fall elsewhere than in the whole frame's compression)."""
        if self.lowres == 1 and self.jpeg is None:
            return self.draw(i, box, size, hide_target)
        small = tuple(max(1, min(n, round((box[k + 2] - box[k]) / self.lowres))) for k, n in enumerate(size))
        img = self.draw(i, box, small, hide_target)
        img = _jpeg(img, self.jpeg) if self.jpeg else img
        return img.resize(size, Image.BILINEAR) if small != tuple(size) else img

    def draw(self, i, box, size, hide_target=False):
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


# -----------------------------------------------------------------------------
# Annotation: the box is the tight box of the target's visible pixels


class SyntheticClip(Footage, Sequence):
    """A deterministic clip of the photographic world: Footage of a Scene, annotated, as a Sequence.
    Boxes tightly enclose the target's visible pixels, all its parts' (mask >= 0.5); it is visible when
    >= 15 % of it shows. The annotation is made when first asked for. A still is a clip of length 1."""

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
        """Box = the tight box of the target's visible mask (>= 0.5) in the matte of its own region (the
        hull of its turned box); frames where less than 15 % of it shows are absent and keep that hull."""
        W, H = self.size
        boxes, visible = np.zeros((self.length, 4)), np.zeros(self.length, bool)
        for t in range(self.length):
            cx, cy, w, h = self.target.track[t]
            hw, hh = hull(w, h, self.target.spin[t])
            x0, y0 = max(math.floor(cx - hw), 0), max(math.floor(cy - hh), 0)
            x1, y1 = min(math.ceil(cx + hw), W), min(math.ceil(cy + hh), H)
            boxes[t] = cx - hw, cy - hh, 2 * hw, 2 * hh
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
        the frame), drawn as `draw` draws it (everything else black): uint8 (h, w), 255 = all target."""
        x0, y0, x1, y1 = region or (0, 0, *self.size)
        img = Image.new('L', (x1 - x0, y1 - y0), 0)
        grid = (x0, y0, 1.0, 1.0)
        self.target.draw(img, i, grid, 255)  # what is below it would paint black on black
        for thing in self.above:
            thing.draw(img, i, grid, 0)
        return np.asarray(img)


# -----------------------------------------------------------------------------
# The splits: disjoint seeds and photos


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
    """The synthetic world's splits: disjoint seed ranges and photos (SYNTHETIC_SPLITS). A held-out clip is
    tracked from its first box, so, as in LaSOT or GOT-10k, it starts with its target in view: the held-out
    seeds are the first of their range whose clip `starts_in_view`."""
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"synthetic split must be one of {', '.join(SYNTHETIC_SPLITS)}, not {split!r}")
    first, default_num, photos = SYNTHETIC_SPLITS[split]
    length, num = (1 if split == 'stills' else length), num or default_num
    if photos == 'held_out':
        return _Clips(held_out_seeds(first, num, length, tuple(size)), length, size, photos)
    return _Clips(range(first, first + num), length, size, photos)


START_IN_VIEW = 0.9  # the share of the target's mask that a held-out clip shows in its first frame


@lru_cache(maxsize=None)
def held_out_seeds(first, num, length, size):
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

