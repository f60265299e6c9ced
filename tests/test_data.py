"""data.py: readers of every layout, the one crop, the sampler, the writers, the speed measure."""
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
import data  # noqa: E402
import synthetic  # noqa: E402
from lorat import template_fg_mask  # noqa: E402

BOXES = np.array([[3, 4, 20, 10], [5.5, 6.25, 22, 12], [0, 0, 30, 20]], dtype=np.float64)


def jpeg(path, value=0):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 64, 3), value, np.uint8)).save(path)


def write(path, text):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def lines(boxes, sep=','):
    return '\n'.join(sep.join(f"{v:g}" for v in b) for b in boxes) + '\n'


# -----------------------------------------------------------------------------
# readers


def test_normalize_matches_imagenet_formula():
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    ref = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1)) \
        / torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(data.normalize(x), ref, atol=1e-6)
    assert data.normalize(torch.from_numpy(x[0])).shape == (3, 5, 7)


def test_lasot_layout_visibility_from_flags_and_lazy_frames(tmp_path):
    seq = tmp_path / 'LaSOT' / 'cat' / 'cat-1'
    for i in range(3):
        jpeg(seq / 'img' / f"{i + 1:08d}.jpg", value=40 * i)
    write(seq / 'groundtruth.txt', lines(BOXES))
    write(seq / 'full_occlusion.txt', '0,1,0')  # frame 1 absent, yet it carries a box
    write(seq / 'out_of_view.txt', '0,0,1')
    write(seq / 'nlp.txt', 'white cat')
    (s,) = data.open_dataset('lasot', tmp_path)  # a data root holding LaSOT/
    assert s.name == 'cat-1' and len(s) == 3 and s.attributes['language'] == 'white cat'
    assert np.array_equal(s.boxes, BOXES - [1, 1, 0, 0])  # LaSOT is 1-based: x and y minus 1, as the authors read it
    assert s.visible.tolist() == [True, False, False]
    assert s.frame(2).shape == (48, 64, 3) and abs(int(s.frame(2).mean()) - 80) <= 2
    # annotations without any image (scoring results): the same sequence, its length from the boxes
    for i in range(3):
        os.remove(seq / 'img' / f"{i + 1:08d}.jpg")
    (s,) = data.open_dataset('lasot', tmp_path / 'LaSOT')
    assert len(s) == 3 and s.visible.tolist() == [True, False, False]
    with pytest.raises(ValueError, match='280 LaSOT test sequences are missing'):
        data.open_dataset('lasot', tmp_path, split='test')


def test_got10k_layout_splits_and_test_first_box(tmp_path):
    root = tmp_path / 'GOT-10k'
    for split in ('train', 'val'):
        names = [f"GOT-10k_{split}_{k:06d}" for k in (1, 2)]
        write(root / split / 'list.txt', '\n'.join(names))
        for n in names:
            for i in range(3):
                jpeg(root / split / n / f"{i + 1:08d}.jpg")
            write(root / split / n / 'groundtruth.txt', lines(BOXES))
            write(root / split / n / 'absence.label', '0\n1\n0\n')
            write(root / split / n / 'cover.label', '8\n0\n0\n')
    write(root / 'test' / 'list.txt', 'GOT-10k_Test_000001')
    for i in range(4):
        jpeg(root / 'test' / 'GOT-10k_Test_000001' / f"{i + 1:08d}.jpg")
    write(root / 'test' / 'GOT-10k_Test_000001' / 'groundtruth.txt', lines(BOXES[:1]))
    train = data.open_dataset('got10k', tmp_path, split='train')
    assert [s.name for s in train] == ['GOT-10k_train_000001', 'GOT-10k_train_000002']
    assert np.array_equal(train[0].boxes, BOXES) and train[0].visible.tolist() == [True, False, False]
    (val,) = data.open_dataset('got10k_val', tmp_path)[:1]
    assert val.frame(0).shape == (48, 64, 3)
    (test,) = data.open_dataset('got10k', root, split='test')
    assert len(test) == 4 and np.array_equal(test.boxes[0], BOXES[0]) and test.visible.tolist() == [True] + [False] * 3


