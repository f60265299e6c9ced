"""
Track one object through a video with LoRAT: the tracker a person runs on their own video.

    python track.py video.mp4 --init 120,80,60,40     # box x,y,w,h on the first frame; or draw it
    python track.py frames/ --init ... --boxes b.txt   # a folder of images; boxes in pytracking format
    python track.py video.mp4 --weights LoRAT_B_224.bin --backbone dinov2_vitb14_pretrain.pth
    python track.py                                    # the demo: the newest run on the held-out synthetic clips
    python track.py --strip demo/strip.png             # ... and 6 frames of its video side by side, as a picture

Inference follows the paper: the template is cropped once from the first frame; every later frame is
searched in a crop around the previous box; the score map is blended with a Hanning window (a prior
that the target moved little), the best cell's box is mapped back to the image. No template update,
no re-detection: what the one-stream ViT sees is all there is.
"""
import os
import sys
import time
from fractions import Fraction

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

import common
import lorat
from common import box_lines, write_mp4, write_text_atomic
from data import (as_tensor, box_from_crop, box_to_crop, crop, crop_params, image_mean, open_dataset, rgb_image,
                  standardize_crops)

MIN_SIZE = 10  # px: the kept box's w and h are widened to >= 10 about its center before the search crop
HANN_WEIGHT = 0.55  # s' = 0.55 * s + 0.45 * hann

# -----------------------------------------------------------------------------
# The tracker


