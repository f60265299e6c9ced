"""evaluate.py: hand-computed metrics under pytracking's and the got10k toolkit's rules, result-file
matching, report files, server zips, resumable runs, and `run` end to end on a synthetic mini-benchmark."""
import json
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate as ev  # noqa: E402

# four frames of a 100x100 target that does not move
GT = np.array([[50, 60, 100, 100]] * 4, dtype=np.float64)
ALL_VISIBLE = np.ones(4, dtype=bool)


def scores(pred, gt=GT, visible=ALL_VISIBLE, dataset='otb'):
    return ev.curve_scores([ev.sequence_curves(pred, gt, visible, dataset)])


def test_thresholds_are_pytrackings():
    assert len(ev.SUCCESS_THRESHOLDS) == 21 and ev.SUCCESS_THRESHOLDS[-1] == 1.0
    assert ev.SUCCESS_THRESHOLDS[ev.OP50] == 0.5 and abs(ev.SUCCESS_THRESHOLDS[ev.OP75] - 0.75) < 1e-12
    assert ev.CENTER_THRESHOLDS[ev.PRECISION_AT] == 20 and ev.NORM_THRESHOLDS[ev.PRECISION_AT] == 0.2


def test_perfect_tracker_gets_20_of_21():
    s = scores(GT.copy())
    assert s['AUC'] == pytest.approx(100 * 20 / 21) and round(s['AUC'], 2) == 95.24  # IoU 1 is not > 1
    assert s['P'] == 100 and s['NP'] == 100 and s['OP50'] == 100 and s['OP75'] == 100


def test_known_shift():
    """Shift (15, 20): center error 25 px > 20 (fails), normalized 0.25 > 0.2 (fails); IoU with the
    100x100 box = 85*80 / (2e4 - 6800) = 0.5152: passes thresholds 0..0.5 (11 of 21). Frame 0 is the gt."""
    pred = GT + [15, 20, 0, 0]
    s = scores(pred)
    assert s['P'] == 25 and s['NP'] == 25  # only frame 0
    assert s['AUC'] == pytest.approx(100 * (11 * 1 + 9 * 0.25) / 21)
    assert s['OP50'] == 100 and s['OP75'] == 25
    big = GT * [1, 1, 2, 2]  # a 200x200 target: normalized error 0.125 passes
    assert scores(big + [15, 20, 0, 0], gt=big)['NP'] == 100


def test_absent_frames():
    """An invisible frame fails IoU and center error; its normalized error passes, except on LaSOT."""
    visible = np.array([True, True, False, True])
    s = scores(GT.copy(), visible=visible)
    assert s['AUC'] == pytest.approx(100 * 20 * 0.75 / 21) and s['P'] == 75 and s['NP'] == 100
    s = scores(GT.copy(), visible=visible, dataset='lasot')
    assert s['P'] == 75 and s['NP'] == 75


def test_zero_size_gt():
    """A zero-size gt box is invalid even where the target is flagged visible: on LaSOT its normalized
    error then still passes (only invisible frames fail it)."""
    gt = GT.copy()
    gt[2, 2] = 0
    for dataset in ('otb', 'lasot'):
        s = scores(gt.copy(), gt=gt, dataset=dataset)
        assert s['P'] == 75 and s['NP'] == 100 and s['OP50'] == 75


def test_invalid_results_are_errors():
    for bad in (np.nan, -1.0):
        pred = GT.copy()
        pred[1, 2] = bad
        with pytest.raises(ValueError, match='NaN or negative'):
            scores(pred)


def test_result_length_rules():
    with pytest.raises(ValueError, match='shorter'):
        scores(GT[:3].copy(), dataset='lasot')
    s = scores(GT[:2].copy())  # elsewhere: padded with zero boxes, which fail
    assert s['P'] == 50 and s['OP50'] == 50
    longer = np.concatenate([GT, GT + 500])
    assert scores(longer, dataset='lasot')['P'] == 100  # truncated


def test_zero_size_result_takes_previous_box():
    pred = GT.copy()
    pred[2] = [0, 0, 0, 0]
    pred[3] = [1, 1, 50, 0]
    assert scores(pred)['P'] == 100  # frames 2, 3 became frame 1's (perfect) box
    pred[1:] = GT[1:] + [30, 0, 0, 0]
    assert ev.clean_results(pred, GT, 'otb')[3].tolist() == (GT[1] + [30, 0, 0, 0]).tolist()