def test_trackingnet_layout(tmp_path):
    root = tmp_path / 'TrackingNet'
    for chunk in ('TRAIN_0', 'TRAIN_1'):
        write(root / chunk / 'anno' / f"{chunk}_a.txt", lines(BOXES))
        for i in range(3):
            jpeg(root / chunk / 'frames' / f"{chunk}_a" / f"{i}.jpg", value=50 * i)
    write(root / 'TEST' / 'anno' / 'b.txt', lines(BOXES[:1]))
    for i in range(5):
        jpeg(root / 'TEST' / 'frames' / 'b' / f"{i}.jpg")
    with pytest.raises(ValueError, match=r"10 of the 12 TrackingNet chunks .* are missing \(first: TRAIN_2\): pass --partial"):
        data.open_dataset('trackingnet', tmp_path, split='train')
    train = data.open_dataset('trackingnet', tmp_path, split='train', partial=True)
    assert [s.name for s in train] == ['TRAIN_0_a', 'TRAIN_1_a'] and np.array_equal(train[1].boxes, BOXES)
    write(root / 'TRAIN_1' / 'anno' / 'TRAIN_1_b.txt', lines(BOXES))  # its frames are not there
    with pytest.raises(ValueError, match=r"1 of the 2 TrackingNet sequences with a frames/<seq>/ folder are missing"):
        data.open_dataset('trackingnet', root, split='TRAIN_1')
    assert len(data.open_dataset('trackingnet', root, split='TRAIN_1', partial=True)) == 1
    assert abs(int(train[0].frame(2).mean()) - 100) <= 2  # frames counted from 0
    (test,) = data.open_dataset('trackingnet', root, split='test')
    assert len(test) == 5 and np.array_equal(test.boxes[0], BOXES[0])


def test_tnl2k_and_otb_layouts(tmp_path):
    tnl = tmp_path / 'TNL2K' / 'clip_a'
    for i in range(3):
        Path(tnl / 'imgs').mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((48, 64, 3), 30 * i, np.uint8)).save(tnl / 'imgs' / f"{i:05d}.png")
    write(tnl / 'groundtruth.txt', lines(BOXES))
    write(tnl / 'language.txt', 'the red car')
    (s,) = data.open_dataset('tnl2k', tmp_path)
    assert np.array_equal(s.boxes, BOXES) and s.attributes['language'] == 'the red car'
    assert abs(int(s.frame(2).mean()) - 60) <= 1
    otb = tmp_path / 'OTB100'
    for i in range(4):  # more frames than boxes
        jpeg(otb / 'Basketball' / 'img' / f"{i + 1:04d}.jpg", value=20 * i)
        jpeg(otb / 'Jogging' / 'img' / f"{i + 1:04d}.jpg")
    write(otb / 'Basketball' / 'groundtruth_rect.txt', lines(BOXES, '\t'))
    write(otb / 'Jogging' / 'groundtruth_rect.1.txt', lines(BOXES, ' '))
    write(otb / 'Jogging' / 'groundtruth_rect.2.txt', lines(BOXES[::-1], ','))
    seqs = {s.name: s for s in data.open_dataset('otb', tmp_path)}
    assert sorted(seqs) == ['Basketball', 'Jogging_1', 'Jogging_2']
    assert np.array_equal(seqs['Basketball'].boxes, BOXES) and len(seqs['Basketball']) == 3
    assert np.array_equal(seqs['Jogging_2'].boxes, BOXES[::-1])
    assert abs(int(seqs['Basketball'].frame(1).mean()) - 20) <= 2