class Tracker:
    """LoRAT's inference, as the authors' evaluation runs it: a fixed first-frame template, a search crop around
    the kept box, the Hanning-blended best cell's box mapped back through the crop. `init(frame, box_xywh)` once,
    then `update(frame) -> (box_xywh, score)` per frame. Frames are uint8 (H, W, 3), each uploaded once and cropped
    on the tracker's device. The model keeps fp32 weights and runs under autocast when `dtype` is fp16 or bf16.
    After each update `last` holds the sigmoid score map, the blended map and the crop parameters, for notebooks."""

    def __init__(self, model, device='cpu', dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.float().to(self.device).eval()
        self.cfg = model.cfg
        hann = torch.hann_window(self.cfg.search_grid, periodic=False)
        self.hann = torch.outer(hann, hann).to(self.device)  # (H, W), 1 at the center, 0 at the border
        self.last = {}

    def upload(self, frame):
        return as_tensor(frame).to(self.device)  # (3, H, W) uint8: one copy to the device per frame

    def network(self, x):
        """The one-stream forward under autocast (fp32 weights), or plain fp32."""
        with common.autocast(self.device, self.dtype):
            logits, boxes = self.model(self.z, standardize_crops(x)[None], self.z_mask)
        return logits[0].float(), boxes[0].float()  # (H, W), (H, W, 4) normalized xyxy

    @torch.inference_mode()
    def init(self, frame, box_xywh):
        """Crop the template (area factor 2) and mark the template cells the box covers (foreground),
        the box mapped through the crop's adjusted parameters."""
        cfg = self.cfg
        check_box(box_xywh, frame)
        self.frame_shape = frame.shape
        image = self.upload(frame)
        self.fill = image_mean(image)  # padding of every crop of this sequence: the template frame's mean
        z, s, t = crop(image, *crop_params(box_xywh, cfg.template_factor, cfg.template_size), cfg.template_size, self.fill)
        self.z = standardize_crops(z)[None]  # (1, 3, Tz, Tz)
        x, y, w, h = (float(v) for v in box_xywh)
        box_z = box_to_crop([x, y, x + w, y + h], s, t)  # template-crop pixels
        self.z_mask = lorat.template_fg_mask(box_z[None], cfg.template_grid, cfg.patch_size).to(self.device)
        self.box = np.array([x, y, w, h])  # the kept box: unclipped on frame 0

    def search_params(self):
        """The search window (s, t) around the kept box, its w and h widened to >= 10 px about its center."""
        x, y, w, h = self.box
        cx, cy, w, h = x + w / 2, y + h / 2, max(w, MIN_SIZE), max(h, MIN_SIZE)
        return crop_params((cx - w / 2, cy - h / 2, w, h), self.cfg.search_factor, self.cfg.search_size)

    @torch.inference_mode()
    def update(self, frame):
        """One frame: crop, forward, Hanning-blended argmax, box back to the image and clipped (the
        result). The kept box follows it unless it is empty or off the image (the target left the view)."""
        S = self.cfg.search_size
        if frame.shape != self.frame_shape:  # boxes and the template's padding belong to the first frame's size
            raise ValueError(f"a {frame.shape[1]}x{frame.shape[0]} frame after a {self.frame_shape[1]}x{self.frame_shape[0]} "
                             f"first frame: give every frame of a video one size")
        x, s, t = crop(self.upload(frame), *self.search_params(), S, self.fill)
        score_logits, boxes = self.network(x)
        score = score_logits.sigmoid()  # (H, W)
        blended = HANN_WEIGHT * score + (1 - HANN_WEIGHT) * self.hann
        k = blended.argmax()
        best = torch.cat([boxes.flatten(0, 1)[k], score.flatten()[k, None]]).cpu().double().numpy()  # the one copy back
        img_h, img_w = frame.shape[:2]
        box = box_from_crop(best[:4] * S, s, t).clip(0, [img_w, img_h, img_w, img_h])  # image xyxy, float64
        result = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        if box[0] < box[2] and box[1] < box[3]:  # else the previous kept box stays: search a normal window
            self.box = result
        self.last = dict(score_map=score, blended=blended, params=(s, t))
        return result, float(best[4])


def check_box(box_xywh, frame):
    """A first box the tracker can start from: finite, w and h > 0, overlapping the frame (else ValueError)."""
    H, W = frame.shape[:2]
    x, y, w, h = (float(v) for v in box_xywh)
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        raise ValueError(f"first box {x:g},{y:g},{w:g},{h:g} is not a box: give x,y,w,h with w and h > 0")
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        raise ValueError(f"first box {x:g},{y:g},{w:g},{h:g} lies outside the {W}x{H} first frame: give x,y,w,h inside it")


def load_tracker(weights, device='cpu', dtype=torch.float32, backbone=None, res=None):
    """A Tracker from any weights lorat.load_model reads: a train.py checkpoint, a merged export, or an
    official LoRAT release (+ its DINOv2 `backbone`). `res` must agree with the checkpoint's."""
    dtype = common.DTYPES[dtype] if isinstance(dtype, str) else dtype
    model = lorat.load_model(weights, backbone, 'cpu', res)
    if res is not None and model.cfg.res != int(res):
        raise ValueError(f"{weights} is a {model.cfg.size}-{model.cfg.res} model, not resolution {res}: "
                         f"drop --res (it comes from the checkpoint)")
    return Tracker(model, common.resolve_device(device), dtype)

# -----------------------------------------------------------------------------
# Frames in: a video (PyAV, one frame at a time) or a folder of images; the first box, --init or drawn


class Frames:
    """The frames of a video file or an image folder, decoded one at a time (never all in memory); `fps`
    (Fraction, None for a folder) and `count` (None when the container does not say) up front."""

    def __init__(self, path):
        self.path, self.files, self.fps, self.count, self.rotation = path, None, None, None, 0
        if os.path.isdir(path):
            self.files = sorted(os.path.join(path, f) for f in os.listdir(path)
                                if f.lower().endswith(('.jpg', '.jpeg', '.png')))
            if not self.files:
                raise FileNotFoundError(f"folder {path} holds no .jpg or .png images")
            self.count = len(self.files)
            self.check_sizes()
            return
        if not os.path.exists(path):
            raise FileNotFoundError(f"video {path} does not exist: check the path")
        if not os.path.isfile(path):
            raise ValueError(f"{path} is neither a video file nor a folder of images")
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                self.fps = stream.average_rate or stream.guessed_rate
                self.count = stream.frames or None
        except (av.error.FFmpegError, IndexError, OSError) as e:
            raise ValueError(f"cannot read video {path}: not a video or corrupt ({type(e).__name__})") from None

    def __iter__(self):
        return self.images() if self.files else self.video()

    def check_sizes(self):
        """Every image of a folder has the first one's size (headers only): the boxes live in one coordinate system."""
        first = None
        for f in self.files:
            try:
                with Image.open(f) as im:
                    size = im.size
            except OSError:
                raise ValueError(f"cannot read image {f}: corrupt or not an image; remove or replace it") from None
            first = first or (f, size)
            if size != first[1]:
                raise ValueError(f"folder {self.path} mixes frame sizes ({os.path.basename(first[0])} is "
                                 f"{first[1][0]}x{first[1][1]}, {os.path.basename(f)} is {size[0]}x{size[1]}): the boxes "
                                 f"would mix coordinate systems; resize the frames to one size first")

    def images(self):
        for f in self.files:
            try:
                with Image.open(f) as im:
                    image = np.asarray(rgb_image(im))  # 16-bit PNGs scaled, not clipped to white
            except OSError:
                raise ValueError(f"cannot read image {f}: corrupt or not an image") from None
            yield image

    def video(self):
        n = 0
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = 'AUTO'  # decode on the side while the model runs
            try:
                for frame in container.decode(stream):
                    n += 1
                    image = frame.to_ndarray(format='rgb24')  # (H, W, 3) uint8
                    turns = round((frame.rotation or 0) / 90) % 4
                    if turns and not self.rotation:
                        self.rotation = turns * 90
                        print(f"\nwarning: {self.path} carries a rotation tag ({turns * 90} degrees): its frames are turned "
                              f"upright, as players show them; --init, the boxes and the output are upright", file=sys.stderr)
                    yield np.ascontiguousarray(np.rot90(image, turns)) if turns else image
            except av.error.FFmpegError as e:
                if n == 0:
                    raise ValueError(f"cannot decode video {self.path}: corrupt ({type(e).__name__})") from None
                listed = f" (its index lists {self.count} frames)" if self.count else ''
                print(f"\nwarning: {self.path} is damaged after frame {n}{listed}; tracked the {n} frames before", file=sys.stderr)
                return
        if self.count and n < self.count:
            print(f"\nwarning: {self.path}'s index lists {self.count} frames but only {n} decode (a truncated or "
                  f"damaged file): tracked those {n}", file=sys.stderr)


def has_display():
    if os.environ.get('MPLBACKEND', '').lower() == 'agg':
        return False
    return sys.platform in ('darwin', 'win32') or bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


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
        raise ValueError("no box was drawn: drag a box on the first frame, or give --init x,y,w,h")
    return np.array([x1, y1, x2 - x1, y2 - y1])

# -----------------------------------------------------------------------------
# Frames out: annotated H.264 mp4, strip picture, live view


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


STRIP_FRAMES, STRIP_HEIGHT = 6, 240  # --strip: 6 frames side by side, each at most 240 px high


def write_strip(path, frames, boxes, scores, count=STRIP_FRAMES):
    """`count` evenly spaced frames of a tracked video, annotated as in its video, side by side in one PNG:
    a picture of a run. `frames` is read again (a Frames decodes anew), up to the last frame shown."""
    picks = set(np.linspace(0, len(boxes) - 1, min(count, len(boxes))).round().astype(int).tolist())
    panels, typeface = [], None
    for i, frame in zip(range(max(picks) + 1), frames):
        if i in picks:
            typeface = typeface or font(frame.shape[0])
            panel = Image.fromarray(annotate(frame, boxes[i], scores[i], i, typeface))
            if panel.height > STRIP_HEIGHT:
                panel = panel.resize((round(panel.width * STRIP_HEIGHT / panel.height), STRIP_HEIGHT), Image.LANCZOS)
            panels.append(panel)
    strip = Image.new('RGB', (sum(p.width for p in panels), panels[0].height))
    for k, panel in enumerate(panels):
        strip.paste(panel, (sum(p.width for p in panels[:k]), 0))
    common.write_atomic(path, lambda tmp: strip.save(tmp, format='PNG'))


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


# -----------------------------------------------------------------------------
# The tracking run


def track(tracker, frames, out_path, init=None, fps=30, show=False, progress=True):
    """Track through `frames` (a Frames or any iterable of uint8 (H,W,3)) into the annotated mp4 `out_path`;
    `init`: x,y,w,h of the first frame, None to draw it. -> boxes (T, 4), scores (T,), seconds."""
    boxes, scores = [], []
    view = LiveView() if show else None
    bar = common.Progress(getattr(frames, 'count', None)) if progress else None
    typeface = None

    def annotated():
        nonlocal typeface, init
        for i, frame in enumerate(frames):
            if i == 0 and init is None:
                init = draw_box(frame)
            try:
                if i == 0:
                    box = np.asarray(init, np.float64)
                    tracker.init(frame, box)
                    score, typeface = 1.0, font(frame.shape[0])
                else:
                    box, score = tracker.update(frame)
            except ValueError as e:  # a first box off the frame (named as --init), a frame of another size
                where = '--init' if i == 0 else f"{getattr(frames, 'path', 'the input')}, frame {i}"
                raise ValueError(f"{where}: {e}") from None
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
        write_mp4(out_path, annotated(), fps)  # atomic: a failure or Ctrl-C leaves no half-written video
    finally:
        if bar:
            bar.end()
    if not boxes:
        os.remove(out_path)  # an mp4 of no frames
        raise ValueError(f"{getattr(frames, 'path', 'the input')} has no decodable video frames")
    return np.array(boxes), np.array(scores), time.perf_counter() - start


# -----------------------------------------------------------------------------
# The demo and the command line


def newest_weights(runs='runs'):
    """The model of the newest training run: runs/latest names its folder; export.pt, else ckpt.pt."""
    latest = os.path.join(runs, 'latest')
    if not os.path.exists(latest):
        raise FileNotFoundError(f"no trained model in {runs}/ (no {latest}): run `python train.py` first, "
                                f"or give a video and --weights")
    run_dir = latest
    if not os.path.isdir(latest):
        with open(latest) as f:
            name = f.read().strip()
        run_dir = name if os.path.isdir(name) else os.path.join(runs, name)
    for file in ('export.pt', 'ckpt.pt'):
        if os.path.isfile(os.path.join(run_dir, file)):
            return os.path.join(run_dir, file)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{latest} names the run {run_dir}, which no longer exists: give --weights FILE, "
                                f"or train again (`python train.py`)")
    raise FileNotFoundError(f"the newest run {run_dir} holds no export.pt or ckpt.pt (stopped before its first "
                            f"checkpoint?): give --weights FILE, or resume it with train.py --resume {run_dir}")