def test_got10k_rules():
    """First frame dropped, cover 0 frames dropped, no +1, boxes clipped to the image, frame-weighted."""
    gt = np.array([[0, 0, 10, 10]] * 5, dtype=np.float64)
    pred = np.array([[90, 90, 5, 5], [0, 0, 10, 10], [5, 0, 10, 10], [50, 50, 10, 10], [-5, 0, 10, 10]], float)
    cover = np.array([8, 8, 8, 0, 8])
    ious = ev.got10k_sequence_ious(pred, gt, cover)
    assert ious.tolist() == pytest.approx([1, 1 / 3, 1 / 3])  # frame 0 and the cover-0 frame are gone
    # the toolkit's clipping moves x to 0 without shrinking w: (-5,0,10,10) -> (0,0,10,10), IoU 1
    assert ev.got10k_sequence_ious(pred, gt, cover, bound=(100, 100))[-1] == pytest.approx(1)
    short = ev.got10k_sequence_ious(gt[:2], gt[:2], [8, 8])  # a 2-frame sequence: one IoU of 1
    s = ev.got10k_scores([ious, short])
    assert s['AO'] == pytest.approx(100 * (2 + 2 / 3) / 4)  # pooled over frames, not sequences
    assert s['SR50'] == 50 and s['SR75'] == 50
    with pytest.raises(ValueError, match='exactly one per frame'):
        ev.got10k_sequence_ious(pred[:4], gt, cover)


def write_lasot(root, name, boxes, occluded=()):
    """A LaSOT sequence folder with annotations only (no images)."""
    folder = Path(root) / name.split('-')[0] / name
    folder.mkdir(parents=True)
    (folder / 'groundtruth.txt').write_text(''.join(f"{x:g},{y:g},{w:g},{h:g}\n" for x, y, w, h in boxes))
    flags = ''.join('1' if i in occluded else '0' for i in range(len(boxes)))
    (folder / 'full_occlusion.txt').write_text(','.join(flags))
    (folder / 'out_of_view.txt').write_text(','.join('0' * len(boxes)))


def test_score_command(tmp_path, capsys):
    """Annotations only; loose file names and any delimiter; one row per tracker; report files."""
    root = tmp_path / 'LaSOT'
    write_lasot(root, 'car-1', GT)
    gt2 = GT.copy()
    gt2[2, 2] = 0  # zero-size but flagged visible: normalized error passes on LaSOT
    write_lasot(root, 'bird-2', gt2, occluded={3})
    a, b = tmp_path / 'results' / 'TrackerA', tmp_path / 'results' / 'TrackerB'
    a.mkdir(parents=True), b.mkdir()
    (a / 'Car_1.TXT').write_text(''.join(f"{x}\t{y}\t{w}\t{h}\n" for x, y, w, h in GT))
    (a / 'bird-2.txt').write_text(''.join(f"{x} {y}  {w} {h}\n" for x, y, w, h in GT))
    (a / 'bird-2_time.txt').write_text('0.1\n' * 4)
    (b / 'car-1.txt').write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in GT + [15, 20, 0, 0]))
    (b / 'bird-2.txt').write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in GT + [15, 20, 0, 0]))
    report = tmp_path / 'report'
    ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(a), str(b),
             '--report', str(report), '--json'])
    out = json.loads(capsys.readouterr().out)
    assert [r['name'] for r in out] == ['TrackerA', 'TrackerB'] and out[0]['sequences'] == 2
    # A: car-1 perfect (20/21); bird-2 frames 2 (zero gt) and 3 (occluded) fail IoU -> 2/4 * 20/21
    assert out[0]['figures']['AUC'] == pytest.approx(100 * (20 / 21 + 0.5 * 20 / 21) / 2)
    assert out[0]['figures']['NP'] == pytest.approx(100 * (1 + 0.75) / 2)  # frame 3 fails: LaSOT rule
    assert out[1]['figures']['P'] == 25
    for f in ('success.png', 'precision.png', 'norm_precision.png', 'per_sequence.csv', 'scores.json'):
        assert (report / f).stat().st_size > 0
    assert (report / 'success.png').read_bytes()[:4] == b'\x89PNG'
    rows = (report / 'per_sequence.csv').read_text().splitlines()
    assert rows[0].startswith('tracker,sequence,AUC') and len(rows) == 5
    # the table: name and every figure on one line
    ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(a),
             '--report', str(report)])
    line = capsys.readouterr().out.strip()
    assert line.startswith('TrackerA') and all(k in line for k in ('AUC', 'P ', 'NP', 'OP50', 'OP75'))