def test_coco_objects_are_one_frame_sequences(tmp_path):
    root = tmp_path / 'COCO'
    jpeg(root / 'train2017' / '000000000001.jpg', value=90)
    ann = {'images': [{'id': 1, 'file_name': '000000000001.jpg'}],
           'annotations': [{'image_id': 1, 'bbox': [1, 2, 30, 20], 'iscrowd': 0},
                           {'image_id': 1, 'bbox': [0, 0, 60, 40], 'iscrowd': 1},
                           {'image_id': 1, 'bbox': [10, 5, 8, 9], 'iscrowd': 0}]}
    write(root / 'annotations' / 'instances_train2017.json', json.dumps(ann))
    coco = data.open_dataset('coco', tmp_path, split='train')
    assert len(coco) == 2 and np.array_equal(coco[1].boxes, [[10, 5, 8, 9]]) and len(coco[0]) == 1
    # an image of the annotations that is not on disk: refused in one line, or left out with --partial
    ann['images'].append({'id': 2, 'file_name': '000000000002.jpg'})
    ann['annotations'].append({'image_id': 2, 'bbox': [3, 3, 9, 9], 'iscrowd': 0})
    write(root / 'annotations' / 'instances_train2017.json', json.dumps(ann))
    with pytest.raises(ValueError, match=r"1 of the 2 images of instances_train2017.json are missing \(first: 000000000002.jpg\)"):
        data.open_dataset('coco', tmp_path, split='train')
    assert np.array_equal(data.open_dataset('coco', tmp_path, split='train', partial=True).boxes, coco.boxes)
    pairs = data.TrainingPairs([coco], [1], template_size=28, search_size=56, search_factor=4,
                               samples_per_epoch=4, seed=0)
    seq, t_z, t_x = pairs.sample_frames(np.random.default_rng(0))
    assert t_z == t_x == 0  # template and search from the same image
    assert pairs[0]['x'].shape == (3, 56, 56)


def test_custom_folder_in_both_layouts(tmp_path):
    for i in range(2):
        jpeg(tmp_path / 'mine' / 'walk' / 'img' / f"{i + 1:08d}.jpg")
        jpeg(tmp_path / 'mine' / 'run' / f"{i + 1:08d}.jpg")
    write(tmp_path / 'mine' / 'walk' / 'groundtruth.txt', lines(BOXES[:2]))
    write(tmp_path / 'mine' / 'run' / 'groundtruth.txt', lines(BOXES[1:]))
    seqs = {s.name: s for s in data.open_dataset('custom', tmp_path / 'mine')}
    assert np.array_equal(seqs['walk'].boxes, BOXES[:2]) and np.array_equal(seqs['run'].boxes, BOXES[1:])
    assert seqs['run'].frame(1).shape == (48, 64, 3) and seqs['walk'].frame(1).shape == (48, 64, 3)


def test_malformed_line_names_file_and_line(tmp_path):
    write(tmp_path / 'seq' / 'groundtruth.txt', '1,2,3,4\n5,6,7\n')
    with pytest.raises(ValueError, match=r'groundtruth.txt:2: malformed box line'):
        data.open_dataset('custom', tmp_path)
    write(tmp_path / 'seq' / 'groundtruth.txt', '1,2,3,4\n5,6,x,8\n')
    with pytest.raises(ValueError, match=r'groundtruth.txt:2:'):
        data.read_boxes(tmp_path / 'seq' / 'groundtruth.txt')


def got10k_train_tree(root, indices, frames=3):
    """A GOT-10k train/ folder holding only the sequences at these 0-based indices of the official list."""
    names = [f"GOT-10k_Train_{i + 1:06d}" for i in indices]
    write(root / 'train' / 'list.txt', '\n'.join(names))
    for n in names:
        for k in range(frames):
            jpeg(root / 'train' / n / f"{k + 1:08d}.jpg")
        write(root / 'train' / n / 'groundtruth.txt', lines(BOXES[:frames]))
    return names