def demo(args, clips=20, length=None):
    """The second half of `python train.py && python track.py`: the first held-out synthetic clip tracked into
    demo/ (and a --strip picture), then the success AUC over the `clips` held-out clips (20: the test split), by
    `python evaluate.py run --dataset synthetic` in this process: that command, run afterwards, finds them done."""
    weights = args.weights or newest_weights()
    tracker = load_tracker(weights, args.device, args.dtype, args.backbone, args.res)
    clip = open_dataset('synthetic', split='test', num=clips, **({'length': length} if length else {}))[0]
    video = os.path.join('demo', f"{clip.name}.mp4")
    write_mp4(video, (clip.frame(i) for i in range(len(clip))), 30)  # atomic, into a demo/ made if need be
    out = args.out or os.path.join('demo', f"{clip.name}_lorat.mp4")
    print(f"demo: {weights} on {video} ({len(clip)} frames)")
    boxes, scores, seconds = track(tracker, Frames(video), out, init=clip.boxes[0], fps=30, show=args.show)
    if args.boxes:
        write_text_atomic(args.boxes, box_lines(boxes))  # pytracking's result format
    if args.strip:
        write_strip(args.strip, Frames(video), boxes, scores)
        print(f"strip: {args.strip}")
    print(f"{len(boxes) / seconds:.1f} fps end to end")
    print(f"annotated video: {out}")
    import evaluate  # the file above this one (it imports track.py), for the demo's score only
    argv = ['run', '--dataset', 'synthetic', '--num', str(clips), '--weights', weights, '--device', args.device,
            '--dtype', args.dtype]
    for flag, value in (('--length', length), ('--backbone', args.backbone), ('--res', args.res)):
        argv += [flag, str(value)] if value else []
    print(f"scoring the {clips} held-out clips: python evaluate.py {' '.join(argv)}", file=sys.stderr)
    figures = evaluate.main(argv)[0]['figures']
    print(f"held-out success AUC over the {clips} synthetic test clips: {figures['AUC']:.1f}% "
          f"(precision@20px {figures['P']:.1f}%)")


