"""
What the five scripts share: files written whole, hashes, cores and devices, precision, timing, checked
command-line values, one-line errors. Kept out of lorat.py so that lorat.py reads as the model: this file
imports nothing of the project (lorat imports it, never the reverse).
"""
import argparse
import contextlib
import errno
import hashlib
import math
import os
import random
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

# -----------------------------------------------------------------------------
# Files written whole, and their hashes


def write_atomic(path, write):
    """Write a file through `write(tmp_path)` then rename: a reader never sees half a file, and a kill
    mid-write leaves the previous file intact. Every file the scripts write whole goes through here.

    The .tmp is removed on any failure (an exception, Ctrl-C, SIGTERM: turned into SystemExit(143) while
    writing, where nothing else handles it). A file that cannot be written is an OSError of one line."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; give a file name")
    tmp = path.with_name(path.name + '.tmp')
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _sigterm_exit)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        reason = write_error(e, path)
        if reason:
            raise OSError(f"cannot write {path}: {reason}") from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def check_writable(path, flag, folder=False):
    """Before the work: `flag path` can be written (a file, or with `folder` a folder, made if need be) under
    a folder that is one and writable; else an OSError of one line."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise IsADirectoryError(f"{flag} {path} is a folder: give a file name")
    if folder and path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {path} is a file, not a folder: give a folder")
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {parent} is a file, not a folder: give a path inside a folder")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{flag} {path}: the folder {parent} is read-only: write to another folder")
    return str(path)


def _sigterm_exit(signum, frame):
    raise SystemExit(128 + signum)


def write_error(e, path):
    """An OS error while writing `path` -> '<what went wrong> — <fix>'; None for any other exception."""
    if isinstance(e, RuntimeError) and ('inline_container' in str(e) or 'file write failed' in str(e)):
        return "the write failed (is the disk full?) — free some space, or write elsewhere"
    if not isinstance(e, OSError):
        return None
    code = e.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return "the disk is full — free some space, or write elsewhere"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied (the folder {path.parent} is read-only) — write to another folder"
    if code == errno.ENOTDIR or (code == errno.EEXIST and e.filename and not os.path.isdir(e.filename)):
        return f"a part of the path is a file, not a folder ({e.filename}) — give a path inside a folder"
    if code == errno.EISDIR:
        return "it is a folder — give a file name"
    if code == errno.ENAMETOOLONG:
        return "the name is too long — give a shorter one"
    return f"{e.strerror or e} — check the path"