def test_a_short_got10k_list_is_refused_in_one_line_and_read_with_partial(tmp_path, capsys):
    root = tmp_path / 'GOT-10k'
    vot_train = [int(i) for i in data.read_split('got10k_vot_train_split.txt')]
    names = got10k_train_tree(root, vot_train[:3] + [int(data.read_split('got10k_vot_val_split.txt')[0])])
    with pytest.raises(ValueError) as e:  # it was an IndexError: the split indexes the full 9335-line list
        data.open_dataset('got10k', tmp_path, split='vot_train')
    text = str(e.value)
    assert str(root / 'train' / 'list.txt') in text and '\n' not in text, text
    assert '7083 of the 7086 GOT-10k vot_train sequences are missing' in text and 'pass --partial to use the 3 present' in text
    seqs = data.open_dataset('got10k', tmp_path, split='vot_train', partial=True)
    assert [s.name for s in seqs] == names[:3] and np.array_equal(seqs[0].boxes, BOXES)
    assert '--partial: using 3 of the 7086 GOT-10k vot_train sequences' in capsys.readouterr().err
    (val,) = data.open_dataset('got10k', tmp_path, split='vot_val', partial=True)
    assert val.name == names[3]


def test_missing_or_broken_sequences_name_the_file_and_the_flag(tmp_path, capsys):
    root = tmp_path / 'GOT-10k'
    names = got10k_train_tree(root, [0, 1, 2])
    write(root / 'train' / 'list.txt', '\n'.join(names + ['GOT-10k_Train_000099']))  # listed, not there
    with pytest.raises(ValueError, match=r'list.txt: 1 of the 4 .* are missing \(first: GOT-10k_Train_000099\): pass --partial'):
        data.open_dataset('got10k', root, split='train')
    write(root / 'train' / names[1] / 'groundtruth.txt', '1,2,3\n')  # and one broken
    seqs = data.open_dataset('got10k', root, split='train', partial=True)
    assert [s.name for s in seqs] == [names[0], names[2]]
    err = capsys.readouterr().err
    assert 'using 3 of the 4 GOT-10k train sequence folders' in err and 'using 2 of the 3 GOT-10k train sequences' in err
    write(root / 'train' / 'list.txt', '\n'.join(names))
    with pytest.raises(ValueError, match=r'groundtruth.txt:1: malformed box line .*pass --partial'):
        data.open_dataset('got10k', root, split='train')


def test_a_partial_lasot_is_refused_in_one_line_and_read_with_partial(tmp_path, capsys):
    names = data.read_split('lasot_test_split.txt')[:2]
    for n in names:
        write(tmp_path / 'LaSOT' / n.split('-')[0] / n / 'groundtruth.txt', lines(BOXES))
    with pytest.raises(ValueError, match=r'lasot_test_split.txt\): 278 of the 280 LaSOT test sequences are missing '
                                         r'.*: pass --partial to use the 2 present$'):
        data.open_dataset('lasot', tmp_path, split='test')
    assert [s.name for s in data.open_dataset('lasot', tmp_path, split='test', partial=True)] == names
    assert '--partial: using 2 of the 280 LaSOT test sequences' in capsys.readouterr().err


def test_missing_root_says_which_flag(monkeypatch, tmp_path):
    monkeypatch.delenv('LORAT_DATA', raising=False)
    with pytest.raises(ValueError, match='--data-root.*LORAT_DATA'):
        data.open_dataset('lasot')
    with pytest.raises(ValueError, match='does not exist'):
        data.open_dataset('got10k', tmp_path / 'nowhere')
    with pytest.raises(ValueError, match='unknown dataset'):
        data.open_dataset('imagenet', tmp_path)
    monkeypatch.setenv('LORAT_DATA', str(tmp_path))
    assert data.resolve_root('lasot') == str(tmp_path)


# -----------------------------------------------------------------------------
# the one crop


