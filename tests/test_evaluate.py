"""evaluate.py: hand-computed metrics under pytracking's and the got10k toolkit's rules, result-file
matching, report files, server zips, resumable runs, and `run` end to end on a few short synthetic clips."""
import json
import os
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
import data  # noqa: E402
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


def test_held_and_tightness_tell_a_lost_target_from_a_loose_box():
    """Frame 0 is the given box; frame 1 is on the target but twice as wide (IoU 0.5); frame 2 is far
    away; frame 3 is invisible (not counted). Held: frames 0 and 1 of the 3 valid ones."""
    pred = GT.copy()
    pred[1] = [0, 60, 200, 100]  # center (100, 110) inside the gt (50..150, 60..160)
    pred[2] = [300, 300, 100, 100]
    c = ev.held_and_tightness(pred, GT, np.array([True, True, True, False]), 'otb')
    assert c['held'] == pytest.approx(2 / 3) and c['iou_held'] == pytest.approx((1 + 0.5) / 2)
    loose = ev.held_and_tightness(np.array([GT[0]] + [[0, 60, 200, 100]] * 3), GT, ALL_VISIBLE, 'otb')
    assert loose['held'] == 1 and loose['iou_held'] == pytest.approx((1 + 3 * 0.5) / 4)


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


def test_lasot_results_are_written_and_read_1_based(tmp_path):
    """LaSOT files are 1-based: the tracker's 0-based boxes are written with x, y + 1 (as the authors do),
    read back minus 1; other datasets' files as given. A perfect result then scores 100 either way."""
    root = tmp_path / 'LaSOT'
    write_lasot(root, 'car-1', GT)
    (seq,) = ev.open_sequences('lasot', str(root))
    assert np.allclose(seq.boxes, GT - [1, 1, 0, 0])
    res = tmp_path / 'res'
    ev.write_sequence_result(res, 'car-1', seq.boxes, np.zeros(len(GT)), 'lasot')
    assert np.allclose(data.read_boxes(res / 'car-1.txt'), GT, atol=0.01)  # the file's own convention
    assert np.allclose(ev.read_results(res / 'car-1.txt', 'lasot'), seq.boxes, atol=0.01)
    ev.write_sequence_result(res, 'other', seq.boxes, np.zeros(len(GT)), 'otb')
    assert np.allclose(data.read_boxes(res / 'other.txt'), seq.boxes, atol=0.01)
    records = ev.score_tracker(res, [seq], 'lasot', None)
    assert ev.curve_scores([records['car-1']])['AUC'] > 95


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
    out = ev.main(['score', '--dataset', 'lasot', '--root', str(root), '--split', 'all', '--results', str(a), str(b),
                   '--report', str(report)])
    capsys.readouterr()
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


def test_resumed_run_skips_finished(tmp_path, capsys):
    seqs = ev.open_sequences('synthetic', split='test', num=3, length=4)
    FakeTracker.inits = []
    with pytest.raises(KeyboardInterrupt):
        ev.track_all(seqs, tmp_path, lambda device: FakeTracker(crash_after=2))
    assert sorted(p.name for p in tmp_path.glob('*.txt') if '_time' not in p.name) == \
        sorted(f"{s.name}.txt" for s in seqs[:2])
    capsys.readouterr()
    done = ev.track_all(seqs, tmp_path, lambda device: FakeTracker())
    assert done == [seqs[2].name] and len(FakeTracker.inits) == 3  # 2 before the crash + 1 resumed
    err = capsys.readouterr().err  # common.Progress: a line per sequence, the ETA of what is left (nothing)
    assert 'resuming: 2 of 3' in err and f"[1/1] {seqs[2].name}: 4 frames" in err and 'ETA 0:00' in err, err
    assert ev.track_all(seqs, tmp_path, lambda device: FakeTracker()) == []
    assert len(ev.read_results(tmp_path / f"{seqs[0].name}.txt")) == 4
    assert len((tmp_path / f"{seqs[0].name}_time.txt").read_text().split()) == 4


def test_run_end_to_end(tmp_path, capsys):
    """A tiny untrained T model through track.py on 2 short synthetic clips, two workers."""
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
    rows = ev.efficiency(['B', 'T'], [224], fps=False)
    assert rows[0]['model'] == 'B-224' and rows[0]['paper_fps'] == 209
    assert rows[0]['params_total_M'] == pytest.approx(98.7, abs=1.0)
    assert rows[0]['params_lora_M'] == pytest.approx(10.6, abs=0.1)  # the paper's rank 64
    # T's rank 16 (what train.py trains it with): 4 blocks x (q, k, v, proj 16*(128+128) + fc1, fc2 16*(128+512))
    assert rows[1]['params_lora_M'] * 1e6 == pytest.approx(4 * (4 * 16 * 256 + 2 * 16 * 640))


