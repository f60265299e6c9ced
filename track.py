"""
Track one object through a video with LoRAT: the tracker a person runs on their own video.

    python track.py video.mp4 --init 120,80,60,40     # box x,y,w,h on the first frame; or draw it
    python track.py frames/ --init ... --boxes b.txt   # a folder of images; boxes in pytracking format
    python track.py video.mp4 --weights LoRAT_B_224.bin --backbone dinov2_vitb14_pretrain.pth
    python track.py                                    # the demo: a synthetic clip, the newest run
    python track.py --benchmark                        # fps end to end, 640x360, T and B-224

Inference follows the paper: the template is cropped once from the first frame; every later frame is
searched in a crop around the previous box; the score map is blended with a Hanning window (a prior
that the target moved little), the best cell's box is mapped back to the image. No template update,
no re-detection: what the one-stream ViT sees is all there is.
"""
import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

import lorat
from data import (box_from_crop, box_lines, box_to_crop, crop_image, crop_window, curve_scores, image_mean, normalize,
                  open_dataset, sequence_curves, synthetic_clip, write_mp4, write_text_atomic)

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MIN_SIZE = 10  # px: a box clipped to a sliver at the image border still gets a usable search crop
HANN_WEIGHT = 0.55  # s' = 0.55 * s + 0.45 * hann

# -----------------------------------------------------------------------------
# The tracker


class Tracker:
    """LoRAT's inference: a fixed first-frame template, a search crop around the previous box.

    `init(frame, box_xywh)` once, then `update(frame) -> (box_xywh, score)` per frame. After each update
    `last` holds the sigmoid score map, the Hanning-blended map and the search window, for notebooks.
    """

    def __init__(self, model, device='cpu', dtype=torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.cfg, self.device, self.dtype = model.cfg, torch.device(device), dtype
        hann = torch.hann_window(self.cfg.search_grid, periodic=False)
        self.hann = torch.outer(hann, hann).to(self.device)  # (H, W), 1 at the center, 0 at the border
        self.last = {}

    def as_input(self, crop):
        return normalize(crop)[None].to(self.device, self.dtype)  # (1, 3, S, S)

    @torch.inference_mode()
    def init(self, frame, box_xywh):
        """Crop the template (area factor 2) and mark the template cells the box covers (foreground)."""
        cfg = self.cfg
        self.fill = image_mean(Image.fromarray(frame))  # padding of every crop: the template image's mean
        window = crop_window(box_xywh, cfg.template_factor)
        self.z = self.as_input(crop_image(frame, window, cfg.template_size, self.fill))
        x, y, w, h = box_xywh
        box_z = box_to_crop([x, y, x + w, y + h], window, cfg.template_size)  # template-crop pixels
        self.z_mask = lorat.template_fg_mask(box_z[None], cfg.template_grid, cfg.patch_size).to(self.device)
        self.box = np.asarray(box_xywh, dtype=np.float64)

    def search_window(self):
        """The search window around the previous box, its w and h clamped to >= 10 px about its center."""
        x, y, w, h = self.box
        cx, cy, w, h = x + w / 2, y + h / 2, max(w, MIN_SIZE), max(h, MIN_SIZE)
        return crop_window((cx - w / 2, cy - h / 2, w, h), self.cfg.search_factor)

    @torch.inference_mode()
    def update(self, frame):
        """One frame: crop, forward, Hanning-blended argmax, box back to the image (clipped)."""
        S = self.cfg.search_size
        window = self.search_window()
        x = self.as_input(crop_image(frame, window, S, self.fill))
        logits, boxes = self.model(self.z, x, self.z_mask)  # (1, H, W), (1, H, W, 4) normalized xyxy
        score = logits[0].float().sigmoid()  # (H, W)
        blended = HANN_WEIGHT * score + (1 - HANN_WEIGHT) * self.hann
        i, j = divmod(int(blended.argmax()), score.shape[1])
        box = box_from_crop(boxes[0, i, j].float().cpu().numpy() * S, window, S)  # image xyxy
        img_h, img_w = frame.shape[:2]
        box = box.clip(0, [img_w, img_h, img_w, img_h])
        self.box = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])  # the next search center
        self.last = dict(score_map=score.cpu().numpy(), blended=blended.cpu().numpy(), window=window)
        return self.box.copy(), float(score[i, j])