def test_score_errors_are_one_line(tmp_path):
    root = tmp_path / 'LaSOT'
    write_lasot(root, 'car-1', GT)
    with pytest.raises(SystemExit, match='does not exist'):
        ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(tmp_path / 'nope')])
    (tmp_path / 'r').mkdir()
    with pytest.raises(SystemExit, match='no result for sequence car-1'):
        ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(tmp_path / 'r')])
    (tmp_path / 'r' / 'car-1.txt').write_text('1,2,3,nan\n')
    with pytest.raises(SystemExit, match='car-1.txt: invalid result'):
        ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(tmp_path / 'r')])


def test_attribute_breakdown(tmp_path):
    root = tmp_path / 'LaSOT'
    write_lasot(root, 'car-1', GT)
    write_lasot(root, 'bird-2', GT)
    res = tmp_path / 'res'
    res.mkdir()
    (res / 'car-1.txt').write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in GT))
    (res / 'bird-2.txt').write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in GT + [15, 20, 0, 0]))
    att = tmp_path / 'att'
    att.mkdir()
    (att / 'car-1.txt').write_text('1,0,0,0,0,0,0,0,0,0,0,0,0,1')  # IV, ARC
    (att / 'bird-2.txt').write_text('1,0,0,0,0,0,0,0,0,1,0,0,0,0')  # IV, FOC
    seqs = ev.open_sequences('lasot', str(root))
    ev.score([res], seqs, 'lasot', report=tmp_path / 'rep', attributes=att)
    rows = {r.split(',')[0]: r.split(',') for r in (tmp_path / 'rep' / 'attributes.csv').read_text().splitlines()[1:]}
    assert set(rows) == {'ARC', 'FOC', 'IV'}
    assert float(rows['ARC'][3]) == pytest.approx(100 * 20 / 21, abs=0.01) and rows['IV'][2] == '2'


def test_server_zips(tmp_path):
    res = tmp_path / 'res'
    res.mkdir()
    names = ['GOT-10k_Test_000001', 'GOT-10k_Test_000002']
    for n in names:
        ev.write_sequence_result(res, n, GT, np.full(4, 0.01))
    z = zipfile.ZipFile(ev.pack('got10k_test', res, names))
    assert sorted(z.namelist()) == sorted(f"{n}/{n}_{s}.txt" for n in names for s in ('001', 'time'))
    lines = z.read(f"{names[0]}/{names[0]}_001.txt").decode().splitlines()
    assert len(lines) == 4 and [float(v) for v in lines[1].split(',')] == GT[1].tolist()
    assert [float(t) for t in z.read(f"{names[0]}/{names[0]}_time.txt").decode().split()] == [0.01] * 4
    z = zipfile.ZipFile(ev.pack('trackingnet', res, names))
    assert sorted(z.namelist()) == sorted(f"{n}.txt" for n in names)  # flat: no folders
    assert len(z.read(f"{names[1]}.txt").decode().splitlines()) == 4


class FakeTracker:
    """Stands in for track.Tracker: returns the init box forever; can crash after some sequences."""
    inits = []

    def __init__(self, crash_after=None):
        self.crash_after = crash_after

    def init(self, frame, box):
        if self.crash_after is not None and len(FakeTracker.inits) >= self.crash_after:
            raise KeyboardInterrupt  # the run is killed
        FakeTracker.inits.append(1)
        self.box = np.array(box, dtype=float)

    def update(self, frame):
        return self.box.copy(), 1.0