def test_the_speed_test_times_tracking_end_to_end_and_the_data_pipeline(capsys):
    (row,) = ev.tracking_speed('cpu', frames=3, models=[('T', 112, 'fp32')])
    assert row['model'] == 'T-112' and row['dtype'] == 'fp32' and row['frames'] == 3 and row['fps'] > 0
    assert row['forward_ms'] > 0 and 0 < row['outside_forward'] < 1
    tables = ev.main(['efficiency', '--parts', 'data', '--samples', '32'])
    assert list(tables) == ['data'] and [r['crops'] for r in tables['data']] == ['70/140', '112/224']
    assert all(r['samples_per_s'] > 0 and r['workers'] == 0 for r in tables['data'])
    out = capsys.readouterr().out
    assert 'training data pipeline' in out and 'samples/s' in out and 'tracking end to end' not in out


def test_score_got10k_val(tmp_path):
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
    figures = ev.main(['score', '--dataset', 'got10k_val', '--root', str(tmp_path / 'GOT-10k'), '--results', str(res),
                       '--report', str(tmp_path / 'rep')])[0]['figures']
    assert figures['AO'] == pytest.approx(100 * (1 + 1 / 3 + 1) / 3) and figures['SR50'] == pytest.approx(200 / 3)
    assert (tmp_path / 'rep' / 'success.png').exists()


def test_efficiency_marks_out_of_memory(monkeypatch):
    import lorat

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(lorat, 'build_model', too_big)
    assert ev.measure_fps('g', 378, 'cpu') == 'OOM'


# ----------------------------------------------------------------------------- one model per result folder