def output_path(video, out=None):
    """The annotated video: `out`, or <input name>_lorat.mp4 in the current folder (the input's own folder
    may be a read-only dataset); never the input itself (the same file once links are resolved)."""
    name = os.path.basename(video.rstrip('/' + os.sep))
    out = out or (name if os.path.isdir(video) else os.path.splitext(name)[0]) + '_lorat.mp4'
    return refuse_the_input(out, video, '--out')


def refuse_the_input(path, video, flag):
    if os.path.realpath(path) == os.path.realpath(video) or (os.path.exists(path) and os.path.samefile(path, video)):
        raise ValueError(f"{flag} {path} is the input video itself: give another file")
    return path


def join_init(argv):
    """`--init -20,5,40,40` -> `--init=-20,5,40,40`: argparse would take a negative x for an option. Joined only
    with a value: a missing one, or the next option, is left for argparse to call missing."""
    out = list(argv)
    for k in range(len(out) - 2, -1, -1):  # from the end: a join leaves the indices before it as they are
        if out[k] == '--init' and not out[k + 1].startswith('--') and out[k + 1] != '-h':
            out[k:k + 2] = [f"--init={out[k + 1]}"]
    return out


def parse_args(argv=None):
    p = common.Parser(description="Track one object through a video with LoRAT.")
    p.add_argument('video', nargs='?', help="video file (mp4/mov/avi/mkv...) or folder of images; "
                                            "none: the synthetic demo with the newest run")
    p.add_argument('--init', type=common.box_xywh, help="first-frame box x,y,w,h in pixels (default: draw it)")
    p.add_argument('--weights', help="train.py checkpoint, merged export or official LoRAT file "
                                     "(default for the demo: the newest run in runs/)")
    p.add_argument('--backbone', help="DINOv2 weights, for official LoRAT files and LoRA-only checkpoints")
    p.add_argument('--res', type=lorat.resolution, help="resolution of an official file (224 or 378; default from its name)")
    p.add_argument('--out', help="annotated video (default: <input name>_lorat.mp4 in the current folder)")
    p.add_argument('--boxes', help="write the boxes here, one x,y,w,h line per frame")
    p.add_argument('--strip', help=f"write a PNG picture of the run here: {STRIP_FRAMES} evenly spaced annotated frames "
                                   f"side by side (e.g. demo/strip.png)")
    p.add_argument('--fps', type=common.positive_float, default=30, help="frame rate of an image folder's output (default 30)")
    p.add_argument('--show', action='store_true', help="show the tracking live")
    p.add_argument('--device', default='cpu', help="cpu, cuda or cuda:N")
    p.add_argument('--threads', type=common.positive_int, help="CPU threads of the model (default: all cores but one, "
                                                                "which is left to decoding and encoding the video)")
    p.add_argument('--dtype', choices=common.DTYPES, help="inference precision: fp16 or bf16 autocast over fp32 weights "
                   "(LoRA merged in fp32), or plain fp32. Default: fp16 on cuda (the authors' evaluation), fp32 on cpu")
    args = p.parse_args(join_init(sys.argv[1:] if argv is None else argv))
    args.device = common.resolve_device(args.device)
    args.dtype = args.dtype or common.default_dtype(args.device, training=False)
    if args.show and not has_display():
        raise ValueError("--show needs a display, and none was found (no DISPLAY): drop --show")
    return args


