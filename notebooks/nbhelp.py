"""What the notebooks share: `where(f)` prints the live file, line and source of a project function;
`train_run` and `evaluate_synthetic` run train.py and evaluate.py in fresh processes; `rel` and `tidy`
keep this machine's absolute paths out of the saved outputs; `contrast`, `verdict` and `ema` are how
notebooks 02 and 03 read their seeds (tested in tests/test_notebooks.py)."""
import csv
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository


def mean_se(values):
    """-> (mean, standard error of the mean) of a flat list of numbers (s.e. 0 for a single value)."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def contrast(a, b):
    """Two variants measured on the same cells: a[s][c], b[s][c] for seed s (one training run each) and
    cell c (a held-out clip; or a single number per seed). -> dict(diff, se, n, per_seed, resolved):
    diff: the mean of a - b over every (seed, cell); se: its standard error over those cells;
    per_seed: each seed's mean difference; resolved: |diff| > 2 se AND every seed's difference has
    diff's sign (each seed is an independent training run, so one lucky seed cannot carry it)."""
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError("contrast: a and b must hold the same seeds and cells")
    cells = [[float(x) - float(y) for x, y in zip(xs, ys)] for xs, ys in zip(a, b)]
    diff, se = mean_se([d for seed in cells for d in seed])
    per_seed = [sum(seed) / len(seed) for seed in cells]
    resolved = len(per_seed) > 1 and abs(diff) > 2 * se and all(d * diff > 0 for d in per_seed)
    return dict(diff=diff, se=se, n=sum(map(len, cells)), per_seed=per_seed, resolved=resolved)


def verdict(c, paper_sign):
    """A `contrast` against the paper's direction (+1: a above b, -1: below) ->
    'reproduced', 'contradicted' or 'not resolved'."""
    if not c['resolved']:
        return 'not resolved'
    return 'reproduced' if c['diff'] * paper_sign > 0 else 'contradicted'


def ema(values, smoothing=0.9):
    """A training curve's smoothing (TensorBoard's): an exponential moving average, debiased so that
    the first values are not pulled towards 0."""
    out, avg = [], 0.0
    for k, v in enumerate(values, 1):
        avg = smoothing * avg + (1 - smoothing) * float(v)
        out.append(avg / (1 - smoothing ** k))
    return out


def where(obj, show=True):
    """Print where `obj` lives (file:line) and, if `show`, its source."""
    obj = inspect.unwrap(obj)  # through decorators such as @torch.no_grad()
    lines, start = inspect.getsourcelines(obj)
    print(f"{Path(inspect.getsourcefile(obj)).name}:{start}  {obj.__qualname__}")
    if show:
        print(''.join(lines))


def rel(path):
    """`path` relative to the repository when it lies inside it (what a saved output shows), else as given."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def tidy(text):
    """A script's output with the repository's absolute path cut from every path in it."""
    return text.replace(str(ROOT) + os.sep, '')


def train_run(out, name, *flags, show=3, env=None):
    """`python train.py --out OUT --name NAME FLAGS` in a fresh process, from step 0 (an old run of that
    name is removed: train.py would append to its log) -> (run folder, peak RSS in GB, seconds).
    Its output goes to <run>/train.txt, of which the last `show` lines are printed; a failure raises
    with its error. The peak RSS is the largest of the process and its data workers (wait4's ru_maxrss)."""
    run = Path(out) / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    t0 = time.time()
    with open(run / 'train.txt', 'w') as log:
        proc = subprocess.Popen([sys.executable, 'train.py', '--out', str(out), '--name', name, *map(str, flags)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 also returns the child's resource usage
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds, output = time.time() - t0, tidy((run / 'train.txt').read_text())
    if proc.returncode:
        raise RuntimeError(f"train.py {' '.join(map(str, flags))} failed:\n{output[-2000:]}")
    if show:
        print('\n'.join(output.strip().splitlines()[-show:]) + f"\n[{seconds:.0f} s]")
    return run, usage.ru_maxrss * 1024 / 1e9, seconds  # ru_maxrss is in KiB on Linux


def evaluate_synthetic(weights, out, num, length, workers=1, backbone=None):
    """`python evaluate.py run --dataset synthetic` on `num` held-out clips of `length` frames, results in
    `out` (emptied first: `run` resumes, and would keep another model's results) -> (its scores.json
    record: AUC, P, ...; the AUC of each clip; its printed table). `backbone`: an official LoRAT file's DINOv2."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, 'evaluate.py', 'run', '--dataset', 'synthetic', '--num', str(num),
                           '--length', str(length), '--weights', str(weights), '--out', str(out), '--workers', str(workers)]
                          + (['--backbone', str(backbone)] if backbone else []), cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"evaluate.py run --weights {rel(weights)} failed:\n{tidy(done.stderr)[-2000:]}")
    scores = json.loads((out / 'report' / 'scores.json').read_text())[0]
    with open(out / 'report' / 'per_sequence.csv') as f:
        per_clip = [float(row['AUC']) for row in csv.DictReader(f)]
    return scores, per_clip, tidy(done.stdout)