def tiny_export(path, seed):
    """A merged T export whose head answers one fixed box in every cell, whatever it sees: seed 0 the
    previous box again (the target stays found while it moves slowly), seed 1 a box half its size."""
    import lorat
    torch.manual_seed(seed)
    model = lorat.build_model('T', 112, lora_rank=0)  # 8x8 search tokens: the ltrb below are of that grid
    ltrb = torch.tensor([0.0625, 0.0625, 0.1875, 0.1875]) if seed == 0 else torch.tensor([0.0, 0.0, 0.0625, 0.0625])
    with torch.no_grad():  # the tracker picks the center cell (3, 3) of 8x8 (flat score, Hann window): its box
        model.head.cls_mlp.layers[2].weight.zero_()
        model.head.reg_mlp.layers[2].weight.zero_()
        model.head.reg_mlp.layers[2].bias.copy_(torch.logit(ltrb.clamp(1e-4, 1 - 1e-4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'config': asdict(model.cfg), 'model': model.state_dict(), 'merged': True}, path)
    return str(path)


SYNTHETIC = ['--dataset', 'synthetic', '--num', '2', '--length', '6']


def test_two_exports_evaluated_one_after_the_other_give_two_score_sets(tmp_path, monkeypatch):
    """Both are runs/<name>/export.pt: the default folders differ (run name and hash), so the second model
    is tracked, not skipped as finished with the first one's results."""
    monkeypatch.chdir(tmp_path)
    a, b = tiny_export(tmp_path / 'runs' / 'a' / 'export.pt', 0), tiny_export(tmp_path / 'runs' / 'b' / 'export.pt', 1)
    first = ev.main(['run', *SYNTHETIC, '--weights', 'runs/a/export.pt'])
    second = ev.main(['run', *SYNTHETIC, '--weights', 'runs/b/export.pt'])
    sha = {w: ev.model_record(w)['weights_sha256'] for w in (a, b)}
    assert first[0]['name'] == f"a-export-{sha[a][:8]}_synthetic" and second[0]['name'] == f"b-export-{sha[b][:8]}_synthetic"
    assert first[0]['figures'] != second[0]['figures']
    record = json.loads((tmp_path / 'results' / second[0]['name'] / ev.MODEL_RECORD).read_text())
    assert record['weights'] == b and record['weights_sha256'] == sha[b] and record['dtype'] == 'fp32'
    assert ev.main(['run', *SYNTHETIC, '--weights', a]) == first  # the same model again: resumed, nothing re-tracked


def test_a_run_of_another_length_into_the_same_folder_tracks_the_clips_again(tmp_path, monkeypatch):
    """A synthetic clip's name does not say its length: a quick run (--length 4), then one of --length 6 into the
    same default folder, tracks every clip again and scores as a fresh folder does (was: resumed the short results)."""
    monkeypatch.chdir(tmp_path)
    weights = tiny_export(tmp_path / 'w.pt', 0)
    short = ev.open_sequences('synthetic', split='test', num=2, length=4)
    assert {s.name for s in short} & {s.name for s in ev.open_sequences('synthetic', split='test', num=2, length=6)}
    quick = ev.main(['run', '--dataset', 'synthetic', '--num', '2', '--length', '4', '--weights', weights])
    longer = ev.main(['run', *SYNTHETIC, '--weights', weights])
    assert longer[0]['name'] == quick[0]['name']  # one folder
    assert longer[0]['figures'] == ev.main(['run', *SYNTHETIC, '--weights', weights, '--out', 'fresh'])[0]['figures']
    for seq in ev.open_sequences('synthetic', split='test', num=2, length=6):
        assert len(ev.read_results(Path('results') / longer[0]['name'] / f"{seq.name}.txt")) == 6


def test_a_result_folder_of_another_model_is_refused_or_retracked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = tiny_export(tmp_path / 'a.pt', 0), tiny_export(tmp_path / 'b.pt', 1)
    out = tmp_path / 'results' / 'mine'
    ev.main(['run', *SYNTHETIC, '--weights', a, '--out', str(out)])
    with pytest.raises(SystemExit) as e:
        ev.main(['run', *SYNTHETIC, '--weights', b, '--out', str(out)])
    text = str(e.value.code)
    assert text.startswith(f"error: {out} holds results of {a}") and f"not of {b}" in text and '--retrack' in text
    assert '\n' not in text
    with pytest.raises(SystemExit, match='--retrack'):  # another dtype is another model's results too
        ev.main(['run', *SYNTHETIC, '--weights', a, '--out', str(out), '--dtype', 'bf16'])
    retracked = ev.main(['run', *SYNTHETIC, '--weights', b, '--out', str(out), '--retrack'])
    fresh = ev.main(['run', *SYNTHETIC, '--weights', b, '--out', str(tmp_path / 'results' / 'fresh')])
    assert retracked[0]['figures'] == fresh[0]['figures']
    legacy = tmp_path / 'results' / 'legacy'  # results that do not say which model made them
    legacy.mkdir()
    (legacy / 'some_seq.txt').write_text('1,2,3,4\n')
    with pytest.raises(SystemExit, match='holds results of a model it does not record'):
        ev.main(['run', *SYNTHETIC, '--weights', a, '--out', str(legacy)])


def test_short_and_empty_results_are_scored_with_a_warning_each(tmp_path, capsys):
    seqs = ev.open_sequences('synthetic', split='test', num=3, length=4)
    res = tmp_path / 'res'
    res.mkdir()
    (res / f"{seqs[0].name}.txt").write_text('')
    (res / f"{seqs[1].name}.txt").write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in seqs[1].boxes[:2]))
    (res / f"{seqs[2].name}.txt").write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in seqs[2].boxes))
    ev.score([res], seqs, 'synthetic')
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith('warning: ') for w in warnings)
    assert f"{seqs[0].name}.txt: 0 boxes for 4 frames" in warnings[0] and f"{seqs[1].name}.txt: 2 boxes for 4 frames" in warnings[1]


def test_score_of_a_partial_lasot_needs_the_flag(tmp_path, capsys):
    names = data.read_split('lasot_test_split.txt')[:2]
    res = tmp_path / 'res'
    res.mkdir()
    for n in names:
        write_lasot(tmp_path / 'LaSOT', n, GT)
        (res / f"{n}.txt").write_text(''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in GT))
    with pytest.raises(SystemExit) as e:
        ev.main(['score', '--dataset', 'lasot', '--root', str(tmp_path / 'LaSOT'), '--results', str(res)])
    text = str(e.value.code)
    assert 'lasot_test_split.txt' in text and '278 of the 280' in text and '--partial' in text and '\n' not in text
    out = ev.main(['score', '--dataset', 'lasot', '--root', str(tmp_path / 'LaSOT'), '--results', str(res), '--partial',
                   '--report', str(tmp_path / 'rep')])
    assert out[0]['sequences'] == 2 and 'using 2 of the 280 LaSOT test sequences' in capsys.readouterr().err


