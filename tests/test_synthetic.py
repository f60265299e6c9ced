"""synthetic.py: the photographic world: deterministic clips, disjoint splits, tight boxes of the visible
target, its difficulties, its crops."""
import math
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import data  # noqa: E402
import synthetic  # noqa: E402


def test_synthetic_deterministic_and_splits_disjoint():
    a, b = synthetic.synthetic_clip(11, 40), synthetic.synthetic_clip(11, 40)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.frame(17), b.frame(17))
    assert not np.array_equal(a.frame(17), synthetic.synthetic_clip(12, 40).frame(17))
    seeds = {k: {s.seed for s in data.open_dataset('synthetic', split=k, num=50, length=10)}
             for k in ('train', 'stills', 'val', 'test')}
    for k, other in [('train', 'stills'), ('train', 'val'), ('train', 'test'), ('stills', 'val'),
                     ('stills', 'test'), ('val', 'test')]:
        assert not seeds[k] & seeds[other], (k, other)
    still = data.open_dataset('synthetic_stills')[3]
    assert len(still) == 1 and still.visible[0]


def test_photo_split_is_disjoint_and_every_photo_documented():
    train, held_out = set(synthetic.PHOTO_SPLIT['train']), set(synthetic.PHOTO_SPLIT['held_out'])
    assert train and held_out and not train & held_out
    on_disk = {p.stem for p in synthetic.PHOTOS.glob('*.jpg')}
    assert on_disk == train | held_out  # no photo outside the split, none missing
    readme = (synthetic.PHOTOS / 'README.md').read_text()
    assert all(f"{name}.jpg" in readme for name in on_disk)  # source and licence of each
    for split, photos in [('train', train), ('stills', train), ('val', held_out), ('test', held_out)]:
        for clip in data.open_dataset('synthetic', split=split, num=60, length=2):
            assert clip.photo_names <= photos, (split, clip.seed, clip.photo_names - photos)
    assert synthetic.open_synthetic('test')[0].photo_names <= held_out  # the demo clip


def test_held_out_clips_start_with_their_target_in_view():
    """The held-out clips give the tracker frame 0's box: frame 0 shows the target (>= 90 % of its mask)."""
    seeds = synthetic.open_synthetic('test', num=10, length=40).seeds
    first = synthetic.SYNTHETIC_SPLITS['test'][0]
    skipped = sorted(set(range(first, seeds[-1])) - set(seeds))
    assert skipped  # some seeds of the range start with the target covered or out of view ...
    for seed in seeds + skipped:
        clip = synthetic.synthetic_clip(seed, 40)
        cx, cy, w, h = clip.target.track[0]
        shown = (clip.matte(0) >= 128).sum() / (clip.target.area * w * h)
        assert (shown >= synthetic.START_IN_VIEW) == (seed in seeds), (seed, shown)  # ... and only those are left out
        assert clip.visible[0] or seed in skipped


def test_synthetic_boxes_tightly_enclose_the_visible_target():
    checked = 0
    for seed in (2_000_000, 2_000_001, 2_000_002, 5, 6, 7, 8, 9, 10, 11):
        clip = synthetic.synthetic_clip(seed, 60)
        for i in range(0, 60, 4):
            x, y, w, h = clip.boxes[i]
            matte = clip.matte(i)  # the target's visible mask as the renderer draws it
            if not clip.visible[i]:
                assert (matte >= 128).sum() < 0.15 * clip.target.area * clip.target.track[i, 2] * clip.target.track[i, 3]
                continue
            ys, xs = np.nonzero(matte >= 128)
            assert (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) == (x, y, w, h)
            if clip.target.shadow is None:  # the drawn frame agrees: the target changes no pixel off its mask
                diff = np.abs(clip.frame(i, sharp=True).astype(int) - clip.frame(i, True, sharp=True)).max(-1) > 8
                assert diff.any() and (matte[diff] > 0).all()
            checked += 1
    assert checked > 80


