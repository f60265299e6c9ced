"""track.py: the Tracker, the command line end to end on a synthetic mp4, its errors, official weights."""
import os
import subprocess
import sys
from dataclasses import asdict

import av
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lorat  # noqa: E402
import track  # noqa: E402
import data  # noqa: E402
from common import write_mp4  # noqa: E402
from data import box_to_crop  # noqa: E402
from synthetic import synthetic_clip  # noqa: E402

FRAMES = 10


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """track.main() sets the thread count of the process it runs in: put it back for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY')}
    env['MPLBACKEND'] = 'agg'
    return subprocess.run([sys.executable, os.path.join(ROOT, 'track.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def count_frames(path):
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """A short synthetic clip as mp4 and a tiny hand-built model saved as a merged export."""
    folder = tmp_path_factory.mktemp('track')
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=0)
    weights = folder / 'tiny.pt'
    torch.save({'config': asdict(model.cfg), 'model': model.state_dict(), 'merged': True}, weights)
    clip = synthetic_clip(2_000_000, length=FRAMES, size=(160, 120))
    video = folder / 'clip.mp4'
    write_mp4(str(video), (clip.frame(i) for i in range(FRAMES)), fps=25)
    return dict(folder=folder, weights=weights, video=video, clip=clip,
                init=','.join(f'{v:g}' for v in clip.boxes[0]))


def test_cli_tracks_a_video_end_to_end(world):
    out, boxes = world['folder'] / 'out.mp4', world['folder'] / 'boxes.txt'
    r = run_cli(world['video'], '--weights', world['weights'], '--init', world['init'], '--out', out, '--boxes', boxes)
    assert r.returncode == 0, r.stderr
    assert 'fps' in r.stdout and r.stdout.strip().splitlines()[-1] == f'annotated video: {out}'
    lines = boxes.read_text().splitlines()
    assert len(lines) == FRAMES
    first = np.array([float(v) for v in lines[0].split(',')])
    assert np.allclose(first, world['clip'].boxes[0], atol=0.01)  # frame 0 is the given box
    assert all(len(line.split(',')) == 4 for line in lines)
    assert count_frames(out) == FRAMES
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == 25  # the source frame rate is kept


def test_cli_tracks_an_image_folder(world, tmp_path):
    for i in range(4):
        Image.fromarray(world['clip'].frame(i)).save(tmp_path / f'{i:08d}.jpg')
    boxes, here = tmp_path / 'b.txt', tmp_path / 'here'
    here.mkdir()
    r = run_cli(tmp_path, '--weights', world['weights'], '--init', world['init'], '--boxes', boxes, cwd=here)
    assert r.returncode == 0, r.stderr
    assert len(boxes.read_text().splitlines()) == 4
    assert count_frames(here / f'{tmp_path.name}_lorat.mp4') == 4  # in the current folder, not next to the input
    assert not os.path.exists(f'{tmp_path}_lorat.mp4')


def test_the_annotated_video_goes_to_the_current_folder_and_never_over_the_input(world, tmp_path):
    read_only = tmp_path / 'dataset'
    read_only.mkdir()
    video = read_only / 'clip.mp4'
    video.write_bytes(world['video'].read_bytes())
    os.symlink(video, tmp_path / 'link.mp4')
    read_only.chmod(0o555)  # a dataset folder the user cannot write to
    try:
        r = run_cli(video, '--weights', world['weights'], '--init', world['init'], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == 'annotated video: clip_lorat.mp4'
        assert count_frames(tmp_path / 'clip_lorat.mp4') == FRAMES
        for out in (video, tmp_path / 'link.mp4', f'{read_only}/../dataset/clip.mp4'):
            r = run_cli(video, '--weights', world['weights'], '--init', world['init'], '--out', out, cwd=tmp_path)
            assert r.returncode != 0 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert f'--out {out} is the input video itself' in r.stderr
        r = run_cli(video, '--weights', world['weights'], '--init', world['init'], '--boxes', tmp_path / 'link.mp4')
        assert r.returncode != 0 and '--boxes' in r.stderr and 'input video itself' in r.stderr
        assert video.read_bytes() == world['video'].read_bytes()
    finally:
        read_only.chmod(0o755)


@pytest.mark.parametrize('device, message', [('gpu', '--device gpu: not a device'),
                                             pytest.param('cuda', 'no CUDA GPU is visible', marks=pytest.mark.skipif(
                                                 torch.cuda.is_available(), reason='a GPU is visible'))])
def test_bad_device_is_one_line(world, device, message):
    r = run_cli(world['video'], '--weights', world['weights'], '--init', world['init'], '--device', device)
    assert r.returncode != 0 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr


@pytest.mark.parametrize('init, message', [('1,2,3', 'four numbers'), ('a,b,c,d', 'four numbers'),
                                           ('10,10,0,20', 'zero or negative size'),
                                           ('10,10,20,-5', 'zero or negative size'),
                                           ('500,40,20,20', 'outside'), ('-50,-50,20,20', 'outside')])
def test_bad_init_fails_with_one_clear_line(world, init, message):
    with pytest.raises(SystemExit) as e:  # the CLI prints SystemExit's message as its one line
        track.main([str(world['video']), '--weights', str(world['weights']), '--init', init,
                    '--out', str(world['folder'] / 'x.mp4')])
    text = str(e.value.code)
    assert text.startswith('error: ') and '\n' not in text and message in text and '--init' in text, text
    assert not (world['folder'] / 'x.mp4').exists() and not (world['folder'] / 'x.mp4.tmp').exists()


def test_no_init_without_display_says_how(world):
    r = run_cli(world['video'], '--weights', world['weights'])
    assert r.returncode != 0 and '--init x,y,w,h' in r.stderr and 'Traceback' not in r.stderr


def test_missing_and_corrupt_videos_fail_clearly(world, tmp_path):
    r = run_cli(tmp_path / 'nope.mp4', '--weights', world['weights'], '--init', world['init'])
    assert r.returncode != 0 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr
    corrupt = tmp_path / 'corrupt.mp4'
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    truncated = tmp_path / 'truncated.mp4'
    truncated.write_bytes(world['video'].read_bytes()[:2000])
    for bad in (corrupt, truncated):
        r = run_cli(bad, '--weights', world['weights'], '--init', world['init'])
        assert r.returncode != 0 and 'cannot read video' in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_checkpoint_resolution_mismatch_fails_clearly(world):
    r = run_cli(world['video'], '--weights', world['weights'], '--init', world['init'], '--res', 224)
    assert r.returncode != 0 and 'T-140' in r.stderr and 'Traceback' not in r.stderr


def test_update_is_the_hann_blended_argmax(world):
    clip = world['clip']
    tracker = track.load_tracker(world['weights'])
    tracker.init(clip.frame(0), clip.boxes[0])
    box, score = tracker.update(clip.frame(1))
    score_map, blended = tracker.last['score_map'].cpu().numpy(), tracker.last['blended'].cpu().numpy()
    g = tracker.cfg.search_grid
    hann = np.outer(np.hanning(g), np.hanning(g))  # numpy's is the symmetric (periodic=False) window
    assert score_map.shape == (g, g)
    assert np.allclose(blended, 0.55 * score_map + 0.45 * hann, atol=1e-6)
    i, j = np.unravel_index(blended.argmax(), (g, g))
    assert score == pytest.approx(score_map[i, j])
    H, W = clip.frame(1).shape[:2]
    assert box.shape == (4,) and box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= W and box[1] + box[3] <= H


def test_autocast_inference_keeps_fp32_weights_and_agrees_with_fp32(world):
    clip = world['clip']
    results = []
    for dtype in ('fp32', 'bf16'):
        tracker = track.load_tracker(world['weights'], dtype=dtype)
        tracker.init(clip.frame(0), clip.boxes[0])
        tracker.update(clip.frame(1))
        results.append(tracker.last['score_map'].numpy())
        assert all(p.dtype == torch.float32 for p in tracker.model.parameters())  # autocast, not a cast model
    assert np.abs(results[0] - results[1]).max() < 0.05 and np.abs(results[0] - results[1]).max() > 0


class PointsRight(torch.nn.Module):
    """A stand-in model that always answers 'the target is at the right edge of the search crop'."""

    def __init__(self):
        super().__init__()
        self.cfg = lorat.make_config('T')
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, z, x, z_mask):
        g = self.cfg.search_grid
        return torch.zeros(1, g, g), torch.tensor([0.8, 0.45, 1.0, 0.55]).expand(1, g, g, 4)


def test_a_target_leaving_the_frame_does_not_crash():
    tracker = track.Tracker(PointsRight())
    frame = np.full((120, 160, 3), 90, np.uint8)
    tracker.init(frame, (140, 50, 30, 20))  # partly outside already: the template is padded
    for _ in range(20):
        box, score = tracker.update(frame)
        assert np.isfinite(box).all() and np.isfinite(score)
        assert box[0] >= 0 and box[1] >= 0 and box[2] >= 0 and box[3] >= 0
        assert box[0] + box[2] <= 160 + 1e-9 and box[1] + box[3] <= 120 + 1e-9
    assert box[0] == pytest.approx(160) and box[2] == pytest.approx(0)  # left through the right edge


def test_the_kept_box_stays_when_the_target_leaves_the_frame():
    """The authors' rule: an empty clipped box is the frame's result, but the next search window is the
    previous one (a normal window), not a 10-px sliver at the border."""
    tracker = track.Tracker(PointsRight())
    frame = np.full((120, 160, 3), 90, np.uint8)
    tracker.init(frame, (100, 50, 30, 20))
    kept = []
    for _ in range(12):
        box, _ = tracker.update(frame)
        kept.append((tracker.box.copy(), box))
    empty = [k for k, (_, box) in enumerate(kept) if box[2] <= 0]
    assert empty, "the stand-in model never pushed the box out of the frame"
    first = empty[0]
    assert kept[first][0][2] > 0 and np.array_equal(kept[first][0], kept[first - 1][0])  # the previous kept box
    assert all(np.array_equal(kept[k][0], kept[first][0]) for k in empty)  # and it stays while the result is empty
    assert np.allclose(tracker.search_params()[0], data.crop_params(kept[first][0], 4.0, tracker.cfg.search_size)[0])  # its window
    assert min(kept[first][0][2:]) > 10  # a normal window, not one around a sliver at the border


def test_bad_first_box_and_a_frame_of_another_size_are_one_line_errors():
    tracker = track.Tracker(PointsRight())
    frame = np.full((120, 160, 3), 90, np.uint8)
    for box, words in (((10, 10, 0, 20), 'w and h > 0'), ((10, 10, float('nan'), 5), 'not a box'),
                       ((170, 10, 20, 20), 'outside the 160x120')):
        with pytest.raises(ValueError, match=words):
            tracker.init(frame, box)
    tracker.init(frame, (10, 10, 30, 20))
    with pytest.raises(ValueError, match='a 100x80 frame after a 160x120 first frame'):
        tracker.update(np.zeros((80, 100, 3), np.uint8))


class Oracle(PointsRight):
    """A stand-in model that answers, in every cell, the true box (set before each frame) in crop coordinates."""

    def forward(self, z, x, z_mask):
        g, S = self.cfg.search_grid, self.cfg.search_size
        box = torch.tensor(box_to_crop(self.truth, *self.params) / S, dtype=torch.float32)
        return torch.zeros(1, g, g), box.expand(1, g, g, 4)


def test_a_perfect_model_gives_back_the_true_boxes(world):
    """The geometry round trip: crop window, normalized crop box, back to the image (clipped)."""
    clip, oracle = world['clip'], Oracle()
    tracker = track.Tracker(oracle)
    tracker.init(clip.frame(0), clip.boxes[0])
    for i in range(1, FRAMES):
        x, y, w, h = clip.boxes[i]
        _, s, t = data.crop(data.as_tensor(clip.frame(i)), *tracker.search_params(), tracker.cfg.search_size, tracker.fill)
        oracle.truth, oracle.params = [x, y, x + w, y + h], (s, t)  # the adjusted parameters the tracker will use
        box, _ = tracker.update(clip.frame(i))
        assert np.allclose(box, clip.boxes[i], atol=1e-3), (i, box, clip.boxes[i])


def write_official_release(folder, rank=4, alpha=8):
    """A tiny (width-128, size T) LoRAT release in the authors' format: a DINOv2-layout backbone file
    (37x37 position grid + cls, cls/mask tokens) and a safetensors file of only LoRA, type table, head.
    Returns the unmerged reference model the files were cut from."""
    from safetensors.torch import save_file
    torch.manual_seed(1)
    ref = lorat.build_model('T', 112, lora_rank=rank, lora_alpha=float(alpha)).eval()
    grid37 = torch.randn(1, 37 * 37, 128) * 0.1
    with torch.no_grad():
        ref.pos_embed.copy_(lorat.resize_pos_embed(grid37, ref.cfg.search_grid))
        for name, p in ref.named_parameters():
            if '.lora.' in name:  # large enough that a wrongly mapped adapter changes the output
                p.copy_(torch.randn_like(p) * 0.1)
    sd = {k: v.clone().contiguous() for k, v in ref.state_dict().items()}
    trained = {k: v for k, v in sd.items() if '.lora.' in k or k.startswith(('token_type_embed', 'head.'))}
    backbone = {k: v for k, v in sd.items() if k not in trained and k != 'pos_embed'}
    backbone.update(pos_embed=torch.cat([torch.randn(1, 1, 128), grid37], 1), cls_token=torch.randn(1, 1, 128),
                    mask_token=torch.zeros(1, 128))
    torch.save(backbone, folder / 'dinov2_vitt14_pretrain.pth')
    save_file({**trained, 'lora_alpha': torch.tensor(alpha), 'use_rslora': torch.tensor(False)},
              str(folder / 'LoRAT_T_112.safetensors'))
    return ref


def test_official_checkpoint_loads_and_matches(world, tmp_path):
    ref = write_official_release(tmp_path)
    weights, backbone = tmp_path / 'LoRAT_T_112.safetensors', tmp_path / 'dinov2_vitt14_pretrain.pth'
    tracker = track.load_tracker(weights, backbone=backbone, res=112)
    z, x, z_mask = lorat.example_inputs(tracker.cfg, batch=2)
    with torch.no_grad():
        (s, b), (s_ref, b_ref) = tracker.model(z, x, z_mask), ref(z, x, z_mask)
    assert torch.allclose(s, s_ref, atol=1e-4) and torch.allclose(b, b_ref, atol=1e-5)
    r = run_cli(world['video'], '--weights', weights, '--backbone', backbone, '--res', 112,
                '--init', world['init'], '--boxes', tmp_path / 'b.txt', '--out', tmp_path / 'o.mp4')
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / 'b.txt').read_text().splitlines()) == FRAMES


def test_demo_needs_a_trained_model(tmp_path):
    r = run_cli(cwd=tmp_path)
    assert r.returncode != 0 and 'python train.py' in r.stderr and 'Traceback' not in r.stderr


def test_demo_tracks_the_first_held_out_clip_and_ends_with_evaluates_held_out_score(world, tmp_path, monkeypatch, capsys):
    """The demo's video is the first held-out clip's; its last line is the success AUC over the held-out clips
    that `evaluate.py run --dataset synthetic` gives for the same weights (here 2 clips of 6 frames, not 20)."""
    import evaluate
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'runs' / 'r1').mkdir(parents=True)
    os.link(world['weights'], tmp_path / 'runs' / 'r1' / 'export.pt')
    (tmp_path / 'runs' / 'latest').write_text('r1\n')
    track.demo(track.parse_args(['--strip', 'demo/strip.png']), clips=2, length=6)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    first = evaluate.open_sequences('synthetic', split='test', num=2, length=6)[0]
    assert f"annotated video: demo/{first.name}_lorat.mp4" in lines and count_frames(f"demo/{first.name}_lorat.mp4") == 6
    assert Image.open('demo/strip.png').size == (6 * 320, 240)  # six 320x240 frames side by side
    figures = evaluate.main(['run', '--dataset', 'synthetic', '--num', '2', '--length', '6', '--weights',
                             'runs/r1/export.pt', '--out', 'tracked_again'])[0]['figures']
    assert lines[-1] == (f"held-out success AUC over the 2 synthetic test clips: {figures['AUC']:.1f}% "
                         f"(precision@20px {figures['P']:.1f}%)")
    assert f"[2/2] {evaluate.open_sequences('synthetic', split='test', num=2, length=6)[1].name}" in err and 'ETA' in err


def test_strip_shows_evenly_spaced_annotated_frames_side_by_side(world, tmp_path):
    strip, boxes = tmp_path / 'strip.png', tmp_path / 'b.txt'
    track.main([str(world['video']), '--weights', str(world['weights']), '--init', world['init'], '--out',
                str(tmp_path / 'o.mp4'), '--boxes', str(boxes), '--strip', str(strip)])
    picture = np.asarray(Image.open(strip))
    assert picture.shape == (120, 6 * 160, 3)
    frames = list(track.Frames(str(world['video'])))
    pixels = lambda image, colour: int(np.all(image == colour, axis=-1).sum())
    for k, i in enumerate([0, 2, 4, 5, 7, 9]):  # 6 of 10 frames, evenly spaced
        panel = picture[:, k * 160:(k + 1) * 160]
        assert pixels(panel, (255, 48, 48)) > pixels(frames[i], (255, 48, 48)), k  # the box, in its colour
        assert pixels(panel[:20, :80], (0, 0, 0)) > 50 + pixels(frames[i][:20, :80], (0, 0, 0)), k  # the label
    x, y, w, h = world['clip'].boxes[0]
    assert picture[int(y) + 1, int(x + w / 2)].tolist() == [255, 48, 48]  # frame 0's box: the given one
    tall = [np.full((480, 640, 3), 90, np.uint8)] * 3
    track.write_strip(tmp_path / 'tall.png', tall, np.array([[100, 100, 50, 50]] * 3, float), [1.0] * 3)
    assert Image.open(tmp_path / 'tall.png').size == (3 * 320, 240)  # 3 frames only; each scaled to 240 px high


# ----------------------------------------------------------------------------- bad inputs: one line each, nothing half-written

def test_out_and_boxes_naming_one_file_is_refused(world, tmp_path):
    same = tmp_path / 'same.mp4'
    with pytest.raises(SystemExit, match=r'--boxes .* is the --out video too') as e:  # was: boxes written over the video
        track.main([str(world['video']), '--weights', str(world['weights']), '--init', world['init'],
                    '--out', str(same), '--boxes', str(tmp_path / '.' / 'same.mp4')])
    assert '\n' not in str(e.value.code) and not same.exists()
    with pytest.raises(SystemExit, match=r'--strip .* is also the --out video'):
        track.main([str(world['video']), '--weights', str(world['weights']), '--init', world['init'],
                    '--out', str(same), '--strip', str(same)])
    with pytest.raises(SystemExit, match='unrecognized arguments: --benchmark'):  # the speed test: evaluate.py efficiency
        track.parse_args(['--benchmark'])


def test_init_without_a_value_does_not_eat_the_next_option(world):
    assert track.join_init(['v.mp4', '--init', '-20,5,40,40']) == ['v.mp4', '--init=-20,5,40,40']
    assert track.join_init(['v.mp4', '--init', '--weights', 'w.pt']) == ['v.mp4', '--init', '--weights', 'w.pt']
    for argv in (['--init', '--weights', str(world['weights'])], ['--weights', str(world['weights']), '--init']):
        with pytest.raises(SystemExit) as e:
            track.main([str(world['video'])] + argv)
        assert str(e.value.code) == 'error: argument --init: expected one argument'


@pytest.mark.parametrize('flag, value', [('--fps', '-5'), ('--fps', 'nan'), ('--threads', '0'),
                                         ('--res', '100'), ('--init', '1e308,1,2,2')])
def test_numbers_are_range_checked_at_parse_time(world, flag, value):
    with pytest.raises(SystemExit) as e:
        track.parse_args([str(world['video']), '--weights', str(world['weights']), '--init', world['init'], flag, value])
    assert str(e.value.code).startswith(f'error: argument {flag}: ') and '\n' not in str(e.value.code)


def test_a_backbone_as_weights_says_to_use_it_as_backbone(world):
    with pytest.raises(SystemExit, match=r'is a backbone .* give it as --backbone') as e:  # was KeyError
        track.main([str(world['video']), '--weights', str(lorat.T_BACKBONE), '--init', world['init'],
                    '--out', str(world['folder'] / 'bb.mp4')])
    assert '\n' not in str(e.value.code)


def test_a_video_whose_index_lists_more_frames_than_decode_warns_with_the_counts(world, tmp_path, capsys):
    clip = synthetic_clip(5, length=40, size=(160, 120))
    full = tmp_path / 'full.mp4'
    with av.open(str(full), 'w', format='mp4', options={'movflags': 'faststart'}) as out:  # the index up front
        stream = out.add_stream('libx264', rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, 'yuv420p'
        for i in range(40):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(clip.frame(i), format='rgb24')))
        out.mux(stream.encode())
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    frames = track.Frames(str(cut))
    n = sum(1 for _ in frames)
    err = capsys.readouterr().err
    assert frames.count == 40 and 0 < n < 40 and 'lists 40 frames' in err and f"{n}" in err, err  # was: no word


def test_a_rotation_tag_is_applied_with_a_warning(tmp_path, capsys):
    image = np.zeros((120, 160, 3), np.uint8)
    image[:10, :20] = 255  # a mark in the top-left corner
    path = tmp_path / 'phone.mp4'
    with av.open(str(path), 'w', format='mp4') as out:
        stream = out.add_stream('libx264', rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, 'yuv420p'
        stream.set_display_rotation(90)
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
        out.mux(stream.encode())
    frames = list(track.Frames(str(path)))
    assert frames[0].shape == (160, 120, 3)  # was: tracked unrotated, 120 x 160
    np.testing.assert_allclose(frames[0].astype(float), np.rot90(image).astype(float), atol=40)
    assert 'rotation tag (90 degrees)' in capsys.readouterr().err


def test_image_folders_of_mixed_sizes_are_refused_and_16_bit_pngs_are_read_right(world, tmp_path):
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    Image.fromarray(world['clip'].frame(0)).save(mixed / '0001.jpg')
    Image.fromarray(world['clip'].frame(1)).resize((80, 60)).save(mixed / '0002.jpg')
    with pytest.raises(ValueError, match=r'mixes frame sizes \(0001.jpg is 160x120, 0002.jpg is 80x60\)'):
        track.Frames(str(mixed))
    deep = tmp_path / 'png16'
    deep.mkdir()
    gray = world['clip'].frame(0)[..., 1]
    Image.fromarray(gray.astype(np.uint16) * 257).save(deep / '0001.png')  # 16-bit grayscale
    frame = next(iter(track.Frames(str(deep))))
    assert frame.dtype == np.uint8 and frame.shape == (120, 160, 3)
    np.testing.assert_array_equal(frame[..., 0], gray)  # was: a white frame


@pytest.mark.parametrize('sig, message', [('SIGTERM', None), ('SIGINT', 'stopped (Ctrl-C)')])
def test_a_signal_while_tracking_leaves_no_tmp(world, tmp_path, sig, message):
    import signal
    import time
    clip = synthetic_clip(5, length=300, size=(160, 120))
    video = tmp_path / 'long.mp4'
    write_mp4(str(video), (clip.frame(i) for i in range(300)))
    out = tmp_path / 'out.mp4'
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY')}
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, 'track.py'), str(video), '--weights', str(world['weights']),
                          '--init', ','.join(f'{v:g}' for v in clip.boxes[0]), '--out', str(out)],
                         stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (tmp_path / 'out.mp4.tmp').exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(getattr(signal, sig))
    err = p.communicate(timeout=60)[1]
    assert p.returncode != 0 and 'Traceback' not in err, err
    assert not (tmp_path / 'out.mp4.tmp').exists() and not out.exists()
    if message:
        assert message in err