def file_sha256(path):
    """The sha256 of a file, read in 16 MiB pieces: what a checkpoint and a result folder record."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 24), b''):
            digest.update(block)
    return digest.hexdigest()


_SHA_CACHE = {}  # (real path, mtime_ns, size) -> sha256: a file is hashed once per change


def cached_sha256(path):
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def write_text_atomic(path, text):
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


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


def box_lines(boxes, digits=2):
    """Comma-separated x,y,w,h, one line per frame (pytracking's and both servers' result format)."""
    return ''.join(','.join(f"{v:.{digits}f}" for v in box) + '\n' for box in boxes)

# -----------------------------------------------------------------------------
# Cores: this process's share, the model's threads, the loader's workers


def available_cpus():
    """The cores this process may run on: its CPU affinity (a cluster job's share), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def default_threads(local_world, busy_loader=False):
    """This rank's share of the cores, less one for the loader when it is busy all the time (`loader_is_busy`):
    a model thread sharing a core with a busy worker makes every OpenMP barrier wait."""
    share = max(1, available_cpus() // local_world)
    return max(1, share - 1) if busy_loader else share


def sample_costs(train_set, model):
    """Seconds of one core per training sample: to make it (8 made here, after one to warm up), and to
    train on it (`train_flops` at this CPU's one-core matmul speed)."""
    train_set[0]
    start = time.perf_counter()
    for i in range(1, 9):
        train_set[i]
    data_s = (time.perf_counter() - start) / 8
    threads, a = torch.get_num_threads(), torch.ones(512, 512)  # ones: the global RNG stays untouched
    torch.set_num_threads(1)
    flops = 2 * 512 ** 3 / median_seconds(lambda: a @ a, warmup=1, iters=5)
    torch.set_num_threads(threads)
    return data_s, train_flops(model) / flops


def train_flops(model):
    """FLOPs of one sample's forward + backward: about 3 forwards of 2 FLOPs per parameter and token."""
    cfg = model.cfg
    return 3 * 2 * sum(p.numel() for p in model.parameters()) * (cfg.template_grid ** 2 + cfg.search_grid ** 2)


def loader_is_busy(data_s, model_s, cores, workers):
    """Would the loader workers be busy all the time? Yes when the model, even on just the cores the workers
    leave it, would keep them working more than half the time. data_s, model_s: seconds of one core per sample."""
    if workers == 0 or cores <= workers:
        return False
    load = (cores - workers) / model_s * data_s / workers  # the fraction of its time each worker works
    return load > 0.5


def default_workers(device, local_world):
    """DataLoader workers per rank: on CUDA the cores of this node shared by its ranks (LOCAL_WORLD_SIZE, not
    the world size of all nodes); on the CPU one."""
    return min(8, max(1, available_cpus() // local_world)) if device != 'cpu' else 1

# -----------------------------------------------------------------------------
# Devices, precision, timing


def resolve_device(device, local_rank=None):
    """'cpu', 'cuda' or 'cuda:N' checked against what is visible -> a torch device string, else a ValueError of
    one line. Under torchrun (`local_rank` given) 'cuda' is the rank's own GPU, cuda:LOCAL_RANK."""
    device = str(device)
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"--device {device}: not a device: use cpu, cuda or cuda:N") from None
    if kind not in ('cpu', 'cuda'):
        raise ValueError(f"--device {device}: this program runs on cpu or cuda (cuda:N)")
    if kind == 'cpu':
        return 'cpu'
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}, but no CUDA GPU is visible: use --device cpu")
    count, index = torch.cuda.device_count(), torch.device(device).index
    if local_rank is not None:
        if index is not None:
            raise ValueError(f"--device {device} under torchrun: each rank takes the GPU of its LOCAL_RANK; "
                             f"pass --device cuda (choose GPUs with CUDA_VISIBLE_DEVICES)")
        index = local_rank
    index = 0 if index is None else index
    if index >= count:
        raise ValueError(f"--device cuda:{index}, but only {count} CUDA GPU(s) are visible"
                         + (" (torchrun started more ranks per node than there are GPUs)" if local_rank is not None else ""))
    return f'cuda:{index}'


def median_seconds(fn, device='cpu', warmup=10, iters=50):
    """The median seconds of `fn()` over `iters` timed calls, after `warmup` untimed ones. On a GPU each call
    is synchronized before and after: kernels run asynchronously, and the clock would stop at their launch."""
    sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)
    times = []
    for k in range(warmup + iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return float(statistics.median(times))


DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}  # --dtype: the autocast precision


def autocast(device, dtype):
    """Autocast to `dtype` (a --dtype name or a torch dtype) on `device`, off for fp32: one code path for every precision."""
    dtype = DTYPES.get(dtype, dtype)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)


def default_dtype(device, training):
    """--dtype when not given: fp32 on the CPU (bf16 measured slower there). On a GPU, training: bf16 where it is
    in hardware (emulated bf16, a V100's or T4's, does not count), else fp16 with loss scaling; inference: fp16
    autocast over fp32 weights, the authors' evaluation. Training asks the current GPU: call it after set_device."""
    if torch.device(device).type != 'cuda':
        return 'fp32'
    if not training:
        return 'fp16'
    return 'bf16' if torch.cuda.is_bf16_supported(including_emulation=False) else 'fp16'

# -----------------------------------------------------------------------------
# Progress: what is done, how fast, the ETA (training, tracking a video, tracking a dataset)