def test_box_sizes_and_aspect_ratios_cover_the_stated_ranges():
    rng = np.random.default_rng(0)
    W, H = 320, 240
    boxes = np.array([synthetic.object_box(rng, W, H) for _ in range(1000)])
    area, aspect = boxes[:, 0] * boxes[:, 1] / (W * H), boxes[:, 0] / boxes[:, 1]
    (a0, a1), (r0, r1) = synthetic.AREA_RANGE, synthetic.ASPECT_RANGE
    assert area.min() >= a0 * 0.999 and area.max() <= a1 * 1.001
    assert aspect.min() >= r0 * 0.999 and aspect.max() <= r1 * 1.001
    assert area.min() < 1.5 * a0 and area.max() > 0.6 * a1 and np.median(area) < 0.06  # small objects common
    assert aspect.min() < 1.3 * r0 and aspect.max() > r1 / 1.3
    # the whole object box stays in range through a clip's scale change (what the target really is)
    tracks = np.concatenate([synthetic.synthetic_clip(s, 100).target.track for s in range(30)])
    area, aspect = tracks[:, 2] * tracks[:, 3] / (W * H), tracks[:, 2] / tracks[:, 3]
    assert area.min() >= a0 * 0.999 and area.max() <= a1 * 1.001
    assert aspect.min() >= r0 * 0.999 and aspect.max() <= r1 * 1.001


def test_synthetic_world_has_its_difficulties():
    clips = [synthetic.synthetic_clip(s, 100) for s in range(40)]
    assert sum((~c.visible).any() for c in clips) >= 4  # occlusion / out of view
    assert all(np.ptp(np.log(c.target.track[:, 2] * c.target.track[:, 3])) > 0.05 for c in clips)  # scale change
    assert sum(len(c.below) + len(c.above) >= 1 for c in clips) >= 30  # distractors in most clips
    steps = np.concatenate([np.abs(np.diff(c.target.track[:, :2], axis=0)).max(1) / c.target.track[1:, 2:].min(1)
                            for c in clips])
    assert steps.max() > 0.3  # fast motion: a third of the object's size in one frame
    pans = [np.abs(c.center[-1] - c.center[0]).max() for c in clips]
    assert max(pans) > 10  # the camera moves


def test_synthetic_crops_equal_crops_of_the_rendered_frame():
    """The world renders only each crop's source region; the result is `crop` of the whole rendered frame
    (exactly, for a sharp camera; the padding from a coarser rendering's mean)."""
    seed = next(s for s in range(2_000_000, 2_000_100) if (lambda c: c.lowres == 1 and c.jpeg is None)(synthetic.synthetic_clip(s, 30)))
    clip = synthetic.synthetic_clip(seed, 30)
    frame = data.as_tensor(clip.frame(3))
    for i, factor, size in [(3, 2.0, 56), (3, 4.0, 112), (3, 6.0, 64)]:
        params = data.crop_params(clip.boxes[i] + [-40, 30, 0, 0], factor, size)  # off-center: some padding
        (direct, s, t), = clip.crops(i, [params], [size])
        ref, s_ref, t_ref = data.crop(frame, *params, size, data.image_mean(frame))
        assert np.array_equal(s, s_ref) and np.array_equal(t, t_ref)
        out, _ = data.crop_regions(320, 240, *params, size)
        inside = (slice(None), slice(out[1], out[3]), slice(out[0], out[2]))
        assert torch.allclose(direct[inside], ref[inside], atol=1e-3)
        assert (direct - ref).abs().max() < 12  # the padding: the mean of an 8x coarser rendering


def test_a_missing_photo_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, 'PHOTOS', tmp_path)
    synthetic.load_photo.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"photo .*\.jpg is missing.*git checkout -- photos/"):
            synthetic.synthetic_clip(0, 10)
    finally:
        synthetic.load_photo.cache_clear()