def ramp(fn=lambda x, y: x + 10 * y, W=6, H=4):
    """A one-channel W x H test image, pixel (x, y) = fn(x, y), as a float (1, H, W) tensor."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing='ij')
    return fn(x, y).float()[None]


def test_crop_by_hand_on_a_ramp():
    """The authors' crop: whole-pixel regions, bilinear without antialiasing, float, padding, (s', t')."""
    image, fill = ramp(), torch.tensor([-1.0])
    # inside: s = 1, t = -1 -> the 3x3 block from (1, 1)
    out, s, t = data.crop(image, (1, 1), (-1, -1), 3, fill)
    assert torch.equal(out[0], torch.tensor([[11., 12, 13], [21, 22, 23], [31, 32, 33]]))
    assert np.allclose(s, 1) and np.allclose(t, -1)
    # partly outside: the image's left 2 x 3 block lands at crop (2, 1); the rest is the fill
    out, s, t = data.crop(image, (1, 1), (2, 1), 4, fill)
    want = torch.full((4, 4), -1.0)
    want[1:4, 2:4] = torch.tensor([[0., 1], [10, 11], [20, 21]])
    assert torch.equal(out[0], want) and np.allclose(t, (2, 1))
    # wholly outside: all fill, the window as it was
    out, s, t = data.crop(image, (1, 1), (10, 0), 4, fill)
    assert torch.equal(out[0], torch.full((4, 4), -1.0)) and np.allclose(t, (10, 0))
    # up-sampling x2 of the top-left 2x2: sample points (u + .5) / 2 - .5, clamped at the border
    out, s, t = data.crop(image, (2, 2), (0, 0), 4, fill)
    xs, ys = torch.tensor([0, .25, .75, 1]), torch.tensor([0, 2.5, 7.5, 10])
    assert torch.allclose(out[0], ys[:, None] + xs[None], atol=1e-6)
    # down-sampling x3 in x of x^2 + 10 y: samples at x = 1 and 4 exactly (1 and 16), no antialiasing
    # (a filter over 3 pixels would give 1.67 and 16.67); y x2: rows at y = .5 and 2.5
    out, s, t = data.crop(ramp(lambda x, y: x ** 2 + 10 * y), (1 / 3, 1 / 3), (0, 0), 2, fill)
    assert torch.allclose(out[0], torch.tensor([[6., 21], [26, 41]]), atol=1e-5)
    assert np.allclose(s, (1 / 3, 1 / 2)) and np.allclose(t, 0)  # 6 px -> 2, 4 px -> 2: adjusted per axis
    # snapping: out (0.3, 0.3, 8, 6.3) -> (0, 0, 8, 7); source (-0.2, -0.2, 5.13, 4.47) -> (0, 0, 6, 4)
    out, s, t = data.crop(image, (1.5, 1.5), (0.3, 0.3), 8, fill)
    assert np.allclose(s, (8 / 6, 7 / 4)) and np.allclose(t, 0) and (out[0, 7] == -1).all()


def test_crop_uint8_equals_float_and_keeps_fractions():
    img = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    a, s1, t1 = data.crop(img, (0.7, 0.9), (3.3, -2.1), 24, data.image_mean(img))
    b, s2, t2 = data.crop(img.float(), (0.7, 0.9), (3.3, -2.1), 24, img.float().mean((1, 2)))
    assert a.dtype == torch.float32 and torch.allclose(a, b, atol=1e-4)
    assert np.array_equal(s1, s2) and np.array_equal(t1, t2)
    assert (a != a.round()).any()  # the crop stays float: not rounded to 8 bits
    padded = a[:, 23, 0]  # below the image: the per-channel float mean
    assert torch.allclose(padded, img.double().mean((1, 2)).float())


def test_boxes_go_through_the_adjusted_parameters_and_back():
    rng = np.random.default_rng(0)
    img = torch.zeros(3, 240, 320, dtype=torch.uint8)
    for _ in range(20):
        x, y = rng.uniform(20, 250), rng.uniform(20, 180)
        w, h = rng.uniform(10, 60), rng.uniform(10, 50)
        box = np.array([x, y, x + w, y + h])
        for s, t in (data.crop_params([x, y, w, h], 4.0, 112), data.jitter_params([x, y, w, h], 4, 112, rng)):
            _, s, t = data.crop(img, s, t, 112, (0, 0, 0))
            assert np.abs(data.box_from_crop(data.box_to_crop(box, s, t), s, t) - box).max() < 1e-6
        # pixels: an integer-aligned white rectangle lands where the adjusted parameters say, within a pixel
        xi, yi, wi, hi = int(x), int(y), int(w), int(h)
        img[:] = 0
        img[:, yi:yi + hi, xi:xi + wi] = 255
        out, s, t = data.crop(img, *data.jitter_params([xi, yi, wi, hi], 4.0, 112, rng, center_jitter=0.5), 112, (0, 0, 0))
        ys, xs = np.nonzero(out[0].numpy() > 127)
        want = data.box_to_crop([xi, yi, xi + wi, yi + hi], s, t)
        got = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert np.abs(np.array(got) - np.clip(want, 0, 112)).max() <= 1.0, (got, want)