def resolve_device(device):
    """cpu, cuda or cuda:N, checked: a bad or absent device is one line (lorat.resolve_device)."""
    return lorat.resolve_device(device)


def default_dtype(device):
    """bf16 on a GPU (fp16 on one without bf16); fp32 on a CPU: on this project's CPU (AVX-512 bf16, no
    AMX) bf16 measured slower (see `python track.py --benchmark`)."""
    if torch.device(device).type == 'cuda':
        return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
    return 'fp32'


def load_tracker(weights, device='cpu', dtype=torch.float32, backbone=None, res=None):
    """A Tracker from any weights lorat.load_model reads: a train.py checkpoint, a merged export, or an
    official LoRAT release (+ its DINOv2 `backbone`). `res` must agree with the checkpoint's."""
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    model = lorat.load_model(weights, backbone, 'cpu', res)
    if res is not None and model.cfg.res != int(res):
        raise SystemExit(f"error: {weights} is a {model.cfg.size}-{model.cfg.res} model, not resolution {res}: "
                         f"drop --res (it comes from the checkpoint)")
    return Tracker(model, resolve_device(str(device)), dtype)

# -----------------------------------------------------------------------------
# Frames in: a video (PyAV, one frame at a time) or a folder of images


class Frames:
    """The frames of a video file or an image folder, decoded one at a time (never all in memory).

    `fps` (Fraction, None for a folder) and `count` (None when the container does not say) up front.
    """

    def __init__(self, path):
        self.path, self.files, self.fps, self.count = path, None, None, None
        if os.path.isdir(path):
            self.files = sorted(os.path.join(path, f) for f in os.listdir(path)
                                if f.lower().endswith(('.jpg', '.jpeg', '.png')))
            if not self.files:
                raise SystemExit(f"error: folder {path} holds no .jpg or .png images")
            self.count = len(self.files)
            return
        if not os.path.isfile(path):
            raise SystemExit(f"error: video {path} does not exist: check the path")
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                self.fps = stream.average_rate or stream.guessed_rate
                self.count = stream.frames or None
        except (av.error.FFmpegError, IndexError, OSError) as e:
            raise SystemExit(f"error: cannot read video {path}: not a video or corrupt "
                             f"({type(e).__name__})") from None

    def __iter__(self):
        return self.images() if self.files else self.video()

    def images(self):
        for f in self.files:
            try:
                yield np.asarray(Image.open(f).convert('RGB'))
            except OSError:
                raise SystemExit(f"error: cannot read image {f}: corrupt or not an image") from None

    def video(self):
        n = 0
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = 'AUTO'  # decode on the side while the model runs
            try:
                for frame in container.decode(stream):
                    n += 1
                    yield frame.to_ndarray(format='rgb24')  # (H, W, 3) uint8
            except av.error.FFmpegError as e:
                if n == 0:
                    raise SystemExit(f"error: cannot decode video {self.path}: corrupt ({type(e).__name__})") from None
                print(f"\nwarning: {self.path} is damaged after frame {n}; tracked the frames before", file=sys.stderr)

# -----------------------------------------------------------------------------
# The first box: --init x,y,w,h, or drawn on the first frame


def has_display():
    if os.environ.get('MPLBACKEND', '').lower() == 'agg':
        return False
    return sys.platform in ('darwin', 'win32') or bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


def parse_box(text):
    try:
        box = np.array([float(v) for v in text.split(',')])
    except ValueError:
        box = np.array([])
    if box.shape != (4,) or not np.isfinite(box).all():
        raise SystemExit(f"error: --init must be four numbers x,y,w,h in pixels (e.g. --init 120,80,60,40), got {text!r}")
    if box[2] <= 0 or box[3] <= 0:
        raise SystemExit(f"error: --init {text} has zero or negative size: w and h must be > 0")
    return box