def coverage(clip, things, i, fill_above=True):
    """How much of each frame-i pixel `things` cover (0..1, drawn alone, one over another), and, with
    `fill_above`, what the objects above the target leave of it: float (H, W)."""
    def drawn(objects):
        img = Image.new('L', clip.size, 0)
        for thing in objects:
            thing.draw(img, i, (0, 0, 1.0, 1.0), 255)
        return np.asarray(img, np.float32) / 255
    union = 1 - np.prod([1 - drawn([thing]) for thing in things], axis=0)  # what pasting one over another gives
    return union * (1 - drawn(clip.above)) if fill_above else union


def tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])


def upright(track, figure):
    """Box centres of `track` (n, 4) relative to the figure's centre, turned back by the figure's spin: in
    the axes of the figure's own (upright) box -> (n, 2)."""
    d = track[:, :2] - figure.track[:, :2]
    c, s = np.cos(figure.spin), np.sin(figure.spin)
    return np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]])


def test_a_target_of_parts_is_boxed_by_all_its_visible_parts_which_sway():
    """A target of 2-4 parts: its box is the tight box of the union of its parts' visible pixels (not
    one part's), and the parts move against each other inside the object's box."""
    clips = [c for c in (synthetic.synthetic_clip(s, 40) for s in range(40)) if len(c.target.parts) >= 2][:5]
    assert len(clips) == 5
    wider_than_a_part = 0
    for clip in clips:
        for i in np.flatnonzero(clip.visible)[::4]:
            parts = [coverage(clip, [part], i) >= .5 for part in clip.target.parts]
            union = coverage(clip, clip.target.parts, i) >= .5
            assert np.abs(tight_box(union) - clip.boxes[i]).max() <= 1, (clip.seed, i)
            wider_than_a_part += all(np.abs(tight_box(p) - clip.boxes[i]).max() > 2 for p in parts if p.any())
        target = clip.target.track
        first = upright(clip.target.parts[0].track, clip.target)
        for part in clip.target.parts:
            centre, size = upright(part.track, clip.target), part.track[:, 2:]
            x0, y0 = (centre - size / 2 + target[:, 2:] / 2).T
            x1, y1 = (centre + size / 2 - target[:, 2:] / 2).T
            assert min(x0.min(), y0.min()) > -1e-6 and max(x1.max(), y1.max()) < 1e-6  # inside the object's box
            assert np.array_equal(part.spin, clip.target.spin)  # turned with it
        sway = [np.ptp((upright(p.track, clip.target) - first) / target[:, 2:], axis=0).max() for p in clip.target.parts[1:]]
        assert max(sway) > .01  # a gait, a swing
    assert wider_than_a_part >= 10


def test_one_part_of_a_target_is_often_in_shadow_and_still_boxed():
    """Half of the multi-part targets have one part darkened (a leg in shadow, the dark side of a bag):
    that part's colours are scaled by a gain in [0.35, 0.7] and its pixels still count for the box."""
    clips = [c for c in (synthetic.synthetic_clip(s, 12) for s in range(160)) if len(c.target.parts) >= 2]
    dark = [c for c in clips if c.target.dark is not None]
    assert len(clips) >= 40 and .3 <= len(dark) / len(clips) <= .7
    brighter_elsewhere = 0
    for clip in dark[:8]:
        k, gain = clip.target.dark
        assert .35 <= gain <= .7
        assert np.asarray(clip.target.parts[k].patch)[..., :3].max() <= 255 * gain + 1  # every colour scaled
        brighter_elsewhere += any(np.asarray(p.patch)[..., :3].max() > 255 * gain + 1
                                  for j, p in enumerate(clip.target.parts) if j != k)
        for i in np.flatnonzero(clip.visible)[:3]:  # the dark part's visible pixels lie inside the box
            seen = coverage(clip, [clip.target.parts[k]], i) >= .5
            if seen.any():
                (x, y, w, h), (sx, sy, sw, sh) = clip.boxes[i], tight_box(seen)
                assert sx >= x - 1 and sy >= y - 1 and sx + sw <= x + w + 1 and sy + sh <= y + h + 1
    assert brighter_elsewhere >= 4  # the bound above is the darkening, not dark photos