def test_resumed_run_skips_finished(tmp_path):
    seqs = ev.open_sequences('synthetic', split='test', num=3, length=4)
    FakeTracker.inits = []
    with pytest.raises(KeyboardInterrupt):
        ev.run_benchmark(seqs, tmp_path, lambda device: FakeTracker(crash_after=2))
    assert sorted(p.name for p in tmp_path.glob('*.txt') if '_time' not in p.name) == \
        sorted(f"{s.name}.txt" for s in seqs[:2])
    done = ev.run_benchmark(seqs, tmp_path, lambda device: FakeTracker())
    assert done == [seqs[2].name] and len(FakeTracker.inits) == 3  # 2 before the crash + 1 resumed
    assert ev.run_benchmark(seqs, tmp_path, lambda device: FakeTracker()) == []
    assert len(ev.read_results(tmp_path / f"{seqs[0].name}.txt")) == 4
    assert len((tmp_path / f"{seqs[0].name}_time.txt").read_text().split()) == 4


def test_run_end_to_end(tmp_path, capsys):
    """A tiny untrained T model through track.py on a 2-sequence synthetic benchmark, two workers."""
    pytest.importorskip('track')
    import lorat
    torch.manual_seed(0)
    model = lorat.build_model('T')
    weights = tmp_path / 'tiny.pt'
    torch.save({'config': asdict(model.cfg), 'model': model.state_dict()}, weights)
    out = tmp_path / 'results' / 'tiny'
    args = ['run', '--dataset', 'synthetic', '--num', '2', '--length', '5', '--weights', str(weights),
            '--out', str(out), '--workers', '2']
    results = ev.main(args)
    assert results[0]['name'] == 'tiny' and results[0]['sequences'] == 2
    assert 0 <= results[0]['figures']['AUC'] <= 100
    for s in ev.open_sequences('synthetic', split='test', num=2, length=5):
        boxes = ev.read_results(out / f"{s.name}.txt")
        assert boxes.shape == (5, 4) and np.allclose(boxes[0], s.boxes[0], atol=0.01)
    assert (out / 'report' / 'success.png').exists()
    assert ev.main(args) == results  # resumed: nothing left to track, same scores


def test_efficiency_rows_without_timing():
    rows = ev.efficiency(['B'], [224], fps=False)
    assert rows[0]['model'] == 'B-224' and rows[0]['paper_fps'] == 209
    assert rows[0]['params_total_M'] == pytest.approx(98.7, abs=1.0)


def test_score_got10k_val(tmp_path, capsys):
    """GOT-10k val from annotation files: cover.label and meta_info.ini's resolution are the toolkit's."""
    gt = np.array([[0, 0, 10, 10]] * 5, dtype=np.float64)
    folder = tmp_path / 'GOT-10k' / 'val' / 'GOT-10k_Val_000001'
    folder.mkdir(parents=True)
    (folder.parent / 'list.txt').write_text('GOT-10k_Val_000001\n')
    (folder / 'groundtruth.txt').write_text(''.join(f"{x:g},{y:g},{w:g},{h:g}\n" for x, y, w, h in gt))
    (folder / 'absence.label').write_text('0\n0\n0\n1\n0\n')
    (folder / 'cover.label').write_text('8\n8\n8\n0\n8\n')
    (folder / 'meta_info.ini').write_text('[METAINFO]\nresolution: (100, 100)\n')
    res = tmp_path / 'res' / 'mine'
    res.mkdir(parents=True)
    pred = [[90, 90, 5, 5], [0, 0, 10, 10], [5, 0, 10, 10], [50, 50, 10, 10], [-5, 0, 10, 10]]
    (res / 'GOT-10k_Val_000001.txt').write_text(''.join(','.join(map(str, b)) + '\n' for b in pred))
    ev.main(['score', '--dataset', 'got10k_val', '--root', str(tmp_path / 'GOT-10k'), '--results', str(res),
             '--report', str(tmp_path / 'rep'), '--json'])
    figures = json.loads(capsys.readouterr().out)[0]['figures']
    assert figures['AO'] == pytest.approx(100 * (1 + 1 / 3 + 1) / 3) and figures['SR50'] == pytest.approx(200 / 3)
    assert (tmp_path / 'rep' / 'success.png').exists()


def test_efficiency_marks_out_of_memory(monkeypatch):
    import lorat

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(lorat, 'build_model', too_big)
    assert ev.measure_fps('g', 378, 'cpu') == 'OOM'