# a damaged photo of the demo, an unreadable file: one line; Ctrl-C: the half-written video is removed (write_atomic)
@common.main_errors(ctrl_c="stopped (Ctrl-C): no output was written")
def main(argv=None):
    return run(parse_args(argv))


def run(args):
    if args.device == 'cpu':  # a busy core stalls every parallel op of the model: leave one to the video codecs
        torch.set_num_threads(args.threads or max(1, torch.get_num_threads() - 1))
    if args.strip:
        common.check_writable(args.strip, '--strip')
    if args.video is None:
        return demo(args)
    if args.init is None and not has_display():
        raise ValueError("no display to draw the first box on: give it with --init x,y,w,h "
                         "(pixels of the first frame)")
    frames = Frames(args.video)
    out = common.check_writable(output_path(args.video, args.out), '--out')
    if args.boxes:
        refuse_the_input(args.boxes, args.video, '--boxes')
        common.check_writable(args.boxes, '--boxes')
        if os.path.realpath(args.boxes) == os.path.realpath(out):
            raise ValueError(f"--boxes {args.boxes} is the --out video too: the boxes would replace the video; "
                             f"give them another file (e.g. boxes.txt)")
    if args.strip:
        refuse_the_input(args.strip, args.video, '--strip')
        if os.path.realpath(args.strip) in (os.path.realpath(out), os.path.realpath(args.boxes or out)):
            raise ValueError(f"--strip {args.strip} is also the --out video or the --boxes file: give it another file "
                             f"(e.g. strip.png)")
    if args.weights is None:
        args.weights = newest_weights()
    tracker = load_tracker(args.weights, args.device, args.dtype, args.backbone, args.res)
    fps = frames.fps or Fraction(args.fps).limit_denominator(1001)
    boxes, scores, seconds = track(tracker, frames, out, args.init, fps, args.show)  # --init checked by common.box_xywh
    if args.boxes:
        write_text_atomic(args.boxes, box_lines(boxes))  # pytracking's result format
        print(f"boxes: {args.boxes}")
    if args.strip:
        write_strip(args.strip, frames, boxes, scores)
        print(f"strip: {args.strip}")
    print(f"{len(boxes)} frames, {len(boxes) / seconds:.1f} fps end to end "
          f"({tracker.cfg.size}-{tracker.cfg.res}, {args.device}, {args.dtype})")
    print(f"annotated video: {out}")


if __name__ == '__main__':
    main()
