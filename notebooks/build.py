"""Build the notebooks from their Python sources, and (with --run) execute them and keep the outputs.

The sources are plain Python in the "percent" format (notebooks/src/NN_name.py): a line `# %%` opens a
code cell, `# %% [markdown]` a markdown cell whose lines are comments. Edit the source, then

    python notebooks/build.py            # write notebooks/NN_name.ipynb (no outputs)
    python notebooks/build.py --run      # ... and execute each one in full mode, saving the outputs
    python notebooks/build.py --run 03   # only the notebooks whose name contains 03
"""
import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = sorted((HERE / 'src').glob('[0-9][0-9]_*.py'))


def cells_of(source):
    """Percent-format text -> nbformat cells."""
    cells, kind, lines = [], None, []

    def flush():
        text = '\n'.join(lines).strip('\n')
        if kind == 'markdown':
            text = '\n'.join(l[2:] if l.startswith('# ') else l.lstrip('#') for l in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        elif kind == 'code' and text:
            cells.append(nbformat.v4.new_code_cell(text))

    for line in source.splitlines():
        if line.startswith('# %%'):
            flush()
            kind, lines = ('markdown' if '[markdown]' in line else 'code'), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(src):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_of(src.read_text())
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nb.metadata['language_info'] = {'name': 'python'}
    return nb


def execute(nb, quick=False, timeout=3600, env=None):
    """Run a notebook top to bottom in a fresh python3 kernel started in notebooks/ (LORAT_QUICK=1 when quick)."""
    from nbclient import NotebookClient
    saved = dict(os.environ)
    os.environ.update(env or {})
    os.environ['LORAT_QUICK'] = '1' if quick else '0'
    try:
        NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(HERE)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def main():
    p = argparse.ArgumentParser(description="Build (and run) the notebooks from notebooks/src/*.py.")
    p.add_argument('--run', action='store_true', help="execute each notebook in full mode and save its outputs")
    p.add_argument('only', nargs='*', help="names (or parts of names) of the notebooks to build")
    args = p.parse_args()
    for src in SOURCES:
        if args.only and not any(o in src.stem for o in args.only):
            continue
        nb, out = build(src), HERE / (src.stem + '.ipynb')
        if args.run:
            t0 = time.time()
            print(f"running {out.name} ...", flush=True)
            execute(nb)
            print(f"  {time.time() - t0:.0f} s", flush=True)
        nbformat.write(nb, str(out) + '.tmp')
        os.replace(str(out) + '.tmp', out)
        print(f"wrote {out.relative_to(HERE.parent)} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == '__main__':
    sys.exit(main())
