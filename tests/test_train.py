"""train.py on the CPU, tiny: size T, a few steps of small batches on the synthetic world."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import lorat  # noqa: E402
import train  # noqa: E402

TINY = ['--samples-per-epoch', '16', '--batch-size', '8', '--epochs', '2', '--val-samples', '8', '--threads', '1',
        '--workers', '0', '--log-every', '1000']
SCRATCH = [*TINY, '--scratch']


def run(tmp_path, name, *flags):
    """A tiny run from scratch (flags may override; --weights turns --scratch off)."""
    base = TINY if '--weights' in flags else SCRATCH
    return train.main([*base, '--out', str(tmp_path), '--name', name, *flags])


def cli(*argv, **kwargs):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])}
    env.pop('LORAT_DATA', None)
    return subprocess.run([*argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def ckpt(tmp_path, name):
    return torch.load(tmp_path / name / 'ckpt.pt', weights_only=True)


def log(tmp_path, name):
    return [json.loads(line) for line in open(tmp_path / name / 'log.jsonl')]


def fake_dinov2(path, size='T'):
    """A DINOv2-layout file of a size (T: width 128, depth 4): random weights, the official key layout."""
    model = lorat.build_model(size, 112, lora_rank=0)
    dim = model.cfg.dim
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(('head.', 'token_type_embed', 'pos_embed'))}
    sd.update(cls_token=torch.randn(1, 1, dim), mask_token=torch.zeros(1, dim), pos_embed=torch.randn(1, 1 + 37 * 37, dim))
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
    flags = [sys.executable, 'train.py', *SCRATCH, '--out', str(tmp_path), '--epochs', '3', '--workers', '1']
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
              *SCRATCH, '--out', str(tmp_path), '--name', 'ddp', '--epochs', '1')
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
    with pytest.raises(SystemExit, match=r"cannot resume .* T-140 .* S-224"):
        run(tmp_path, 'small', '--epochs', '1', '--size', 'S', '--data', 'synthetic', '--resume', str(tmp_path / 'small'))
    with pytest.raises(SystemExit, match=r"--batch-size 8 vs 16"):
        run(tmp_path, 'small', '--epochs', '1', '--batch-size', '16', '--resume', str(tmp_path / 'small'))


@pytest.mark.parametrize('flags, message', [
    (['--data', 'lasot'], r'--data-root.*LORAT_DATA'),
    (['--weights', 'no_such_dinov2.pth'], r'no_such_dinov2.pth'),
    (['--data', 'no_such_dataset', '--data-root', '.'], r'no_such_dataset'),
    (['--res', '300'], r'resolution 300'),
    # the paper's command with nothing else: it wants real data (and then DINOv2), never the synthetic world from scratch
    (['--size', 'L', '--res', '378'], r'--data-root DIR or set LORAT_DATA=DIR, DIR holding LaSOT/, GOT-10k/, TrackingNet/, COCO/'),
    (['--dtype', 'fp17'], r'--dtype fp17: choose one of fp32, bf16, fp16'),
    (['--scratch', '--dtype', 'fp16', '--device', 'cpu'], r'fp16 is for GPUs without bf16.*on the CPU use fp32 or bf16'),
    (['--scratch', '--weights', 'x.pth'], r'--scratch .* --weights'),
    (['--scratch', '--device', 'gpu'], r'--device gpu: not a device'),
    pytest.param(['--scratch', '--device', 'cuda'], r'--device cuda, but no CUDA GPU is visible',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible')),
])
def test_bad_input_is_one_line(tmp_path, flags, message):
    out = cli(sys.executable, 'train.py', '--out', str(tmp_path), *flags)
    assert out.returncode != 0
    assert 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert pytest.importorskip('re').search(message, out.stderr), out.stderr


def test_benchmark_compares_lora_with_full_finetuning(capsys):
    res = train.main(['--benchmark', '--size', 'T', '--bench-steps', '1', '--threads', '1', '--grad-checkpoint'])
    assert res['lora']['trainable_m'] < res['full']['trainable_m'] and res['lora + ckpt']['peak_gb'] > 0
    out = capsys.readouterr().out
    assert res['lora']['peak_gb'] > 0 and 'LoRA / full' in out and 'checkpointing / not' in out
    # the paper trains g-378 at batch 16 in 25.8 GB: without checkpointing this code would not, with it it does
    without, with_ = res['g-378 estimate'], res['g-378 estimate + ckpt']
    assert with_['peak_gb'] < 25.8 < without['peak_gb'] and 'the paper: 25.8 GB' in out
    assert 20 < without['bytes_per_token_channel'] < 60  # bf16 activations, a few dozen tensors per block


# ----------------------------------------------------------------------------- defaults, dtypes, devices, faults

def test_without_weights_a_size_takes_dinov2_from_the_hub_cache(tmp_path, monkeypatch):
    """No --weights, size S: LoRA on dinov2_vits14_pretrain.pth of torch hub's cache, never from scratch;
    the run ends with a merged export.pt."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / 'dinov2_vits14_pretrain.pth'
    cached.parent.mkdir(parents=True)
    fake_dinov2(cached, 'S')
    run_dir, _ = train.main([*TINY, '--size', 'S', '--res', '112', '--data', 'synthetic', '--epochs', '1',
                             '--val-samples', '0', '--out', str(tmp_path), '--name', 's'])
    c = ckpt(tmp_path, 's')
    assert c['weights'] == str(cached) and c['weights_sha256'] == common.file_sha256(cached)
    assert c['config']['lora_rank'] == lorat.SIZES['S'].lora_rank
    assert c['model'] and all('.lora.' in k or k.startswith(('head.', 'token_type_embed')) for k in c['model'])
    assert lorat.load_model(os.path.join(run_dir, 'export.pt')).cfg.size == 'S'