def test_a_target_that_is_part_of_a_larger_object_is_boxed_alone():
    """The larger object (a body under a head, a car around a wheel) moves and scales with the target and
    shows outside its box; the box covers the target's pixels only."""
    clips = [c for c in (synthetic.synthetic_clip(s, 40) for s in range(40)) if c.host is not None][:5]
    assert len(clips) == 5
    shows_outside = 0
    for clip in clips:
        target, host = clip.target.track, clip.host.track
        assert np.ptp(upright(host, clip.target) / target[:, 2:], axis=0).max() <= .08 + 1e-6  # sways 4 % each way
        assert np.array_equal(clip.host.spin, clip.target.spin)  # turns with it
        assert np.allclose(host[:, 2:] / target[:, 2:], host[0, 2:] / target[0, 2:])  # scales with it
        assert (host[:, 2:] >= 1.5 * target[:, 2:] - 1e-6).all()
        for i in np.flatnonzero(clip.visible)[::4]:
            own = coverage(clip, [clip.target], i) >= .5
            assert np.abs(tight_box(own) - clip.boxes[i]).max() <= 1
            x, y, w, h = clip.boxes[i].astype(int)
            rest = (coverage(clip, [clip.host], i) >= .5) & ~(coverage(clip, [clip.target], i, False) > 0)
            rest[y:y + h, x:x + w] = False
            shows_outside += rest.sum() > 20
    assert shows_outside >= 15


def test_a_turned_object_is_drawn_turned_and_boxed_by_its_upright_hull():
    """A solid 60 x 20 bar of two parts (its left and right halves) turned by 30 degrees covers the turned
    rectangle (its inside, not its corners' outside): the parts' centres turn as their pixels do. Its
    tight box is the hull of the turned rectangle (`hull`)."""
    angle, w, h = math.radians(30), 60.0, 20.0
    track, spin = np.array([[100., 80., w, h]]), np.array([angle])
    halves = [synthetic.Cutout(Image.new('RGBA', (30, 20), (200, 50, 50, 255)),
                               synthetic._part_track(track, unit, np.zeros((1, 2)), spin), spin=spin)
              for unit in ([.25, .5, .5, 1], [.75, .5, .5, 1])]
    img = Image.new('L', (200, 160), 0)
    synthetic.Figure(halves, track).draw(img, 0, (0, 0, 1.0, 1.0), 255)
    mask = np.asarray(img) >= 128
    hw, hh = synthetic.hull(w, h, angle)
    assert np.abs(tight_box(mask) - [100 - hw, 80 - hh, 2 * hw, 2 * hh]).max() <= 1.5
    v, u = np.mgrid[0:160, 0:200] + .5
    along = (u - 100) * math.cos(angle) + (v - 80) * math.sin(angle)  # in the bar's own axes
    across = -(u - 100) * math.sin(angle) + (v - 80) * math.cos(angle)
    inside = (np.abs(along) < w / 2 - 1) & (np.abs(across) < h / 2 - 1)
    outside = (np.abs(along) > w / 2 + 1) | (np.abs(across) > h / 2 + 1)
    assert mask[inside].all() and not mask[outside].any()
    assert abs(mask.sum() - w * h) < .05 * w * h  # the bar's area, not its hull's


