"""Tests of notebooks/: each notebook runs top to bottom in quick mode (LORAT_QUICK=1) in a fresh python3
kernel through nbclient, and the numbers it measured (its `checks` dict) say what it shows.

The committed .ipynb files are what a learner opens: they must be built from notebooks/src/ (run
`python notebooks/build.py --run` after editing a source) and carry the outputs of a full run.
"""
import importlib.util
import json
import math
import os
import sys

import nbformat
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
spec = importlib.util.spec_from_file_location('notebooks_build', os.path.join(ROOT, 'notebooks', 'build.py'))
build = importlib.util.module_from_spec(spec)  # notebooks/build.py, under a name no package can shadow
spec.loader.exec_module(build)
sys.path.insert(0, os.path.join(ROOT, 'notebooks'))
import nbhelp  # noqa: E402  (how notebooks 02 and 03 read their seeds)

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


def test_contrast_and_verdict():
    """How notebooks 02 and 03 decide: resolved = beyond 2 s.e. over the cells and the same sign in every seed."""
    base = [[10.0, 20.0, 30.0, 40.0]] * 3
    up = [[v + 5 + 0.1 * k for k, v in enumerate(seed)] for seed in base]  # +5.0..+5.3 on every cell
    c = nbhelp.contrast(up, base)
    assert c['resolved'] and abs(c['diff'] - 5.15) < 1e-9 and c['n'] == 12 and len(c['per_seed']) == 3
    assert nbhelp.verdict(c, +1) == 'reproduced' and nbhelp.verdict(c, -1) == 'contradicted'
    noisy = [[v + d for v, d in zip(seed, (4, -4, 3, -3))] for seed in base]  # mean +0: within the noise
    assert nbhelp.verdict(nbhelp.contrast(noisy, base), +1) == 'not resolved'
    one_seed = [[v + 9 for v in base[0]], [v - 1 for v in base[1]], [v + 9 for v in base[2]]]  # seed 1 disagrees
    c = nbhelp.contrast(one_seed, base)
    assert c['diff'] > 2 * c['se'] and not c['resolved'] and nbhelp.verdict(c, +1) == 'not resolved'
    assert not nbhelp.contrast([[1.0]], [[0.0]])['resolved']  # one seed resolves nothing
    with pytest.raises(ValueError):
        nbhelp.contrast([[1.0, 2.0]], [[1.0]])
    assert nbhelp.ema([3.0] * 5) == pytest.approx([3.0] * 5)  # debiased: no pull towards 0
    assert nbhelp.ema([0.0, 10.0], 0.5) == pytest.approx([0.0, 10 * 0.5 / 0.75])