def test_the_paper_command_offline_names_the_url_and_the_flag(tmp_path, monkeypatch):
    """`train.py --size L --res 378` with an empty hub cache and no network: one line, the URL and --weights."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(lorat, 'DINOV2_URL', 'http://127.0.0.1:9/dinov2_vit{s}14/dinov2_vit{s}14_pretrain.pth')  # nobody listens
    with pytest.raises(SystemExit) as e:
        train.main(['--size', 'L', '--res', '378', '--data', 'synthetic', '--out', str(tmp_path), '--threads', '1'])
    text = str(e.value.code)
    assert text.startswith('error: cannot download http://127.0.0.1:9/dinov2_vitl14/dinov2_vitl14_pretrain.pth'), text
    assert '--weights' in text and '\n' not in text
    assert not list((tmp_path / 'torch').rglob('*.pth'))  # no half file left in the cache


def test_bf16_on_the_cpu_is_what_it_says(tmp_path, capsys):
    run(tmp_path, 'fp32', '--epochs', '1')
    run(tmp_path, 'bf16', '--epochs', '1', '--dtype', 'bf16')
    out = capsys.readouterr().out
    assert 'fp32 on cpu' in out and 'bf16 on cpu' in out
    a, b = ckpt(tmp_path, 'fp32'), ckpt(tmp_path, 'bf16')
    assert a['args']['dtype'] == 'fp32' and b['args']['dtype'] == 'bf16'
    assert any(not torch.equal(a['model'][k], b['model'][k]) for k in a['model'])  # bf16 autocast really ran


def test_ctrl_c_saves_this_step_and_prints_the_resume_command(tmp_path):
    flags = [sys.executable, 'train.py', *SCRATCH, '--out', str(tmp_path), '--epochs', '3', '--workers', '1']
    assert cli(*flags, '--name', 'whole').returncode == 0
    stopped = cli(*flags, '--name', 'cut', '--interrupt-at', '3')  # mid-epoch 2: no epoch-end checkpoint here
    assert stopped.returncode == 130, stopped.stderr
    assert ckpt(tmp_path, 'cut')['step'] == 3 and not (tmp_path / 'cut' / 'export.pt').exists()
    last = stopped.stdout.strip().splitlines()[-1]
    assert last.startswith('resume with: python train.py '), stopped.stdout
    argv = shlex.split(last[len('resume with: python '):])
    assert argv[-2:] == ['--resume', str(tmp_path / 'cut')] and '--interrupt-at' not in argv
    resumed = cli(sys.executable, *argv)
    assert resumed.returncode == 0, resumed.stderr
    a, b = ckpt(tmp_path, 'whole'), ckpt(tmp_path, 'cut')
    assert a['step'] == b['step'] == 6
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k


def test_ctrl_c_under_torchrun_saves_every_rank_at_one_step(tmp_path):
    """The terminal's Ctrl-C hits the whole process group: torchrun's agent and both ranks."""
    env = {**os.environ, 'PYTHONPATH': ROOT}
    proc = subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29537',
                             'train.py', *SCRATCH, '--out', str(tmp_path), '--name', 'ddp', '--epochs', '500'],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    logfile = tmp_path / 'ddp' / 'log.jsonl'
    for _ in range(1200):  # wait for a few steps
        if logfile.exists() and len(logfile.read_text().splitlines()) >= 3:
            break
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    steps = [r['step'] for r in log(tmp_path, 'ddp')]
    saved = ckpt(tmp_path, 'ddp')
    assert saved['step'] == steps[-1] < 1000, (steps, err[-2000:])
    assert len(saved['rng']) == 2  # both ranks took part in the save
    last = [line for line in out.splitlines() if line.startswith('resume with: ')]
    assert last == [f"resume with: torchrun --nproc_per_node=2 train.py {shlex.join(SCRATCH)} --out {tmp_path} "
                    f"--name ddp --epochs 500 --resume {tmp_path / 'ddp'}"], out[-2000:]
    assert 'KeyboardInterrupt' not in err


def test_resuming_a_damaged_or_foreign_checkpoint_is_one_line(tmp_path):
    run(tmp_path, 'r', '--epochs', '1')
    path = tmp_path / 'r' / 'ckpt.pt'
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    for resume, message in ((tmp_path / 'r', 'ckpt.pt: the file is damaged'),
                            (tmp_path / 'r' / 'export.pt', 'not a train.py ckpt.pt')):
        with pytest.raises(SystemExit) as e:
            run(tmp_path, 'r', '--epochs', '1', '--resume', str(resume))
        text = str(e.value.code)
        assert text.startswith('error: --resume') and message in text and '\n' not in text, text


def test_checkpoint_names_its_backbone_by_absolute_path_and_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_dinov2(tmp_path / 'dino.pth')
    run(tmp_path, 'lora', '--weights', 'dino.pth', '--epochs', '1', '--val-samples', '0')  # relative, as typed
    c, path = ckpt(tmp_path, 'lora'), str(tmp_path / 'lora' / 'ckpt.pt')
    assert c['weights'] == str(tmp_path / 'dino.pth') and c['weights_sha256'] == common.file_sha256('dino.pth')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    lorat.load_model(path)  # found from another folder
    os.rename(tmp_path / 'dino.pth', tmp_path / 'moved.pth')
    with pytest.raises(FileNotFoundError, match=r'its backbone .*dino.pth is not there: pass --backbone FILE'):
        lorat.load_model(path)
    assert lorat.load_model(path, backbone=str(tmp_path / 'moved.pth')).cfg.lora_rank == 0
    other = fake_dinov2(tmp_path / 'other.pth')
    with pytest.raises(ValueError, match=r'other.pth is not the backbone .* was trained on .*--backbone'):
        lorat.load_model(path, backbone=other)


def test_export_merges_a_cpu_copy_and_leaves_the_model_alone(tmp_path):
    torch.manual_seed(0)
    model = lorat.build_model('T', lora_rank=4).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.lora.' in name:
                p.normal_(0, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = lorat.load_model(train.export(str(tmp_path), model))
    after = model.state_dict()
    assert model.cfg.lora_rank == 4 and after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the training model is untouched
    cfg = model.cfg
    z, x = torch.randn(2, 3, cfg.template_size, cfg.template_size), torch.randn(2, 3, cfg.search_size, cfg.search_size)
    z_mask = torch.randint(0, 2, (2, cfg.template_grid, cfg.template_grid))
    with torch.no_grad():
        (s, b), (s_ref, b_ref) = merged(z, x, z_mask), model(z, x, z_mask)
    assert torch.allclose(s, s_ref, atol=1e-4) and torch.allclose(b, b_ref, atol=1e-5)


def test_deterministic_flag_turns_on_deterministic_kernels(monkeypatch):
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', 'x')
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG')  # unset now, unset again after the test
    threads = torch.get_num_threads()
    try:
        train.setup(train.parse_args(['--scratch', '--deterministic', '--device', 'cpu', '--threads', '1']))
        assert torch.are_deterministic_algorithms_enabled() and os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def test_a_short_got10k_list_is_one_line_without_partial(tmp_path):
    """LoRAT's mix reads GOT-10k's vot_train split, indices into the official 9335-line train/list.txt."""
    split = open(os.path.join(ROOT, 'splits', 'got10k_vot_train_split.txt')).read().split()[:2]
    names = [f"GOT-10k_Train_{int(i) + 1:06d}" for i in split]
    for n in names:
        os.makedirs(tmp_path / 'GOT-10k' / 'train' / n)
        (tmp_path / 'GOT-10k' / 'train' / n / 'groundtruth.txt').write_text('1,2,30,20\n')
    (tmp_path / 'GOT-10k' / 'train' / 'list.txt').write_text('\n'.join(names))
    out = cli(sys.executable, 'train.py', '--scratch', '--data', 'got10k,synthetic', '--data-root', str(tmp_path),
              '--out', str(tmp_path / 'runs'))
    assert out.returncode != 0 and 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert str(tmp_path / 'GOT-10k' / 'train' / 'list.txt') in out.stderr and 'pass --partial to use the 2 present' in out.stderr


# -----------------------------------------------------------------------------
# The default run: the paper's recipe on the shipped T backbone


def run_default(tmp_path, name, *flags):
    """A tiny run of the default recipe (no --scratch, no --weights: the shipped backbone)."""
    return train.main([*TINY, '--out', str(tmp_path), '--name', name, *flags])


def test_default_recipe_trains_lora_type_table_and_head_on_the_shipped_backbone(tmp_path):
    args = train.parse_args([])
    assert not args.scratch and args.weights is None and args.lora_rank == 16 and args.size == 'T'
    assert args.data == 'synthetic,synthetic_stills' and args.data_weights == '3,1'
    run_dir, model = run_default(tmp_path, 'default', '--epochs', '1', '--warmup-epochs', '0')
    # T's resolution, chosen by measurement (RESULTS.md): search 140 px = 10x10 tokens, template 70 px = 5x5
    cfg = model.cfg
    assert (cfg.res, cfg.search_size, cfg.template_size) == (140, 140, 70)
    assert (cfg.search_grid, cfg.template_grid) == (10, 5)
    score, boxes = model.eval()(torch.zeros(1, 3, 70, 70), torch.zeros(1, 3, 140, 140), torch.ones(1, 5, 5, dtype=torch.long))
    assert score.shape[-2:] == (10, 10) and boxes.shape[-3:] == (10, 10, 4)  # one score and box per search token
    shipped = torch.load(lorat.T_BACKBONE, map_location='cpu', weights_only=True)
    ours = model.state_dict()
    for k, v in shipped.items():  # every backbone tensor is the file's, after the steps
        if k in ('cls_token', 'mask_token'):
            continue
        want = lorat.resize_pos_embed(v[:, 1:], cfg.search_grid) if k == 'pos_embed' else v  # the 8x8 grid, resized once
        assert torch.equal(ours[k], want), k
    trained = set(ckpt(tmp_path, 'default')['model'])
    assert any('.lora.' in k for k in trained) and 'token_type_embed' in trained
    assert all('.lora.' in k or k.startswith(('head.', 'token_type_embed')) for k in trained)
    assert ckpt(tmp_path, 'default')['weights'] == str(lorat.T_BACKBONE)
    assert os.path.isfile(os.path.join(run_dir, 'export.pt'))  # merged for track.py


def test_a_short_default_run_beats_the_same_run_from_scratch_on_held_out_pairs(tmp_path):
    short = ['--epochs', '1', '--samples-per-epoch', '1280', '--batch-size', '8', '--val-samples', '64',
             '--warmup-epochs', '0.1', '--lr', '1e-3', '--augment', 'off']  # 160 steps: the fresh head has to learn
    run_default(tmp_path, 'pretrained', *short)
    run_default(tmp_path, 'scratch', *short, '--scratch')
    held_out = {name: log(tmp_path, name)[-2]['val_iou'] for name in ('pretrained', 'scratch')}
    assert held_out['pretrained'] > held_out['scratch'] + 0.05, held_out


def test_conv_head_checkpoint_keeps_its_batchnorm_statistics(tmp_path):
    run_dir, _ = run_default(tmp_path, 'conv', '--head', 'conv', '--epochs', '1')
    saved = ckpt(tmp_path, 'conv')['model']
    assert 'head.cls_tower.1.running_mean' in saved and 'head.reg_tower.1.num_batches_tracked' in saved
    rebuilt = lorat.load_model(os.path.join(run_dir, 'ckpt.pt')).state_dict()
    exported = lorat.load_model(os.path.join(run_dir, 'export.pt')).state_dict()
    for k in exported:
        torch.testing.assert_close(rebuilt[k], exported[k], msg=k)


def test_a_resumed_run_keeps_its_thread_count(tmp_path, monkeypatch, capsys):
    """The thread count changes the rounding of the model's sums: a resume must not choose anew."""
    flags = [f for f in SCRATCH if f not in ('--threads', '1')] + ['--out', str(tmp_path), '--name', 'r', '--epochs', '1']
    threads = torch.get_num_threads()
    try:
        train.main(flags)
        first = ckpt(tmp_path, 'r')['args']['threads']
        assert first == common.available_cpus() and f"({first} threads + 0 loader workers)" in capsys.readouterr().out
        monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(first + 5)))  # another machine or job
        train.main(flags + ['--resume', str(tmp_path / 'r')])
        assert f"({first} threads + 0 loader workers)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize('flag, value', [
    ('--lora-rank', '-4'), ('--batch-size', '0'), ('--accum', '0'), ('--threads', '-1'), ('--val-samples', '-5'),
    ('--epochs', '0'), ('--lr', 'nan'), ('--clip', '-1'), ('--seed', '-1'), ('--data-weights', '3,-1'),
    ('--data-weights', '0,0'), ('--data-weights', 'nan,1'), ('--data-weights', 'inf,1'), ('--data', 'synthtic'),
])
def test_numbers_weights_and_dataset_names_are_checked_at_parse_time(flag, value):
    with pytest.raises(SystemExit) as e:  # was: trained rank 0, one dataset only, `__len__() should return >= 0`...
        train.parse_args([flag, value])
    text = str(e.value.code)
    assert text.startswith(f'error: argument {flag}: ') and '\n' not in text, text
    if flag == '--data':
        assert "unknown dataset 'synthtic'" in text and 'data root' not in text  # was: "no data root is given"