def test_half_of_the_targets_turn_and_their_boxes_follow():
    """TURN of the targets swing in the image plane about a tilt (within TILT + SWING radians); the
    annotation is still the tight box of the visible pixels, whose aspect then changes more within a clip
    than an upright target's does."""
    clips = [synthetic.synthetic_clip(s, 100) for s in range(60)]
    turning = np.array([np.ptp(c.target.spin) > 0 for c in clips])
    assert abs(turning.mean() - synthetic.TURN) < .15
    assert max(np.abs(c.target.spin).max() for c in clips) <= synthetic.TILT + synthetic.SWING[1] + 1e-9
    assert all(np.ptp(c.target.spin) >= 2 * synthetic.SWING[0] * .9 for c in np.array(clips)[turning])
    def aspect_change(clip):  # max / min aspect of the annotated boxes, over the frames the target is whole in
        x, y, w, h = clip.boxes[clip.visible].T
        whole = (x > 0) & (y > 0) & (x + w < 320) & (y + h < 240)
        return np.exp(np.ptp(np.log(w[whole] / h[whole]))) if whole.sum() > 10 else np.nan
    change = np.array([aspect_change(c) for c in clips])
    assert np.nanmedian(change[turning]) > 1.2 * np.nanmedian(change[~turning])
    for clip in [c for c, t in zip(clips, turning) if t][:3]:  # tight boxes of the turned target
        for i in np.flatnonzero(clip.visible)[::10]:
            assert np.abs(tight_box(clip.matte(i) >= 128) - clip.boxes[i]).max() <= 1e-9, (clip.seed, i)


def test_motion_blur_only_on_fast_steps():
    """A Cutout is smeared along its step, over EXPOSURE of it, only when the step exceeds `fast`; its
    mask (>= 0.5) keeps its box."""
    steps = [2, 2, 30, 3, 40]
    xs = 60 + np.concatenate([[0], np.cumsum(steps)])
    track = np.column_stack([xs, np.full(6, 50.), np.full(6, 40.), np.full(6, 20.)])
    cut = synthetic.Cutout(Image.new('RGBA', (40, 20), (200, 50, 50, 255)), track, fast=8)
    for t in range(6):
        img = Image.new('L', (320, 100), 0)
        cut.draw(img, t, (0, 0, 1.0, 1.0), 255)
        mask = np.asarray(img)
        soft_x, soft_y = ((mask[50] > 0) & (mask[50] < 255)).sum(), ((mask[:, xs[t]] > 0) & (mask[:, xs[t]] < 255)).sum()
        step = steps[max(t, 1) - 1]
        if step > 8:
            assert soft_x >= 2 * (synthetic.EXPOSURE * step - 2), (t, soft_x)
        else:
            assert soft_x <= 2, (t, soft_x)
        assert soft_y <= 2  # along the motion only
        assert np.array_equal(tight_box(mask >= 128), [xs[t] - 20, 40, 40, 20])
    clips = [synthetic.synthetic_clip(s, 100) for s in range(20)]  # in the world: exactly the fast frames
    smeared = 0
    for clip in clips:
        part = clip.target.parts[0]
        fast = np.hypot(*np.diff(part.track[:, :2], axis=0).T) > clip.fast
        fast = np.concatenate([fast[:1], fast])
        assert [part.smear(t) != (0.0, 0.0) for t in range(100)] == fast.tolist()
        smeared += fast.any()
    assert 4 <= smeared <= 18


def test_camouflage_rate_is_the_same_in_training_and_held_out_clips():
    """Targets cut from their background's own photo: CAMOUFLAGE of the clips in both splits, whatever
    the number of photos each has (10 and 4)."""
    rates = [np.mean([c.background in c.target_photos for c in (synthetic.synthetic_clip(first + k, 2) for k in range(300))])
             for first in (0, 1_000_000)]
    assert abs(rates[0] - rates[1]) < .05, rates
    assert all(.1 <= r <= .2 for r in rates), rates


def test_shares_of_parts_larger_objects_and_poor_cameras():
    """Over many clips: multi-part targets, targets that are parts of a larger object and poor cameras
    (low resolution, compression) each in the share the world states."""
    clips = [synthetic.synthetic_clip(s, 2) for s in range(300)]
    parts = np.array([len(c.target.parts) for c in clips])
    assert .3 <= (parts >= 2).mean() <= .5 and (parts >= 3).mean() >= .1 and parts.max() == 4
    assert .2 <= np.mean([c.host is not None for c in clips]) <= .4
    assert .12 <= np.mean([c.lowres > 1 for c in clips]) <= .28
    assert .12 <= np.mean([c.jpeg is not None for c in clips]) <= .28
    for clip in clips:  # parts of a target come from different photos where the pool allows
        photos = clip.target_photos[1:] if clip.background in clip.target_photos else clip.target_photos
        assert len(set(photos)) == len(photos) and clip.background not in photos


