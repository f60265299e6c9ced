"""Tests of notebooks/: each notebook runs top to bottom in quick mode (LORAT_QUICK=1) in a fresh python3
kernel through nbclient, and the numbers it measured (its `checks` dict) say what it shows.

The committed .ipynb files are what a learner opens: they must be built from notebooks/src/ (run
`python notebooks/build.py --run` after editing a source) and carry the outputs of a full run.
"""
import importlib.util
import json
import os
import sys

import nbformat
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
spec = importlib.util.spec_from_file_location('notebooks_build', os.path.join(ROOT, 'notebooks', 'build.py'))
build = importlib.util.module_from_spec(spec)  # notebooks/build.py, under a name no package can shadow
spec.loader.exec_module(build)

NOTEBOOKS = [src.stem for src in build.SOURCES]


def committed(name):
    return nbformat.read(os.path.join(ROOT, 'notebooks', name + '.ipynb'), as_version=4)


def run_quick(name, runs, **env):
    """Execute the committed notebook in quick mode (runs/ moved to a temp folder) -> its `checks`."""
    nb = committed(name)
    nb.cells.append(nbformat.v4.new_code_cell("import json; print('CHECKS', json.dumps(checks, default=float))"))
    build.execute(nb, quick=True, timeout=600, env={'LORAT_RUNS': str(runs), **env})
    text = ''.join(o.get('text', '') for o in nb.cells[-1].outputs)
    assert text.startswith('CHECKS '), f"{name}: no checks printed: {text[:500]}"
    return json.loads(text[len('CHECKS '):])


def test_01_lora(tmp_path):
    c = run_quick('01_lora', tmp_path)
    assert c['formula_err'] < 1e-5
    assert c['ranks'] == {'4': 4, '16': 16, '64': 64}  # rank(BA) = r
    assert c['bert_delta'] > 0.01 and c['lora_delta'] == 0.0 and c['lora_gradA'] == 0.0 and c['bert_gradA'] > 0
    assert c['merge_err'] < 1e-5 and c['merge_same_keys']
    card = c['cards']['B']
    assert abs(card['params_total_M'] - 98.7) < 0.5 and abs(card['params_lora_M'] - 10.6) < 0.2
    assert c['bench']['lora']['trainable_m'] < c['bench']['full']['trainable_m']


def test_02_decoupled_embedding(tmp_path):
    c = run_quick('02_decoupled_embedding', tmp_path)
    assert c['template_slice_equal'] and c['embed_err'] == 0.0
    assert c['fg_cells'] == c['fg_cells_expected'] > 0
    assert c['separate_trains_pos'] and not c['decoupled_trains_pos']
    a = c['ablation']  # the measured ablation: one short train.py run per row on the shipped backbone
    assert set(a) == {'separate', 'shared', 'type', 'lorat', 'lorat-seed1', 'full'}
    for name, r in a.items():
        assert r['steps'] == 2 and r['sha256_match'], name  # every row adapted the shipped T backbone
        assert 0 <= r['suc'] <= 100 and r['step_s'] > 0 and r['peak_gb'] > 0.05, (name, r)
    lora = [n for n in a if n != 'full']
    assert all(a[n]['trains'] < a['full']['trains'] for n in lora)
    assert a['type']['trains'] == a['lorat']['trains'] == a['shared']['trains'] + 3 * 128  # fg: free; types: 3 x C
    # separate embeddings train both position tables and so move them; every other LoRA row leaves the backbone
    # exactly as shipped outside the merged LoRA updates; full fine-tuning moves it all
    assert a['separate']['moved_outside_blocks'] == ['pos_embed', 'template_pos_embed']
    assert {'pos_embed', 'template_pos_embed'} <= set(a['separate']['trains_outside_blocks'])
    for n in lora:
        assert a[n]['trains_in_blocks'] == 0 and a[n]['moved_frozen_in_blocks'] == 0, n
        assert n == 'separate' or a[n]['moved_outside_blocks'] == [], n
    assert a['full']['trains_in_blocks'] > 0 and a['full']['moved_frozen_in_blocks'] > 0
    assert 'patch_embed.proj.weight' in a['full']['moved_outside_blocks']
    assert not (tmp_path / 'latest').exists()  # the notebook's runs leave runs/latest alone


def test_03_gradient_norm(tmp_path):
    c = run_quick('03_gradient_norm', tmp_path)
    assert c['steps'] == {'mlp': 6, 'conv': 6}  # both heads trained, every step logged
    for head in ('mlp', 'conv'):
        for key in ('grad_norm', 'grad_norm/lora', 'grad_norm/head'):
            for half in ('first half', 'second half'):
                assert 0 < c['summary'][key][half][head] < 1e6, (head, key, half)
    for head, b in c['backbone'].items():  # both runs adapted the shipped backbone and left it frozen
        assert b['sha256_match'] and b['trained_only_lora_type_head'] and b['untouched_equal'], (head, b)
        assert b['merged_moved'] > 0 and b['rebuild_err'] < 1e-5, (head, b)  # export = the file + merged LoRA
    assert not (tmp_path / 'latest').exists()  # the notebook's runs leave runs/latest alone


def test_04_tracking(tmp_path):
    sys.path.insert(0, ROOT)
    import data
    clip = data.synthetic_clip(7, length=6)
    video = tmp_path / 'user.mp4'  # "the user's video" branch
    data.write_mp4(str(video), (clip.frame(i) for i in range(len(clip))), 30)
    init = ','.join(f'{v:.1f}' for v in clip.boxes[0])
    c = run_quick('04_tracking', tmp_path, LORAT_VIDEO=str(video), LORAT_INIT=init)
    assert c['frames'] == 20 and 0 <= c['mean_iou'] <= 1
    assert c['score_map_shape'] == [8, 8]  # T-112: one score per search token
    assert 0 <= c['AUC'] <= 100 and 0 <= c['P'] <= 100  # evaluate.py scored the synthetic test clips
    assert c['video_frames'] == 6
    # no earlier run in runs/: the notebook trained a short run of the default recipe on the shipped backbone
    assert c['weights'].endswith('notebook04/lora-T/export.pt')
    assert 'LoRA on weights/lorat-T-backbone.pth' in c['how_trained']
    assert not (tmp_path / 'latest').exists()  # ... and left runs/latest alone


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_committed_notebook_is_built_and_run(name):
    """The .ipynb matches its source and holds a full run's outputs: figures, no errors, small."""
    nb = committed(name)
    want = build.build(build.SOURCES[NOTEBOOKS.index(name)])
    assert [c.source for c in nb.cells] == [c.source for c in want.cells], \
        f"notebooks/{name}.ipynb is out of date: run `python notebooks/build.py --run {name[:2]}`"
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'error'], f"{name} was saved with an error"
    assert any('image/png' in o.get('data', {}) for o in outputs), f"{name} has no saved figures"
    assert 'mode: full' in ''.join(o.get('text', '') for o in outputs), f"{name} was saved from a quick run"
    assert os.path.getsize(os.path.join(ROOT, 'notebooks', name + '.ipynb')) < 1.5e6