def test_a_finished_run_is_never_overwritten(tmp_path):
    run_dir = tmp_path / 'fin'
    run_dir.mkdir()
    files = {'ckpt.pt': 'c', 'export.pt': 'e', 'log.jsonl': '{"step": 2}\n{"step": 2, "done": true}\n'}
    for name, text in files.items():
        (run_dir / name).write_text(text)
    with pytest.raises(SystemExit) as e:  # was: ckpt.pt and export.pt replaced, a second run appended to the log
        run(tmp_path, 'fin')
    text = str(e.value.code)
    assert 'already holds a finished run (2 steps)' in text and f'--resume {run_dir}' in text and '--name' in text
    assert '\n' not in text and {n: (run_dir / n).read_text() for n in files} == files


def test_a_tracker_export_as_weights_says_how_to_take_its_backbone(tmp_path):
    from dataclasses import asdict
    model = lorat.build_model('T', lora_rank=0)
    torch.save({'config': asdict(model.cfg), 'model': model.state_dict(), 'merged': True}, tmp_path / 'export.pt')
    with pytest.raises(SystemExit) as e:  # was: "pass --size unknown"
        run(tmp_path, 'x', '--weights', str(tmp_path / 'export.pt'))
    text = str(e.value.code)
    assert 'is a tracker export' in text and 'lorat.py --export-backbone' in text and '--size' not in text


