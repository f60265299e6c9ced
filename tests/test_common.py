"""Tests of common.py: files written whole, cores and loader workers, devices, precision, timing, command-line values."""
import os
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import lorat  # noqa: E402  (models whose training cost the thread choice weighs)


# ----------------------------------------------------------------------------- files written whole

def test_the_atomic_writer_removes_its_tmp_on_any_failure_and_says_why_in_one_line(tmp_path):
    import errno
    target = tmp_path / 'out.bin'

    def full_disk(tmp):
        open(tmp, 'wb').write(b'half')
        raise OSError(errno.ENOSPC, 'No space left on device')

    def refuses(tmp):  # a SystemExit raised inside the writer (pack's checks) skipped the cleanup
        open(tmp, 'wb').write(b'half')
        raise SystemExit('error: something')

    def interrupted(tmp):
        open(tmp, 'wb').write(b'half')
        raise KeyboardInterrupt
    with pytest.raises(OSError, match=r'^cannot write .*out.bin: the disk is full'):
        common.write_atomic(target, full_disk)
    with pytest.raises(SystemExit, match='error: something'):
        common.write_atomic(target, refuses)
    with pytest.raises(KeyboardInterrupt):
        common.write_atomic(target, interrupted)
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'file').write_text('x')
    for path, message in [(tmp_path / 'folder', 'it is a folder'), (tmp_path / 'file' / 'x.pt', 'not a folder')]:
        with pytest.raises(OSError, match=message) as e:
            common.write_atomic(path, lambda tmp: torch.save({}, tmp))
        assert '\n' not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file', 'folder']  # no .tmp anywhere


def test_sigterm_while_writing_leaves_no_tmp(tmp_path):
    script = (f"import sys, time; sys.path.insert(0, {ROOT!r}); import common\n"
              f"def slow(tmp):\n    open(tmp, 'w').write('half'); print('writing', flush=True); time.sleep(30)\n"
              f"common.write_atomic({str(tmp_path / 'out.txt')!r}, slow)\n")
    p = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'writing'
    p.terminate()
    assert p.wait(timeout=20) != 0
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- cores: threads and loader workers

def test_loader_workers_per_rank_count_the_ranks_of_this_node(monkeypatch):
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)  # the machine's cores: not what the job was given
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(16)))  # the job's CPU affinity
    assert common.default_workers('cuda:3', local_world=8) == 2  # 8 ranks share this job's 16 cores
    assert common.default_workers('cuda:0', local_world=1) == 8 and common.default_workers('cpu', 1) == 1


def test_the_loader_counts_as_busy_only_when_the_model_would_outrun_it():
    data_s, core = 0.010, 50e9  # 10 ms of a core per sample (the synthetic world), a 50 GFLOP/s core
    tiny, big = lorat.build_model('T', 112, lora_rank=0), lorat.build_model('S', 224, lora_rank=0)  # T-112: 4x4 + 8x8 tokens
    assert common.train_flops(tiny) == 6 * sum(p.numel() for p in tiny.parameters()) * (4 * 4 + 8 * 8)
    assert common.loader_is_busy(data_s, common.train_flops(tiny) / core, cores=2, workers=1)  # ~10 ms per sample
    assert not common.loader_is_busy(data_s, common.train_flops(big) / core, cores=2, workers=1)  # ~0.85 s per sample
    assert not common.loader_is_busy(data_s, common.train_flops(tiny) / core, cores=2, workers=0)
    assert common.default_threads(1, busy_loader=True) == max(1, common.available_cpus() - 1)
    assert common.default_threads(1, busy_loader=False) == common.available_cpus()


# ----------------------------------------------------------------------------- devices, precision, timing