def eta(seconds):
    """'m:ss', or 'h:mm:ss' from an hour on: the one ETA format of the scripts."""
    m, s = divmod(int(max(seconds, 0)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class Progress:
    """Tracking progress on stderr: frames done of `total` (None: not known), frames per second, ETA. One video:
    `step(done)` after each frame rewrites one line, at most twice a second; `end()` ends it. A dataset
    (evaluate.py): `finished(name, frames, seconds)` prints a line per sequence, `[k/N]` of N `sequences`."""

    def __init__(self, total=None, sequences=None):
        self.total, self.sequences = total, sequences
        self.start, self.shown, self.frames, self.done = time.perf_counter(), 0.0, 0, 0

    def rate(self, frames):
        """Frames per second since the start, and '  ETA m:ss' when the total is known (else '')."""
        fps = frames / max(time.perf_counter() - self.start, 1e-9)
        return fps, f"  ETA {eta((self.total - frames) / max(fps, 1e-9))}" if self.total else ''

    def step(self, done):
        now = time.perf_counter()
        if now - self.shown < 0.5 and done != self.total:
            return
        self.shown = now
        fps, left = self.rate(done)
        print(f"\rtracking: frame {done}" + (f"/{self.total}" if self.total else "") + f"  {fps:.1f} fps{left}   ",
              end='', file=sys.stderr, flush=True)

    def end(self):
        if self.shown:  # end the updating line
            print(file=sys.stderr)

    def finished(self, name, frames, seconds):
        self.done, self.frames = self.done + 1, self.frames + frames
        _, left = self.rate(self.frames)
        print(f"[{self.done}/{self.sequences}] {name}: {frames} frames, {frames / max(seconds, 1e-9):.1f} fps tracking{left}",
              file=sys.stderr, flush=True)

# -----------------------------------------------------------------------------
# Stopping at a step boundary, and every RNG's state for an exact resume


class CtrlC:
    """The first Ctrl-C (or SIGTERM, a scheduler's notice) asks the loop to stop after the current step (it
    saves and says how to resume); a second Ctrl-C stops at once. Under torchrun a press may reach a worker
    twice (forwarded by the agent, and from the terminal's process group): a repeat within `echo_s` is that
    same press. Installed only in the main thread, where Python delivers signals."""

    def __init__(self, echo_s=None):
        self.requested, self.when, self.previous = False, 0.0, {}
        self.echo_s = (2.0 if 'TORCHELASTIC_RUN_ID' in os.environ else 0.0) if echo_s is None else echo_s
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        if self.requested:
            if signum == signal.SIGINT and time.monotonic() - self.when > self.echo_s:
                raise KeyboardInterrupt
            return
        self.requested, self.when = True, time.monotonic()
        why = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        print(f"\n{why}: stopping after this step and saving a checkpoint (Ctrl-C again: stop now)", file=sys.stderr, flush=True)

    def restore(self):
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def ignore_ctrl_c(worker_id):
    """DataLoader workers leave Ctrl-C to the main process, which finishes its step first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def rng_state():
    """Every RNG a step may draw from, as tensors and plain numbers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), numpy=(kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
                 python=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


# -----------------------------------------------------------------------------
# Command-line values, checked at parse time: every numeric flag of the scripts has one of these types (--res has
# lorat.resolution, beside its table), so a bad value is one line naming the flag, before any work (argparse adds
# "argument --flag: ").


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line `error: argument --x: ...` (no usage block), like every other error."""

    def error(self, message):
        raise SystemExit(f"error: {message}")


@contextlib.contextmanager
def main_errors(ctrl_c="stopped (Ctrl-C)"):
    """Each script's `main` runs under this: a ValueError (a wrong value or file) or an OSError (a file missing,
    unreadable, unwritable) from the library ends the program with the one line `error: <message>` and status 1,
    no traceback; a Ctrl-C that reaches it, with the line `ctrl_c` (what was kept) and status 130, the shell's.
    The library itself never exits."""
    try:
        yield
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        print(ctrl_c, file=sys.stderr)
        raise SystemExit(130) from None


def _checked(convert, ok, want):
    def check(text):
        try:
            value = convert(text)
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}")
        return value
    check.__name__ = want  # argparse names the type in some messages
    return check


def _float(text):
    value = float(text)
    return value if math.isfinite(value) else None


def _int(text):
    value = int(text)
    return value if abs(value) < 2 ** 62 else None


positive_int = _checked(_int, lambda v: v > 0, "a positive integer (1, 2, ...)")
nonneg_int = _checked(_int, lambda v: v >= 0, "an integer >= 0")
seed_int = _checked(_int, lambda v: 0 <= v < 2 ** 32, "a seed: an integer in 0 .. 2^32-1")
positive_float = _checked(_float, lambda v: v > 0, "a finite number > 0")
nonneg_float = _checked(_float, lambda v: v >= 0, "a finite number >= 0")
unit_float = _checked(_float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def csv_of(item, want):
    """Comma-separated values, each checked by `item` (e.g. --workers 0,1,2)."""
    def check(text):
        try:
            return [item(v.strip()) for v in str(text).split(',')]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not {want} ({e})") from None
    return check


def sampling_weights(text):
    """--data-weights: finite numbers >= 0, comma-separated, at least one > 0."""
    values = csv_of(nonneg_float, "comma-separated weights >= 0 (e.g. 3,1)")(text)
    if not any(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every weight is 0, so nothing would be sampled: give one > 0")
    return values


MAX_BOX = 1e6  # px: no frame is larger; beyond it a box's arithmetic overflows


def box_xywh(text):
    """x,y,w,h in pixels: four finite numbers, w and h > 0, within +-1e6 px."""
    try:
        box = [float(v) for v in str(text).split(',')]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(v) and abs(v) <= MAX_BOX for v in box):
        raise argparse.ArgumentTypeError(f"{text!r} is not a box: give four numbers x,y,w,h in pixels (e.g. 120,80,60,40)")
    if box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"{text} has zero or negative size: w and h must be > 0")
    return box