def test_a_training_step_reads_nothing_back_from_the_device():
    """Forward, loss, backward, the logged gradient norms, clipping and AdamW of every size on the meta device,
    where any host read of a device value (.item(), a shape that depends on the data: boxes[pos]) raises.
    On a GPU those reads are syncs: the host would wait for the queue at every step."""
    probe = torch.ones(2, 4, device='meta')
    with pytest.raises(Exception):  # the harness catches what it claims to catch
        probe.sum().item()
    with pytest.raises(Exception):
        probe[probe > 0]
    for size in lorat.SIZES:
        with torch.device('meta'):
            model = lorat.build_model(size).train()
        model.grad_checkpoint = size == 'L'  # checkpointing too: its recompute must not read the device either
        cfg, B = model.cfg, 2
        optimizer = torch.optim.AdamW(train.param_groups(model, 0.1, 1.0), lr=1e-4)  # fused has no meta kernel
        z = torch.empty(B, 3, cfg.template_size, cfg.template_size, device='meta')
        x = torch.empty(B, 3, cfg.search_size, cfg.search_size, device='meta')
        z_mask = torch.zeros(B, cfg.template_grid, cfg.template_grid, dtype=torch.long, device='meta')
        score, boxes = model(z, x, z_mask)
        loss, parts = lorat.lorat_loss(score, boxes, torch.empty(B, 4, device='meta'), num_pos_fn=lambda n: n / 2)
        loss.backward()
        groups, params = train.grad_groups(model), [p for p in model.parameters() if p.requires_grad]
        norms = torch.stack([train.grad_norm(ps) for ps in groups.values()])
        total = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        assert norms.shape == (len(groups),) and total.device.type == 'meta' and parts['iou'].device.type == 'meta'