def test_devices_are_checked_in_one_line_and_torchrun_ranks_get_their_own_gpu(monkeypatch):
    assert common.resolve_device('cpu') == 'cpu'
    with pytest.raises(ValueError, match=r'^--device gpu: not a device'):
        common.resolve_device('gpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match=r'^--device cuda:0, but no CUDA GPU is visible: use --device cpu$'):
        common.resolve_device('cuda:0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # a node with two GPUs, as the code sees it
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert common.resolve_device('cuda') == 'cuda:0' and common.resolve_device('cuda:1') == 'cuda:1'
    assert common.resolve_device('cuda', local_rank=1) == 'cuda:1'
    with pytest.raises(ValueError, match='each rank takes the GPU of its LOCAL_RANK'):
        common.resolve_device('cuda:1', local_rank=0)
    with pytest.raises(ValueError, match=r'only 2 CUDA GPU\(s\) are visible \(torchrun started more ranks'):
        common.resolve_device('cuda', local_rank=2)
    with pytest.raises(ValueError, match=r'--device cuda:5, but only 2'):
        common.resolve_device('cuda:5')


def test_one_precision_default_for_training_and_inference(monkeypatch):
    """fp32 on the CPU; on a GPU, training bf16 where the hardware has it (else fp16 with loss scaling), inference
    fp16 (the authors' evaluation)."""
    assert common.default_dtype('cpu', training=True) == common.default_dtype('cpu', training=False) == 'fp32'
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)
    assert common.default_dtype('cuda:1', training=True) == 'bf16' and common.default_dtype('cuda', training=False) == 'fp16'
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    assert common.default_dtype('cuda:0', training=True) == 'fp16'  # emulated bf16 (a V100, a T4) does not count


def test_the_timing_loop_takes_the_median_of_the_calls_after_the_warmup(monkeypatch):
    clock, durations = [0.0], iter([50.0, 50.0, 3.0, 1.0, 2.0])
    monkeypatch.setattr(common.time, 'perf_counter', lambda: clock[0])

    def call():
        clock[0] += next(durations)
    assert common.median_seconds(call, 'cpu', warmup=2, iters=3) == 2.0


# ----------------------------------------------------------------------------- command-line values

@pytest.mark.parametrize('kind, text, value', [
    (common.positive_int, '3', 3), (common.nonneg_int, '0', 0), (common.positive_float, '0.5', 0.5),
    (common.nonneg_float, '0', 0.0), (common.unit_float, '1', 1.0),
    (common.box_xywh, '-20,5,40,40', [-20.0, 5.0, 40.0, 40.0]), (common.sampling_weights, '3,0', [3.0, 0.0]),
    (common.csv_of(common.nonneg_int, 'counts'), '0,1,2', [0, 1, 2]),
])
def test_checked_argument_types_accept_good_values(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize('kind, text', [
    (common.positive_int, '0'), (common.positive_int, '-4'), (common.positive_int, '1.5'), (common.nonneg_int, '-1'),
    (common.positive_float, 'nan'), (common.positive_float, 'inf'), (common.positive_float, '-5'), (common.nonneg_float, '-1e-9'),
    (common.unit_float, '0'), (common.seed_int, '-3'),
    (common.box_xywh, '1e308,1,2,2'), (common.box_xywh, '1,2,3'), (common.box_xywh, '1,1,0,5'), (common.box_xywh, 'nan,1,2,2'),
    (common.sampling_weights, '3,-1'), (common.sampling_weights, '0,0'), (common.sampling_weights, 'nan,1'),
    (common.sampling_weights, 'inf,1'),
])
def test_checked_argument_types_refuse_bad_values_in_one_line(kind, text):
    parser = common.Parser(prog='x')
    parser.add_argument('--flag', type=kind)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(['--flag=' + text])
    message = str(e.value.code)
    assert message.startswith('error: argument --flag: ') and '\n' not in message, message


def test_a_second_ctrl_c_stops_at_once_and_an_echo_does_not():
    stop = common.CtrlC(echo_s=60)  # torchrun's forwarded copy of the same press arrives within the window
    try:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
    finally:
        stop.restore()
    stop = common.CtrlC(echo_s=0)
    try:
        signal.raise_signal(signal.SIGTERM)  # a scheduler's notice asks for the same clean stop
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_ctrl_c_reaching_a_scripts_main_is_one_line_and_the_shells_status_130(capsys):
    @common.main_errors(ctrl_c="stopped (Ctrl-C): finished sequences keep their results")
    def main():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "stopped (Ctrl-C): finished sequences keep their results\n"


# ----------------------------------------------------------------------------- progress

def test_one_eta_format_for_every_script_and_a_dataset_line_per_sequence(capsys, monkeypatch):
    assert [common.eta(s) for s in (0, 59.9, 61, 3599, 3600, 7322, -5)] == \
        ['0:00', '0:59', '1:01', '59:59', '1:00:00', '2:02:02', '0:00']
    clock = iter([0.0, 10.0, 30.0])
    monkeypatch.setattr(common.time, 'perf_counter', lambda: next(clock))
    progress = common.Progress(total=300, sequences=2)  # starts at 0 s
    progress.finished('a', 100, 5.0)  # 100 of 300 frames after 10 s: 10 fps, 200 frames left
    progress.finished('b', 50, 5.0)  # 150 after 30 s: 5 fps, 150 left
    err = capsys.readouterr().err.splitlines()
    assert err == ['[1/2] a: 100 frames, 20.0 fps tracking  ETA 0:20', '[2/2] b: 50 frames, 10.0 fps tracking  ETA 0:30']