def test_template_mask_from_the_adjusted_parameters_near_cell_borders():
    """Cells are rasterized like pixels (floor; end-exclusive with 1e-4): an edge exactly on a cell border
    does not claim the next cell; an edge just past it does."""
    mask = lambda box: template_fg_mask(torch.tensor([box], dtype=torch.float64), 8)[0].numpy()
    on_border = mask([14.0, 28.0, 42.0, 56.0])
    assert on_border[2:4, 1:3].all() and on_border.sum() == 4
    just_past = mask([13.99, 28.0, 42.01, 56.0])
    assert just_past[2:4, 0:4].all() and just_past.sum() == 8
    assert mask([50.0, 50.0, 50.5, 50.5]).sum() == 1  # thinner than a cell: the cell it lies in
    # a tracker's template: the box through the crop's (s', t'), which the snapping moved
    img = torch.zeros(3, 200, 300, dtype=torch.uint8)
    rng = np.random.default_rng(1)
    for _ in range(200):
        x, y, w, h = rng.uniform(0, 250), rng.uniform(0, 150), rng.uniform(8, 50), rng.uniform(8, 50)
        s0, t0 = data.crop_params([x, y, w, h], 2.0, 112)
        _, s, t = data.crop(img, s0, t0, 112, (0, 0, 0))
        b = data.box_to_crop([x, y, x + w, y + h], s, t) / 14
        cols, rows = np.arange(8), np.arange(8)
        want_x = (cols >= np.floor(b[0])) & (cols < np.floor(b[2] + 1 - 1e-4))
        want_y = (rows >= np.floor(b[1])) & (rows < np.floor(b[3] + 1 - 1e-4))
        assert np.array_equal(mask(list(b * 14)), (want_y[:, None] & want_x[None]).astype(np.int64))


def test_jitter_statistics():
    rng = np.random.default_rng(0)
    x, y, w, h = 50.0, 60.0, 40.0, 20.0
    s0, t0 = data.crop_params([x, y, w, h], 4.0, 224)
    draws = [data.jitter_params([x, y, w, h], 4.0, 224, rng) for _ in range(20000)]
    s, t = np.array([d[0] for d in draws]), np.array([d[1] for d in draws])
    log_scale = np.log(s0 / s)  # s / exp(N(0,1) * 0.25) per axis -> log ~ N(0, 0.25)
    assert np.abs(log_scale.mean(0)).max() < 0.01 and np.abs(log_scale.std(0) - 0.25).max() < 0.01
    assert abs(np.corrcoef(log_scale.T)[0, 1]) < 0.03  # the two axes independently
    center = np.array([x + w / 2, y + h / 2]) * s + t - 112  # the object center's offset from the crop center
    u = center / ((w * s[:, :1] + h * s[:, 1:]) * 0.5 * 3)  # U(-1, 1) * 3 * 0.5 * (w sx + h sy)
    assert np.abs(u).max() <= 1 and np.abs(u).max() > 0.99
    assert np.abs(u.std(0) - 1 / math.sqrt(3)).max() < 0.01 and np.abs(u.mean(0)).max() < 0.02


# -----------------------------------------------------------------------------
# the sampler


class Canvas(data.Sequence):
    """In-memory sequence: a white box on a dark 400x300 frame where visible."""

    def frame(self, i):
        img = np.full((300, 400, 3), 60, np.uint8)
        if self.visible[i]:
            x, y, w, h = self.boxes[i].astype(int)
            img[y:y + h, x:x + w] = 255
        return img


