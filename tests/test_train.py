"""train.py on the CPU, tiny: size T, a few steps of small batches on the synthetic world."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lorat  # noqa: E402
import train  # noqa: E402

TINY = ['--samples-per-epoch', '16', '--batch-size', '8', '--epochs', '2', '--val-samples', '8', '--threads', '1',
        '--workers', '0', '--log-every', '1000']


def run(tmp_path, name, *flags):
    return train.main([*TINY, '--out', str(tmp_path), '--name', name, *flags])


def cli(*argv, **kwargs):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])}
    env.pop('LORAT_DATA', None)
    return subprocess.run([*argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def ckpt(tmp_path, name):
    return torch.load(tmp_path / name / 'ckpt.pt', weights_only=True)


def log(tmp_path, name):
    return [json.loads(line) for line in open(tmp_path / name / 'log.jsonl')]


def fake_dinov2(path):
    """A DINOv2-layout file of width 128 and depth 4 (size T): random weights, the official key layout."""
    model = lorat.build_model('T', lora_rank=0)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(('head.', 'token_type_embed', 'pos_embed'))}
    sd.update(cls_token=torch.randn(1, 1, 128), mask_token=torch.zeros(1, 128), pos_embed=torch.randn(1, 1 + 37 * 37, 128))
    torch.save(sd, path)
    return str(path)


def test_a_few_steps_reduce_the_loss(tmp_path):
    run_dir, _ = run(tmp_path, 'fit', '--epochs', '12', '--lr', '2e-3')
    losses = [r['loss'] for r in log(tmp_path, 'fit') if 'loss' in r]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    records = log(tmp_path, 'fit')
    assert records[-1]['done'] and 'val_iou' in records[-2]
    assert {'grad_norm/backbone', 'grad_norm/type_embed', 'grad_norm/head'} <= set(records[0])
    assert open(tmp_path / 'latest').read().strip() == 'fit'
    model = lorat.load_model(os.path.join(run_dir, 'export.pt'))  # the merged export loads for inference
    assert model.cfg.size == 'T'


def test_lora_trains_only_lora_type_table_and_head(tmp_path):
    weights = fake_dinov2(tmp_path / 'dinov2_vitt14.pth')
    torch.manual_seed(0)
    before, _ = train.build(train.parse_args(['--weights', weights]))
    _, after = run(tmp_path, 'lora', '--weights', weights, '--lr', '1e-3', '--epochs', '1', '--warmup-epochs', '0')
    trained = set(ckpt(tmp_path, 'lora')['model'])
    assert trained and all('.lora.' in k or k.startswith(('head.', 'token_type_embed')) for k in trained)
    assert any('.lora.' in k for k in trained)
    start, end = before.state_dict(), after.state_dict()
    for k in end:
        assert torch.equal(start[k], end[k]) != (k in trained), k  # trained ones moved, frozen ones did not
    # the small checkpoint + the backbone rebuild the trained model
    model = lorat.load_model(str(tmp_path / 'lora' / 'ckpt.pt'), backbone=weights)
    assert model.cfg.lora_rank == 0


def test_gradient_accumulation_2x4_equals_one_batch_of_8(tmp_path):
    run(tmp_path, 'one', '--epochs', '1')
    run(tmp_path, 'two', '--epochs', '1', '--accum', '2')
    a, b = ckpt(tmp_path, 'one')['model'], ckpt(tmp_path, 'two')['model']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    la, lb = log(tmp_path, 'one'), log(tmp_path, 'two')
    assert la[0]['loss'] == pytest.approx(lb[0]['loss'], rel=1e-5)


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    flags = [sys.executable, 'train.py', *TINY, '--out', str(tmp_path), '--epochs', '3', '--workers', '1']
    assert cli(*flags, '--name', 'whole').returncode == 0
    killed = cli(*flags, '--name', 'cut', '--kill-at', '5')  # mid-epoch 3: step 5 is lost
    assert killed.returncode == -9
    assert ckpt(tmp_path, 'cut')['step'] == 4  # the end of epoch 2
    resumed = cli(*flags, '--name', 'cut', '--resume', str(tmp_path / 'cut'))
    assert resumed.returncode == 0, resumed.stderr
    a, b = ckpt(tmp_path, 'whole'), ckpt(tmp_path, 'cut')
    assert a['step'] == b['step'] == 6
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    assert [r['step'] for r in log(tmp_path, 'cut') if 'loss' in r] == list(range(1, 7))


def test_torchrun_two_ranks_end_with_identical_weights(tmp_path):
    out = cli(sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29533', 'train.py',
              *TINY, '--out', str(tmp_path), '--name', 'ddp', '--epochs', '1')
    assert out.returncode == 0, out.stderr[-2000:]
    hashes = log(tmp_path, 'ddp')[-1]['rank_hashes']
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    # and the two ranks together computed what one process does with the whole batch
    run(tmp_path, 'single', '--epochs', '1')
    a, b = ckpt(tmp_path, 'ddp')['model'], ckpt(tmp_path, 'single')['model']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_resuming_a_checkpoint_of_another_size_fails_clearly(tmp_path):
    run(tmp_path, 'small', '--epochs', '1')
    with pytest.raises(SystemExit, match=r"cannot resume .* T-112 .* S-224"):
        run(tmp_path, 'small', '--epochs', '1', '--size', 'S', '--resume', str(tmp_path / 'small'))
    with pytest.raises(SystemExit, match=r"--batch-size 8 vs 16"):
        run(tmp_path, 'small', '--epochs', '1', '--batch-size', '16', '--resume', str(tmp_path / 'small'))


@pytest.mark.parametrize('flags, message', [
    (['--data', 'lasot'], r'--data-root.*LORAT_DATA'),
    (['--weights', 'no_such_dinov2.pth'], r'no_such_dinov2.pth'),
    (['--data', 'no_such_dataset', '--data-root', '.'], r'no_such_dataset'),
    (['--res', '300'], r'resolution 300'),
])
def test_bad_input_is_one_line(tmp_path, flags, message):
    out = cli(sys.executable, 'train.py', '--out', str(tmp_path), *flags)
    assert out.returncode != 0
    assert 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert pytest.importorskip('re').search(message, out.stderr), out.stderr


def test_benchmark_compares_lora_with_full_finetuning(capsys):
    res = train.main(['--benchmark', '--size', 'T', '--bench-steps', '1', '--threads', '1'])
    assert res['lora']['trainable_m'] < res['full']['trainable_m']
    assert res['lora']['peak_gb'] > 0 and 'LoRA / full' in capsys.readouterr().out