def imported(nodes):
    """The (top-level) names of the modules that the import statements among `nodes` import."""
    import ast
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split('.')[0])
    return names


def test_the_scripts_import_one_way():
    """At the top of each file the imports go one way, common <- lorat <- data <- synthetic <- track <- evaluate
    (train: no track, no evaluate), so importing a file never imports one above it. Inside a function a file
    reaches up only where listed: data opens the synthetic world by name; track's demo prints evaluate's score."""
    import ast
    root = Path(__file__).resolve().parents[1]
    order = ['common', 'lorat', 'data', 'synthetic', 'track', 'evaluate']
    above = {name: set(order[k + 1:]) for k, name in enumerate(order)} | {'train': {'track', 'evaluate'}}
    reaching_up = {'data': {'synthetic'}, 'track': {'evaluate'}}  # imported when that function is called
    for name, forbidden in above.items():
        tree = ast.parse((root / f'{name}.py').read_text())
        assert not imported(tree.body) & forbidden, f"{name}.py imports {sorted(imported(tree.body) & forbidden)} at its top"
        up = imported(ast.walk(tree)) & forbidden
        assert up <= reaching_up.get(name, set()), f"{name}.py imports {sorted(up - reaching_up.get(name, set()))}"


# ----------------------------------------------------------------------------- the README's commands, as written

def write_frames(folder, boxes, name=lambda i: f"{i + 1:08d}.jpg", size=(160, 120)):
    """JPEG frames of a textured square moving through the boxes (x, y, w, h), over a grey background."""
    from PIL import Image, ImageDraw
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, (x, y, w, h) in enumerate(boxes):
        im = Image.new('RGB', size, (90, 100, 110))
        ImageDraw.Draw(im).rectangle([x, y, x + w, y + h], fill=(220, 40, 40), outline=(20, 20, 200), width=3)
        im.save(Path(folder) / name(i))


def box_text(boxes):
    return ''.join(f"{x},{y},{w},{h}\n" for x, y, w, h in boxes)


def standin_data(root):
    """Tiny trees in the published layouts of the paper's mix and LaSOT's test split, with real JPEGs."""
    boxes = np.array([[40 + 4 * i, 30 + 2 * i, 30, 24] for i in range(4)], dtype=np.float64)
    for n in data.read_split('lasot_train_split.txt')[:2] + data.read_split('lasot_test_split.txt')[:2]:
        folder = root / 'LaSOT' / n.split('-')[0] / n
        write_frames(folder / 'img', boxes)
        (folder / 'groundtruth.txt').write_text(box_text(boxes))
    train_ids = [int(i) for i in data.read_split('got10k_vot_train_split.txt')[:2] + data.read_split('got10k_vot_val_split.txt')[:1]]
    names = [f"GOT-10k_Train_{i + 1:06d}" for i in train_ids]
    for n in names:
        write_frames(root / 'GOT-10k' / 'train' / n, boxes)
        (root / 'GOT-10k' / 'train' / n / 'groundtruth.txt').write_text(box_text(boxes))
    (root / 'GOT-10k' / 'train' / 'list.txt').write_text('\n'.join(sorted(names)))
    (root / 'TrackingNet' / 'TRAIN_0' / 'anno').mkdir(parents=True)
    (root / 'TrackingNet' / 'TRAIN_0' / 'anno' / 'a.txt').write_text(box_text(boxes))
    write_frames(root / 'TrackingNet' / 'TRAIN_0' / 'frames' / 'a', boxes, name=lambda i: f"{i}.jpg")
    write_frames(root / 'COCO' / 'train2017', boxes[:1], name=lambda i: '000000000001.jpg')
    (root / 'COCO' / 'annotations').mkdir(parents=True)
    (root / 'COCO' / 'annotations' / 'instances_train2017.json').write_text(json.dumps(
        {'images': [{'id': 1, 'file_name': '000000000001.jpg'}],
         'annotations': [{'image_id': 1, 'bbox': boxes[0].tolist(), 'iscrowd': 0}]}))


def readme_command(start):
    """The README's 'Using it' command line that starts with `start`, as argv (continuation lines joined)."""
    import shlex
    text = (Path(__file__).resolve().parents[1] / 'README.md').read_text().replace('\\\n', ' ')
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return shlex.split(line.split('  #')[0])