def canvas(n=300, seed=0, visible=None):
    rng = np.random.default_rng(seed)
    boxes = np.stack([rng.integers(120, 220, n), rng.integers(100, 160, n), rng.integers(24, 48, n),
                      rng.integers(24, 48, n)], 1).astype(float)
    return Canvas(f"canvas{seed}", boxes, rng.uniform(size=n) < 0.3 if visible is None else visible, None)


def test_sampler_never_yields_invisible_and_follows_weights():
    a, b = [canvas(300, 0), canvas(50, 1, visible=np.zeros(50, bool))], [canvas(200, 2)]
    pairs = data.TrainingPairs([a, b], [3, 1], template_size=56, search_size=112, search_factor=4,
                               samples_per_epoch=10, seed=0)
    picks = []
    for i in range(3000):
        seq, t_z, t_x = pairs.sample_frames(np.random.default_rng([0, i]))
        assert seq.visible[t_z] and seq.visible[t_x] and abs(t_z - t_x) <= 100
        picks.append(seq.name != 'canvas2')
    assert abs(np.mean(picks) - 0.75) < 0.03


def test_pairs_deterministic_and_boxes_match_pixels():
    seqs = [canvas(100, 3)]
    pairs = data.TrainingPairs([seqs], [1], template_size=56, search_size=112, search_factor=4,
                               samples_per_epoch=64, seed=7)
    one, again, other = pairs[5], pairs[5], pairs[6]
    assert all(torch.equal(one[k], again[k]) for k in one) and not torch.equal(one['x'], other['x'])
    assert one['z'].shape == (3, 56, 56) and one['x'].shape == (3, 112, 112)
    assert one['z_mask'].shape == (4, 4) and one['z_mask'].dtype == torch.int64
    mean, std = torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
    for i in range(40):  # after flips and color augmentation, the box still lies on the white object
        s = pairs[i]
        x = ((s['x'] * std + mean) * 255).mean(0).numpy()  # (S, S) gray
        d = np.abs(x - np.median(x))
        ys, xs = np.nonzero(d > 12)  # blur spreads the edge by a few pixels; a wrong flip moves it far
        got = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / 112
        assert np.abs(got - s['x_box'].numpy()).max() <= 4 / 112, (i, got * 112, s['x_box'] * 112)
        z = ((s['z'] * std + mean) * 255).mean(0).numpy()
        d = np.abs(z - np.median(z[:3]))
        ys, xs = np.nonzero(d > 0.75 * d.max())  # surely object pixels (blur and solarize blur the edge)
        assert s['z_mask'][ys // 14, xs // 14].all()  # object pixels lie in foreground cells


def test_color_jitter_map_equals_the_steps_in_order():
    rng = np.random.default_rng(0)
    a = rng.uniform(60, 190, (9, 7, 3)).astype(np.float32)  # mid-range: no step would clip
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        factors = rng.uniform(0.8, 1.2, 3)
        ref = a.copy()
        for k in order:  # brightness, contrast about the mean gray, saturation about each pixel's gray
            if k == 0:
                ref = ref * factors[0]
            elif k == 1:
                g = (ref @ luma).mean()
                ref = g + (ref - g) * factors[1]
            else:
                y = (ref @ luma)[..., None]
                ref = y + (ref - y) * factors[2]
        M, b = data.jitter_map(a.reshape(-1, 3).mean(0), factors, order)
        assert np.allclose(a @ M + b, ref, atol=1e-3)
    out, = data.color_augment([torch.from_numpy(a).permute(2, 0, 1)], np.random.default_rng(3))
    assert out.dtype == np.float32 and out.shape == (3, 9, 7) and 0 <= out.min() and out.max() <= 255


def test_loader_workers_give_the_same_samples():
    seqs = data.open_dataset('synthetic', split='val', num=3, length=30)
    pairs = data.TrainingPairs([seqs], [1], template_size=28, search_size=56, search_factor=4,
                               samples_per_epoch=8, seed=1)
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=8, num_workers=2)))
    direct = torch.utils.data.default_collate([pairs[i] for i in range(8)])
    assert all(torch.equal(batch[k], direct[k]) for k in batch)