def test_02_decoupled_embedding(tmp_path):
    c = run_quick('02_decoupled_embedding', tmp_path)
    assert c['template_slice_equal'] and c['embed_err'] == 0.0
    assert c['fg_cells'] == c['fg_cells_expected'] > 0
    assert c['separate_trains_pos'] and not c['decoupled_trains_pos']
    a = c['ablation']  # the measured ablation: three short train.py runs per row (seeds 0-2) on the shipped backbone
    assert set(a) == {'separate', 'shared', 'type', 'lorat', 'full'}
    for name, r in a.items():
        assert r['seeds'] == [0, 1, 2] and r['steps'] == [2, 2, 2], name
        assert r['sha256_match'] and r['same_across_seeds'], name  # every run adapted the shipped T backbone
        assert 0 <= r['suc'] <= 100 and r['step_s'] > 0 and r['peak_gb'] > 0.05, (name, r)
        # the row's SUC is the mean over every (seed, clip) score, its s.e. over those scores
        assert len(r['suc_clips']) == 3 and all(len(clips) == 2 for clips in r['suc_clips']), name
        suc, se = nbhelp.mean_se([v for clips in r['suc_clips'] for v in clips])
        assert r['suc'] == pytest.approx(suc) and r['suc_se'] == pytest.approx(se), name
        assert r['suc_seed'] == pytest.approx([sum(clips) / len(clips) for clips in r['suc_clips']]), name
    # the verdicts are computed from the rows' scores, and each README row carries its number and verdict
    pairs = {'shared - separate': +1, 'type - shared': +1, 'lorat - type': +1, 'lorat - full': +1}
    assert set(c['contrasts']) == set(pairs) and len(c['readme_rows']) == len(pairs)
    for (key, sign), line in zip(pairs.items(), c['readme_rows']):
        got, (x, y) = c['contrasts'][key], key.split(' - ')
        want = nbhelp.contrast(a[x]['suc_clips'], a[y]['suc_clips'])
        assert got['diff'] == pytest.approx(want['diff']) and got['se'] == pytest.approx(want['se']), key
        assert got['verdict'] == nbhelp.verdict(want, sign), key
        assert line.startswith('| ') and line.endswith(f"| {got['verdict']} |"), line
        assert f"{got['diff']:+.1f} ± {got['se']:.1f}" in line, line
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
    assert c['seeds'] == [0, 1, 2]
    assert c['steps'] == {'mlp': [6, 6, 6], 'conv': [6, 6, 6]}  # both heads, 3 seeds each, every step logged
    halves = ('first half', 'second half')
    for head in ('mlp', 'conv'):
        for key in ('grad_norm', 'grad_norm/lora', 'grad_norm/head'):
            for half in halves:
                per_seed = c['phase'][key][head][half]
                assert len(per_seed) == 3 and all(0 < v < 1e6 for v in per_seed), (head, key, half)
                assert c['summary'][key][half][head] == pytest.approx(sum(per_seed) / 3), (head, key, half)
        assert len(set(c['phase']['grad_norm'][head]['first half'])) == 3  # the seeds are different runs
    # the headline is the paper's measure (the logged total `grad_norm`), conv / MLP per seed, and the
    # conclusion sentence is computed from those numbers
    assert c['sizes']['conv']['head'] > c['sizes']['mlp']['head']  # the head-size caveat holds
    assert len(c['conclusion']) == 2
    for half, sentence in zip(halves, c['conclusion']):
        g = c['phase']['grad_norm']
        per_seed = [cv / m for cv, m in zip(g['conv'][half], g['mlp'][half])]
        want = nbhelp.contrast([[math.log(v)] for v in g['conv'][half]], [[math.log(v)] for v in g['mlp'][half]])
        r = c['ratio'][half]
        assert r['per_seed'] == pytest.approx(per_seed) and r['ratio'] == pytest.approx(math.exp(want['diff']))
        assert r['resolved'] == want['resolved'] and r['verdict'] == nbhelp.verdict(want, +1)
        assert sentence.startswith(half) and f"seeds {min(per_seed):.2f}-{max(per_seed):.2f}x" in sentence, sentence
        if r['resolved']:
            higher, factor = ('conv', r['ratio']) if r['ratio'] > 1 else ('MLP', 1 / r['ratio'])
            assert f"higher with the {higher} head, {factor:.2f}x" in sentence, sentence
        else:
            assert 'not resolved' in sentence and f"{r['ratio']:.2f}x" in sentence, sentence
        assert f"{half}: {r['verdict']}" in c['readme_row']
    for head, b in c['backbone'].items():  # both runs adapted the shipped backbone and left it frozen
        assert b['sha256_match'] and b['trained_only_lora_type_head'] and b['untouched_equal'], (head, b)
        assert b['merged_moved'] > 0 and b['rebuild_err'] < 1e-5, (head, b)  # export = the file + merged LoRA
    assert not (tmp_path / 'latest').exists()  # the notebook's runs leave runs/latest alone


def test_04_tracking(tmp_path):
    sys.path.insert(0, ROOT)
    import common
    import synthetic
    clip = synthetic.synthetic_clip(7, length=6)
    video = tmp_path / 'user.mp4'  # "the user's video" branch
    common.write_mp4(str(video), (clip.frame(i) for i in range(len(clip))), 30)
    init = ','.join(f'{v:.1f}' for v in clip.boxes[0])
    c = run_quick('04_tracking', tmp_path, LORAT_VIDEO=str(video), LORAT_INIT=init)
    assert c['frames'] == 20 and 0 <= c['mean_iou'] <= 1
    assert c['score_map_shape'] == [10, 10]  # T-140: one score per search token
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