def test_logged_gradient_norms_match_a_direct_computation():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    for p in params:
        p.grad = torch.randn_like(p)
    expected = torch.cat([p.grad.flatten() for p in params]).norm()
    torch.testing.assert_close(train.grad_norm(params), expected)
    assert train.grad_norm([torch.nn.Parameter(torch.randn(3))]).item() == 0.0  # no gradient yet: 0, not an error


def test_the_resume_command_of_a_multi_node_run_names_the_nodes(monkeypatch):
    argv = ['--size', 'L', '--out', '/shared/runs', '--interrupt-at', '3']
    assert train.resume_command(argv, '/shared/runs/x', world=1) == "python train.py --size L --out /shared/runs --resume /shared/runs/x"
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '8')
    assert train.resume_command(argv, '/r', world=8).startswith("torchrun --nproc_per_node=8 train.py ")
    monkeypatch.setenv('MASTER_ADDR', 'node0')
    monkeypatch.setenv('MASTER_PORT', '29400')
    assert train.resume_command(argv, '/r', world=16) == (
        "torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=node0:29400 "
        "train.py --size L --out /shared/runs --resume /r")


def test_precision_is_chosen_after_set_device_and_without_emulated_bf16(monkeypatch):
    """A V100 or T4 emulates bf16 (slowly): they must get fp16 with loss scaling; and every rank must ask
    about its own GPU, not open a context on GPU 0 first."""
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: calls.append(('set_device', str(d))))
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported',
                        lambda including_emulation=True: calls.append(('bf16', including_emulation)) or including_emulation)
    args = train.parse_args(['--device', 'cuda:1'])
    train.setup(args)
    assert calls == [('set_device', 'cuda:1'), ('bf16', False)] and args.dtype == 'fp16'


def test_the_backbone_is_built_on_meta_and_takes_the_files_tensors(tmp_path):
    args = train.parse_args(['--size', 'T', '--weights', fake_dinov2(tmp_path / 'b.pth')])
    model, mode = train.build(args)
    reference = lorat.build_model('T', lora_rank=args.lora_rank)
    lorat.load_dinov2(reference, str(tmp_path / 'b.pth'))
    assert mode == 'lora' and not any(p.is_meta for p in model.parameters())
    ours, theirs = model.state_dict(), reference.state_dict()
    for k in theirs:
        if not ('.lora.' in k or k.startswith(('head.', 'token_type_embed'))):
            assert torch.equal(ours[k], theirs[k]), k
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {n for n, p in reference.named_parameters() if p.requires_grad}