# -----------------------------------------------------------------------------
# writers and the speed measure


def test_write_mp4_round_trip(tmp_path):
    import av
    clip = synthetic.synthetic_clip(2_000_003, 12, size=(97, 64))  # odd width: cropped to even
    common.write_mp4(tmp_path / 'clip.mp4', (clip.frame(i) for i in range(len(clip))), fps=10)
    with av.open(str(tmp_path / 'clip.mp4')) as f:
        frames = [fr.to_ndarray(format='rgb24') for fr in f.decode(video=0)]
        codec = f.streams.video[0].codec_context.name
    assert len(frames) == 12 and frames[0].shape == (64, 96, 3) and codec == 'h264'


def test_the_speed_measure_is_a_rate():
    """pipeline_speed: samples/s through a DataLoader, what `python evaluate.py efficiency` reports."""
    assert data.pipeline_speed([[canvas(50, 4)]], [1], 28, 56, 4.0, samples=8, workers=0, batch=4) > 0


# ----------------------------------------------------------------------------- bad inputs: one line each, nothing half-written

def got10k_val(root, gt, frames=3):
    for i in range(frames):
        jpeg(root / 'val' / 'seq1' / f"{i + 1:08d}.jpg")
    write(root / 'val' / 'list.txt', 'seq1\n')
    write(root / 'val' / 'seq1' / 'groundtruth.txt', gt)
    (seq,) = data.open_dataset('got10k', root, split='val')
    return seq


@pytest.mark.parametrize('gt, frames, message', [
    (lines(BOXES) * 2, 3, r'got10k/seq1: its ground truth has 6 boxes but frame 6 .* is missing'),
    ('nan,nan,nan,nan\n' + lines(BOXES[1:]), 3, r'first box nan,nan,nan,nan is not a number'),
    ('3,4,0,10\n' + lines(BOXES[1:]), 3, r'first box 3,4,0,10 is of zero size'),
    ('100,4,20,10\n' + lines(BOXES[1:]), 3, r'first box 100,4,20,10 lies outside the 64x48 first frame'),
])
def test_a_sequence_is_checked_against_its_frames_once(tmp_path, gt, frames, message):
    seq = got10k_val(tmp_path / 'GOT-10k', gt, frames)  # reading needs no image (scoring works on annotations alone)
    with pytest.raises(ValueError, match=message) as e:
        seq.check()
    assert '\n' not in str(e.value)


def test_a_missing_img_folder_is_named_and_a_good_sequence_passes(tmp_path):
    write(tmp_path / 'LaSOT' / 'cat' / 'cat-1' / 'groundtruth.txt', lines(BOXES))
    (seq,) = data.open_dataset('lasot', tmp_path / 'LaSOT')
    with pytest.raises(ValueError, match=r'cat-1: its frames are not there \(.*cat-1/img is missing\)'):
        seq.check(first_box=False)
    for i in range(3):
        jpeg(tmp_path / 'LaSOT' / 'cat' / 'cat-1' / 'img' / f"{i + 1:08d}.jpg")
    seq.check()


def test_otb_refuses_a_split_and_an_empty_root_is_named(tmp_path):
    with pytest.raises(ValueError, match=r'otb has no splits, so --split nonsense means nothing'):
        data.open_dataset('otb', tmp_path, split='nonsense')  # was: ignored
    with pytest.raises(ValueError, match=r"otb: .* holds no sequence in otb's layout"):  # was: `high <= 0`
        data.open_dataset('otb', tmp_path)


def test_16_bit_images_are_scaled_not_clipped_to_white():
    gray = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) % 256
    im = data.rgb_image(Image.fromarray((gray * 257).astype(np.uint16)))
    assert im.mode == 'RGB' and np.array_equal(np.asarray(im)[..., 2], gray.astype(np.uint8))