def test_a_poor_camera_blurs_and_compresses_the_frame_and_its_crops():
    """Low resolution removes detail and JPEG adds blocks to the frame a sharp camera draws; crops show
    the same."""
    clips = [synthetic.synthetic_clip(s, 10) for s in range(30)]
    sharp = next(c for c in clips if c.lowres == 1 and c.jpeg is None)
    assert np.array_equal(sharp.frame(3), sharp.frame(3, sharp=True))
    detail = lambda f: np.abs(np.diff(f.astype(np.float32), axis=1)).mean()
    lowres = next(c for c in clips if c.lowres > 1.5 and c.jpeg is None)
    assert detail(lowres.frame(3)) < .8 * detail(lowres.frame(3, sharp=True))
    jpeg = next(c for c in clips if c.lowres == 1 and c.jpeg is not None)
    drawn, shot = jpeg.frame(3, sharp=True).astype(np.float32), jpeg.frame(3).astype(np.float32)
    assert 1 < np.abs(shot - drawn).mean() < 12
    for clip in (lowres, jpeg):
        box = clip.boxes[3]
        window = box[:2] + box[2:] / 2 - 1.5 * box[2:].max(), box[:2] + box[2:] / 2 + 1.5 * box[2:].max()
        x0, y0 = np.maximum(window[0], 0).astype(int)
        x1, y1 = np.minimum(window[1], clip.size).astype(int)
        part = clip.render(3, (x0, y0, x1, y1), (x1 - x0, y1 - y0))
        assert np.abs(np.asarray(part, np.float32) - clip.frame(3)[y0:y1, x0:x1]).mean() < 8


def test_a_damaged_photo_is_one_line_with_the_restore_command(tmp_path, monkeypatch):
    for name, content in [('chelsea', b'not an image'), ('coffee', (synthetic.PHOTOS / 'coffee.jpg').read_bytes()[:3000])]:
        (tmp_path / f"{name}.jpg").write_bytes(content)
        monkeypatch.setattr(synthetic, 'PHOTOS', tmp_path)
        synthetic.load_photo.cache_clear()
        try:
            with pytest.raises(ValueError, match=rf"photo .*{name}.jpg is damaged .*git checkout -- photos/") as e:
                synthetic.load_photo(name)
        finally:
            synthetic.load_photo.cache_clear()
        assert '\n' not in str(e.value)


def test_a_generated_clip_passes_the_check_of_its_frames():
    synthetic.synthetic_clip(0, length=2).check()  # generated: nothing on disk to check


def test_crops_inside_the_frame_need_no_mean_color(monkeypatch):
    """The padding color (an 8x coarser rendering of the frame) is worked out only for a window that reaches
    outside the frame; a window inside it is `crop` of the rendered frame, exactly (a sharp camera)."""
    clip = next(c for c in (synthetic.synthetic_clip(s, 10) for s in range(30)) if c.lowres == 1 and c.jpeg is None)
    W, H = clip.size
    inside = data.crop_params((W / 2 - 20, H / 2 - 15, 40, 30), 1.5, 64)
    outside = data.crop_params(clip.boxes[2] + [-40, 30, 0, 0], 6.0, 64)
    frame = data.as_tensor(clip.frame(2))
    monkeypatch.setattr(synthetic.Footage, 'mean_color', lambda self, i: pytest.fail('padding color worked out'))
    (direct, s, t), = clip.crops(2, [inside], [64])
    ref, s_ref, t_ref = data.crop(frame, *inside, 64, data.image_mean(frame))
    assert torch.equal(direct, ref) and np.array_equal(s, s_ref) and np.array_equal(t, t_ref)
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(synthetic.Footage, 'mean_color', lambda self, i: calls.append(i) or torch.zeros(3))
    clip.crops(2, [inside, outside], [64, 64])
    assert calls == [2]  # once for all the windows of a frame
