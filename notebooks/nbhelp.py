"""What the notebooks share: `where(f)` prints the live file, line and source of a project function;
`train_run` and `evaluate_synthetic` run train.py and evaluate.py in fresh processes; `rel` and `tidy`
keep this machine's absolute paths out of the saved outputs."""
import csv
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository


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