def check_inside(box, frame):
    H, W = frame.shape[:2]
    x, y, w, h = box
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        raise SystemExit(f"error: --init {','.join(f'{v:g}' for v in box)} lies outside the {W}x{H} first frame: "
                         f"give x,y,w,h inside it")
    return box


def draw_box(frame):
    """Let the user drag the first box with matplotlib; Enter or closing the window accepts it."""
    import matplotlib.pyplot as plt
    from matplotlib.widgets import RectangleSelector
    fig, ax = plt.subplots()
    ax.imshow(frame)
    ax.set_title("drag a box around the target, then press Enter")
    selector = RectangleSelector(ax, lambda *_: None, interactive=True, useblit=True)
    fig.canvas.mpl_connect('key_press_event', lambda e: plt.close(fig) if e.key == 'enter' else None)
    plt.show()
    x1, x2, y1, y2 = selector.extents
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise SystemExit("error: no box was drawn: drag a box on the first frame, or give --init x,y,w,h")
    return np.array([x1, y1, x2 - x1, y2 - y1])

# -----------------------------------------------------------------------------
# Frames out: annotated H.264 mp4, live view, progress line


def font(height):
    return ImageFont.load_default(size=max(12, height // 28))


def annotate(frame, box, score, index, typeface):
    """The frame with the box, its score and the frame index drawn on it."""
    im = Image.fromarray(frame)
    d = ImageDraw.Draw(im)
    x, y, w, h = box
    d.rectangle([x, y, x + w, y + h], outline=(255, 48, 48), width=max(2, min(im.size) // 180))
    label = f"frame {index}  score {score:.2f}"
    d.rectangle(d.textbbox((4, 4), label, font=typeface), fill=(0, 0, 0))
    d.text((4, 4), label, fill=(255, 255, 255), font=typeface)
    return np.asarray(im)


class LiveView:
    """`--show`: the annotated frames in a matplotlib window; closing the window only stops the view."""

    def __init__(self):
        import matplotlib.pyplot as plt
        self.plt = plt
        plt.ion()
        self.fig, ax = plt.subplots()
        ax.axis('off')
        self.ax, self.image = ax, None

    def show(self, frame):
        if not self.plt.fignum_exists(self.fig.number):
            return
        if self.image is None:
            self.image = self.ax.imshow(frame)
        self.image.set_data(frame)
        self.plt.pause(0.001)


class Progress:
    """One updating line: frames done, fps, ETA (when the frame count is known)."""

    def __init__(self, total):
        self.total, self.start, self.shown = total, time.perf_counter(), 0.0

    def step(self, done):
        now = time.perf_counter()
        if now - self.shown < 0.5 and done != self.total:
            return
        self.shown, fps = now, done / max(now - self.start, 1e-9)
        line = f"\rtracking: frame {done}" + (f"/{self.total}" if self.total else "") + f"  {fps:.1f} fps"
        if self.total:
            line += f"  ETA {time_text((self.total - done) / max(fps, 1e-9))}"
        print(line + "   ", end='', file=sys.stderr, flush=True)

    def end(self):
        if self.shown:  # end the updating line
            print(file=sys.stderr)


def time_text(seconds):
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"

# -----------------------------------------------------------------------------
# The tracking run


def track(tracker, frames, out_path, init=None, fps=30, show=False, progress=True):
    """Track through `frames` (a Frames or any iterable of uint8 (H,W,3)), writing the annotated mp4.

    init: x,y,w,h of the first frame, or None to draw it. Returns boxes (T, 4), scores (T,), seconds.
    """
    boxes, scores = [], []
    view = LiveView() if show else None
    bar = Progress(getattr(frames, 'count', None)) if progress else None
    typeface = None

    def annotated():
        nonlocal typeface
        for i, frame in enumerate(frames):
            if i == 0:
                box = check_inside(draw_box(frame) if init is None else np.asarray(init, np.float64), frame)
                tracker.init(frame, box)
                score, typeface = 1.0, font(frame.shape[0])
            else:
                box, score = tracker.update(frame)
            boxes.append(box)
            scores.append(score)
            out = annotate(frame, box, score, i, typeface)
            if view:
                view.show(out)
            if bar:
                bar.step(i + 1)
            yield out

    start = time.perf_counter()
    try:
        write_mp4(out_path, annotated(), fps)
    except BaseException:
        if os.path.exists(f"{out_path}.tmp"):
            os.remove(f"{out_path}.tmp")
        raise
    finally:
        if bar:
            bar.end()
    if not boxes:
        os.remove(out_path)  # an mp4 of no frames
        raise SystemExit(f"error: {getattr(frames, 'path', 'the input')} has no decodable video frames")
    return np.array(boxes), np.array(scores), time.perf_counter() - start


# -----------------------------------------------------------------------------
# The demo, the benchmark and the command line


def newest_weights(runs='runs'):
    """The model of the newest training run: runs/latest names its folder; export.pt, else ckpt.pt."""
    latest = os.path.join(runs, 'latest')
    run_dir = None
    if os.path.isdir(latest):
        run_dir = latest
    elif os.path.isfile(latest):
        with open(latest) as f:
            name = f.read().strip()
        run_dir = name if os.path.isdir(name) else os.path.join(runs, name)
    for file in ('export.pt', 'ckpt.pt'):
        if run_dir and os.path.isfile(os.path.join(run_dir, file)):
            return os.path.join(run_dir, file)
    raise SystemExit(f"error: no trained model in {runs}/ (no {latest}): run `python train.py` first, "
                     f"or give a video and --weights")


def demo(args):
    """The second half of `python train.py && python track.py`: a synthetic test clip, tracked."""
    weights = args.weights or newest_weights()
    tracker = load_tracker(weights, args.device, args.dtype, args.backbone, args.res)
    clip = open_dataset('synthetic', split='test')[0]
    os.makedirs('demo', exist_ok=True)
    video = os.path.join('demo', f"{clip.name}.mp4")
    write_mp4(video, (clip.frame(i) for i in range(len(clip))), 30)
    out = args.out or os.path.join('demo', f"{clip.name}_lorat.mp4")
    print(f"demo: {weights} on {video} ({len(clip)} frames)")
    boxes, scores, seconds = track(tracker, Frames(video), out, init=clip.boxes[0], fps=30, show=args.show)
    if args.boxes:
        write_text_atomic(args.boxes, box_lines(boxes))  # pytracking's result format
    score = curve_scores([sequence_curves(np.asarray(boxes), clip.boxes, clip.visible, 'synthetic')])  # pytracking's rules
    print(f"{len(boxes) / seconds:.1f} fps end to end")
    print(f"annotated video: {out}")
    print(f"success AUC against the ground truth: {score['AUC']:.1f}% (precision@20px {score['P']:.1f}%)")


def time_forward(model, device):
    """Accumulate the seconds spent inside model.forward (hooks; synchronized on a GPU)."""
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


def benchmark(args):
    """fps end to end (decode, crop, forward, box, draw, encode) on a 640x360 clip, random weights."""
    device = resolve_device(args.device)
    clip = synthetic_clip(0, length=max(args.frames, 2), size=(640, 360))
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, 'clip.mp4')
        write_mp4(video, (clip.frame(i) for i in range(len(clip))), 30)
        print(f"benchmark: {len(clip)} frames 640x360, device {device}, {torch.get_num_threads()} threads")
        for size, res in [('T', 112), ('B', 224)]:
            for name in ('fp32', 'bf16'):
                tracker = Tracker(lorat.build_model(size, res, lora_rank=0), device, DTYPES[name])
                tracker.init(clip.frame(0), clip.boxes[0])
                tracker.update(clip.frame(1))  # warm-up: kernel selection, allocator
                spent = time_forward(tracker.model, device)
                boxes, _, seconds = track(tracker, Frames(video), os.path.join(tmp, 'out.mp4'),
                                          init=clip.boxes[0], progress=False)
                forward = spent[0] / (len(boxes) - 1)
                print(f"{size}-{res} {name}: {len(boxes) / seconds:6.1f} fps end to end, forward {forward * 1e3:7.1f} ms, "
                      f"outside the forward {(1 - spent[0] / seconds) * 100:4.1f}% of the time")


def output_path(video, out=None):
    """The annotated video: `out`, or <input name>_lorat.mp4 in the current folder (the input's own folder
    may be a read-only dataset); never the input itself (the same file once links are resolved)."""
    name = os.path.basename(video.rstrip('/' + os.sep))
    out = out or (name if os.path.isdir(video) else os.path.splitext(name)[0]) + '_lorat.mp4'
    return refuse_the_input(out, video, '--out')


def refuse_the_input(path, video, flag):
    if os.path.realpath(path) == os.path.realpath(video) or (os.path.exists(path) and os.path.samefile(path, video)):
        raise SystemExit(f"error: {flag} {path} is the input video itself: give another file")
    return path


def join_init(argv):
    """`--init -20,5,40,40` -> `--init=-20,5,40,40`: argparse would take a negative x for an option."""
    out, rest = [], iter(argv)
    for a in rest:
        out.append(f"--init={next(rest, '')}" if a == '--init' else a)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Track one object through a video with LoRAT.")
    p.add_argument('video', nargs='?', help="video file (mp4/mov/avi/mkv...) or folder of images; "
                                            "none: the synthetic demo with the newest run")
    p.add_argument('--init', help="first-frame box x,y,w,h in pixels (default: draw it)")
    p.add_argument('--weights', help="train.py checkpoint, merged export or official LoRAT file "
                                     "(default for the demo: the newest run in runs/)")
    p.add_argument('--backbone', help="DINOv2 weights, for official LoRAT files and LoRA-only checkpoints")
    p.add_argument('--res', type=int, help="resolution of an official file (224 or 378; default from its name)")
    p.add_argument('--out', help="annotated video (default: <input name>_lorat.mp4 in the current folder)")
    p.add_argument('--boxes', help="write the boxes here, one x,y,w,h line per frame")
    p.add_argument('--fps', type=float, default=30, help="frame rate of an image folder's output (default 30)")
    p.add_argument('--show', action='store_true', help="show the tracking live")
    p.add_argument('--device', default='cpu', help="cpu, cuda or cuda:N")
    p.add_argument('--threads', type=int, help="CPU threads of the model (default: all cores but one, "
                                               "which is left to decoding and encoding the video)")
    p.add_argument('--dtype', choices=DTYPES, help="default: bf16 on cuda (fp16 without bf16), fp32 on cpu (measured faster here)")
    p.add_argument('--benchmark', action='store_true', help="fps of T and B-224, fp32 and bf16, on a 640x360 clip")
    p.add_argument('--frames', type=int, default=20, help="benchmark clip length")
    args = p.parse_args(join_init(sys.argv[1:] if argv is None else argv))
    args.device = resolve_device(args.device)
    args.dtype = args.dtype or default_dtype(args.device)
    if args.show and not has_display():
        raise SystemExit("error: --show needs a display, and none was found (no DISPLAY): drop --show")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cpu':  # a busy core stalls every parallel op of the model: leave one to the video codecs
        torch.set_num_threads(args.threads or max(1, torch.get_num_threads() - 1))
    if args.benchmark:
        return benchmark(args)
    if args.video is None:
        return demo(args)
    init = parse_box(args.init) if args.init else None
    if init is None and not has_display():
        raise SystemExit("error: no display to draw the first box on: give it with --init x,y,w,h "
                         "(pixels of the first frame)")
    frames = Frames(args.video)
    out = output_path(args.video, args.out)
    if args.boxes:
        refuse_the_input(args.boxes, args.video, '--boxes')
    if args.weights is None:
        args.weights = newest_weights()
    tracker = load_tracker(args.weights, args.device, args.dtype, args.backbone, args.res)
    fps = frames.fps or Fraction(args.fps).limit_denominator(1001)
    boxes, scores, seconds = track(tracker, frames, out, init, fps, args.show)
    if args.boxes:
        write_text_atomic(args.boxes, box_lines(boxes))  # pytracking's result format
        print(f"boxes: {args.boxes}")
    print(f"{len(boxes)} frames, {len(boxes) / seconds:.1f} fps end to end "
          f"({tracker.cfg.size}-{tracker.cfg.res}, {args.device}, {args.dtype})")
    print(f"annotated video: {out}")


if __name__ == '__main__':
    main()