def test_the_readme_train_track_evaluate_commands_work_as_written(tmp_path):
    """On stand-in data: the README's torchrun line (one process, size T on a stand-in DINOv2 file, a few
    steps; --partial for the trees' few sequences), then its track and evaluate lines verbatim but for
    the data root (and --partial): runs/L378/export.pt is what the later commands read."""
    import subprocess
    import lorat
    root = Path(__file__).resolve().parents[1]
    standin_data(tmp_path / 'data')
    model = lorat.build_model('T', lora_rank=0)  # a stand-in backbone file in DINOv2's layout
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(('head.', 'token_type_embed', 'pos_embed'))}
    backbone.update(cls_token=torch.zeros(1, 1, 128), mask_token=torch.zeros(1, 128), pos_embed=torch.randn(1, 1 + 37 * 37, 128))
    torch.save(backbone, tmp_path / 'dinov2_vitt14.pth')
    clip = np.array([[120 + 2 * i, 80 + i, 60, 40] for i in range(8)], dtype=np.float64)
    write_frames(tmp_path / 'frames', clip, size=(320, 240))
    from PIL import Image
    common.write_mp4(str(tmp_path / 'video.mp4'), (np.asarray(Image.open(p)) for p in sorted((tmp_path / 'frames').iterdir())))

    def run(argv):
        argv = [str(tmp_path / 'data') + a[len('/data'):] if a.startswith('/data') else a for a in argv]
        if argv[0] == 'torchrun':  # one process here
            argv = ['python'] + argv[2:]
        env = {k: v for k, v in os.environ.items() if k not in ('LORAT_DATA', 'DISPLAY', 'WAYLAND_DISPLAY')}
        out = subprocess.run([sys.executable, str(root / argv[1]), *argv[2:]], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{' '.join(argv)}\n{out.stderr[-3000:]}"
        return out

    train = readme_command('torchrun --nproc_per_node=8 train.py')
    i = train.index('--size')
    train[i:i + 4] = ['--size', 'T']  # --size L --res 378 -> T at its default resolution
    run(train + ['--weights', str(tmp_path / 'dinov2_vitt14.pth'), '--partial', '--epochs', '2', '--samples-per-epoch', '8',
                 '--batch-size', '4', '--val-samples', '4', '--threads', '1', '--workers', '0'])
    assert (tmp_path / 'runs' / 'L378' / 'export.pt').is_file()
    out = run(readme_command('python track.py video.mp4 --init'))
    assert out.stdout.strip().splitlines()[-1] == 'annotated video: video_lorat.mp4' and (tmp_path / 'video_lorat.mp4').is_file()
    out = run(readme_command('python evaluate.py run --dataset lasot') + ['--partial'])
    assert 'AUC' in out.stdout and '(2 seqs)' in out.stdout


# ----------------------------------------------------------------------------- bad inputs: one line each, nothing half-written

def got10k_val_tree(root, gt_text, frames=3, name='seq1'):
    write_frames(root / 'val' / name, [(10, 10, 20, 20)] * frames, size=(64, 48))
    (root / 'val' / 'list.txt').write_text(name + '\n')
    (root / 'val' / name / 'groundtruth.txt').write_text(gt_text)
    return root


def test_retrack_removes_only_the_result_files_it_writes(tmp_path):
    out = tmp_path / 'res'
    out.mkdir()
    for name in ('a.txt', 'a_time.txt', 'notes.txt', 'other_seq.txt'):
        (out / name).write_text('1,2,3,4\n')
    record = {'weights': 'w.pt', 'weights_sha256': '0' * 64, 'res': None, 'dtype': 'fp32'}
    ev.claim_result_folder(out, record, retrack=True, names=['a'])  # was: every *.txt deleted
    assert sorted(p.name for p in out.iterdir()) == [ev.MODEL_RECORD, 'notes.txt', 'other_seq.txt']


def test_results_longer_than_their_sequence_and_nan_ground_truth_are_named(tmp_path):
    root = got10k_val_tree(tmp_path / 'GOT-10k', '10,10,20,20\n' * 3)
    res = tmp_path / 'res'
    res.mkdir()
    (res / 'seq1.txt').write_text('10,10,20,20\n' * 9)  # another dataset's file, renamed: was scored silently
    with pytest.raises(SystemExit, match=r'seq1.txt: 9 boxes for the 3 frames of seq1') as e:
        ev.main(['score', '--dataset', 'got10k_val', '--root', str(root), '--results', str(res), '--report', str(tmp_path / 'r')])
    assert '\n' not in str(e.value.code)
    write_lasot(tmp_path / 'LaSOT', 'car-1', np.array([[50, 60, 100, 100], [np.nan] * 4, [50, 60, 100, 100]]))
    (res / 'car-1.txt').write_text(box_text(GT[:3]))
    with pytest.raises(SystemExit, match=r'car-1/groundtruth.txt: line 2 is not a number .*not the result'):
        ev.main(['score', '--dataset', 'lasot', '--root', str(tmp_path / 'LaSOT'), '--split', 'all', '--results', str(res),
                 '--skip-missing', '--report', str(tmp_path / 'r')])


@pytest.mark.parametrize('lines, message', [('1,1,2,2\n' * 2, r'2 boxes for the 4 frames'),
                                            ('1,1,2,2\nnan,nan,nan,nan\n1,1,2,2\n1,1,2,2\n', r'line 2 is not a finite box')])
def test_pack_refuses_short_or_nan_results_and_leaves_no_file(tmp_path, lines, message):
    seq = tmp_path / 'GOT-10k' / 'test' / 'GOT-10k_Test_000001'
    write_frames(seq, [(10, 10, 20, 20)] * 4, size=(64, 48))
    (seq / 'groundtruth.txt').write_text('10,10,20,20\n')
    (seq.parent / 'list.txt').write_text(seq.name + '\n')
    res = tmp_path / 'res'
    res.mkdir()
    (res / f"{seq.name}.txt").write_text(lines)
    with pytest.raises(SystemExit, match=message):
        ev.main(['pack', '--dataset', 'got10k_test', '--root', str(tmp_path / 'GOT-10k'), '--results', str(res)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['GOT-10k', 'res']  # no zip, no zip.tmp
    with pytest.raises(FileNotFoundError, match='no result for GOT-10k_Test_000002'):  # was: a .zip.tmp left behind
        ev.pack('trackingnet', res, ['GOT-10k_Test_000002'])
    assert not list(tmp_path.glob('*.tmp'))


@pytest.mark.parametrize('argv, message', [
    (['run', *SYNTHETIC, '--weights', 'w.pt', '--limit', '-1'], r'argument --limit: .*positive integer'),
    (['run', *SYNTHETIC, '--weights', 'w.pt', '--workers', '0'], r'argument --workers'),
    (['efficiency', '--sizes', 'B,X'], r"unknown model size 'X'"),
    (['efficiency', '--parts', 'model,speed'], r"argument --parts: .*unknown part 'speed'"),
    (['efficiency', '--frames', '0'], r'argument --frames'),
    (['score', '--dataset', 'otb', '--root', '.', '--split', 'nonsense', '--results', '.'], r'otb has no splits'),
    (['score', '--dataset', 'otb', '--root', 'EMPTY', '--results', '.'], r"holds no sequence in otb's layout"),
])
def test_bad_numbers_splits_and_roots_are_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'EMPTY').mkdir()
    with pytest.raises(SystemExit, match=message) as e:
        ev.main(argv)
    assert str(e.value.code).startswith('error: ') and '\n' not in str(e.value.code)


@pytest.mark.parametrize('gt, frames, message', [
    ('10,10,20,20\n' * 5, 3, r'5 boxes but frame 5 .* is missing'),  # more boxes than images
    ('nan,nan,nan,nan\n' + '10,10,20,20\n' * 2, 3, r'first box nan,nan,nan,nan is not a number'),
    ('10,10,0,20\n' + '10,10,20,20\n' * 2, 3, r'first box 10,10,0,20 is of zero size'),
    ('500,500,20,20\n' + '10,10,20,20\n' * 2, 3, r'lies outside the 64x48 first frame'),
    ('', 3, r'holds no box'),
])
def test_run_checks_each_sequence_against_its_frames_before_tracking(tmp_path, gt, frames, message):
    root = got10k_val_tree(tmp_path / 'GOT-10k', gt, frames)
    weights = tiny_export(tmp_path / 'w.pt', 0)
    with pytest.raises(SystemExit, match=message) as e:  # was: a traceback mid-run, or a tracker started on it
        ev.main(['run', '--dataset', 'got10k_val', '--root', str(root), '--weights', weights, '--out', str(tmp_path / 'out')])
    assert str(e.value.code).startswith('error: ') and '\n' not in str(e.value.code) and 'seq1' in str(e.value.code)


def test_run_with_a_backbone_as_weights_says_what_it_is(tmp_path):
    import lorat
    with pytest.raises(SystemExit, match=r'is a backbone .*give it as --backbone'):
        ev.main(['run', *SYNTHETIC, '--weights', str(lorat.T_BACKBONE), '--out', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()
