"Run folders: one run at a time (a lock naming its owner), a finished run never replaced silently, litter of killed runs removed, evaluate --out kept."
import json, os, socket, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from cli_helpers import REPO, ENV, dtir_cmd, run_main, one_line_error, tree_digest as _digest
from dtir.checkpoint import load_meta

torch.set_num_threads(1)
PRE = ['pretrain', '--preset', 'smoke', '--set', 'pretrain_steps=3', '--set', 'log_every=1', '--set', 'ckpt_every=2']


def _dead_pid() -> int:
    "The pid of a process that has just exited (not running any more)."
    p = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    return int(p.stdout)


@pytest.fixture(scope='module')
def finished(tmp_path_factory) -> Path:
    "A finished smoke pre-training run folder (lr as in the preset)."
    out = tmp_path_factory.mktemp('fin') / 'run'
    from dtir.config import load_preset
    from dtir.pretrain import pretrain
    pretrain(load_preset('smoke', ['pretrain_steps=3', 'log_every=1', 'ckpt_every=2']), out, progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


# --- item 3: a finished run is refused without --resume or --overwrite ---

def test_finished_run_refused_without_resume_or_overwrite(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / 'run')
    before = _digest(run)
    msg = one_line_error(*run_main(PRE + ['--set', 'lr=2e-4', '--out', run], capsys), 'pretrain')
    assert str(run) in msg and 'finished' in msg and '--overwrite' in msg and '--resume' in msg, msg
    assert _digest(run) == before, 'the refused run changed the finished folder'


def test_overwrite_replaces_a_finished_run(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / 'run')
    rc, err = run_main(PRE + ['--set', 'lr=2e-4', '--out', run, '--overwrite'], capsys)
    assert rc == 0, err
    assert load_meta(run / 'model')['preset']['lr'] == 2e-4
    assert [json.loads(l)['step'] for l in (run / 'log.jsonl').read_text().splitlines()] == [1, 2, 3]


def test_resume_of_a_finished_run_keeps_it(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / 'run')
    w = (run / 'model' / 'model.safetensors').read_bytes()
    rc, err = run_main(PRE + ['--out', run, '--resume'], capsys)
    assert rc == 0, err
    assert (run / 'model' / 'model.safetensors').read_bytes() == w


def test_resume_and_overwrite_together_refused(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / 'run')
    msg = one_line_error(*run_main(PRE + ['--out', run, '--resume', '--overwrite'], capsys), 'pretrain')
    assert '--resume' in msg and '--overwrite' in msg


@pytest.fixture(scope='module')
def tuned(tmp_path_factory) -> Path:
    "A smoke-size fine-tuned model folder (prompt 8 for noise), as `evaluate` and `restore` take."
    from dtir.checkpoint import save_checkpoint, state_dict_cpu
    from dtir.config import load_preset, preset_dict
    from dtir.pretrain import new_model, schedule_meta
    cfg = load_preset('smoke')
    net, spec = new_model(cfg, time=True)
    meta = dict(model=spec, preset=preset_dict(cfg), schedule=schedule_meta(cfg), t_star={'noise': 8})
    return save_checkpoint(tmp_path_factory.mktemp('tuned') / 'model', state_dict_cpu(net), meta)


def test_evaluate_out_is_not_overwritten(tuned, tmp_path, capsys):
    f = tmp_path / 'res.json'
    f.write_text('{"earlier": 1}')
    args = ['evaluate', '--preset', 'smoke', '--ckpt', tuned, '--task', 'noise', '--severity', 'id', '--out', f]
    msg = one_line_error(*run_main(args, capsys), 'evaluate')
    assert str(f) in msg and '--overwrite' in msg
    assert f.read_text() == '{"earlier": 1}'
    rc, err = run_main(args + ['--overwrite'], capsys)
    assert rc == 0, err
    assert 'id' in json.loads(f.read_text())


# --- item 2: one run per folder ---

def test_second_run_fails_at_once_naming_folder_and_owner(finished, tmp_path):
    "Two real processes on one --out: the second fails at once (exit 2) naming the folder and the first one's pid and host."
    out = tmp_path / 'run'
    log = open(tmp_path / 'a.log', 'wb')
    a = subprocess.Popen(dtir_cmd() + ['pretrain', '--preset', 'smoke', '--set', 'pretrain_steps=100000', '--set', 'log_every=1',
                                       '--set', 'ckpt_every=100000', '--out', str(out)], cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        t0 = time.time()
        while not (out / 'log.jsonl').exists():   # A is training
            assert a.poll() is None, (tmp_path / 'a.log').read_text()[-2000:]
            assert time.time() - t0 < 120, 'run A did not start training'
            time.sleep(0.1)
        t1 = time.time()
        try:
            b = subprocess.run(dtir_cmd() + PRE + ['--out', str(out), '--resume'], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired: pytest.fail('the second run on the same folder did not stop: it trains beside the first')
        msg = one_line_error(b.returncode, b.stderr, 'pretrain')
        assert str(out) in msg and f'pid {a.pid}' in msg and socket.gethostname() in msg, msg
        assert time.time() - t1 < 60 and a.poll() is None
    finally:
        a.kill(); a.wait()


def test_stale_lock_is_taken_over(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / 'run')
    (run / '.lock').write_text(json.dumps(dict(pid=_dead_pid(), host=socket.gethostname(), started='earlier')))
    rc, err = run_main(PRE + ['--out', run, '--overwrite'], capsys)
    assert rc == 0, err
    assert 'stale lock' in err and not (run / '.lock').exists()


def test_live_lock_in_this_process_refuses(finished, tmp_path, capsys):
    from dtir.checkpoint import RunLock
    run = _copy(finished, tmp_path / 'run')
    before = _digest(run)
    with RunLock(run):
        msg = one_line_error(*run_main(PRE + ['--out', run, '--overwrite'], capsys), 'pretrain')
    assert 'in use by another run' in msg and str(run) in msg
    assert {k: v for k, v in _digest(run).items() if k != '.lock'} == before


def test_lock_released_after_a_failed_run(tmp_path):
    "A run that raises inside the locked part (here: the refusal of a finished folder) leaves no lock behind."
    out = tmp_path / 'run'
    from dtir.config import load_preset
    from dtir.pretrain import pretrain
    cfg = load_preset('smoke', ['pretrain_steps=2'])
    pretrain(cfg, out, progress=False)
    with pytest.raises(FileExistsError): pretrain(cfg, out, progress=False)
    assert not (out / '.lock').exists()


# --- item 8: the litter of killed training runs ---

def test_killed_run_temporaries_removed_on_resume(finished, tmp_path, capsys):
    "A `.ckpt.tmpPID/` of a dead process (a kill during a checkpoint save) is removed when the run resumes; a live one is kept."
    run = _copy(finished, tmp_path / 'run')
    dead = run / f'.ckpt.tmp{_dead_pid()}'
    dead.mkdir(); (dead / 'model.safetensors').write_bytes(b'partial')
    live = run / f'.model.tmp{os.getppid()}'
    live.mkdir()
    rc, err = run_main(PRE + ['--out', run, '--resume'], capsys)
    assert rc == 0, err
    assert not dead.exists() and live.exists()
    assert str(dead) in err


def test_train_plain_finished_refused_then_overwritten(tmp_path, capsys):
    args = ['train-plain', '--preset', 'smoke', '--task', 'noise', '--set', 'finetune_steps=2', '--out', tmp_path / 'run']
    rc, err = run_main(args, capsys)
    assert rc == 0, err
    before = _digest(tmp_path / 'run')
    msg = one_line_error(*run_main(args, capsys), 'train-plain')
    assert str(tmp_path / 'run') in msg and 'finished' in msg
    assert _digest(tmp_path / 'run') == before
    rc, err = run_main(args + ['--set', 'lr=2e-4', '--overwrite'], capsys)
    assert rc == 0, err
    assert load_meta(tmp_path / 'run' / 'model')['preset']['lr'] == 2e-4


def test_unify_finished_refused_before_training(tmp_path):
    "A finished unified folder (its model/ exists) is refused without --resume or --overwrite, before any stage trains."
    from dtir.checkpoint import save_checkpoint
    from dtir.config import load_preset
    from dtir.tit import unify
    out = tmp_path / 'u'
    save_checkpoint(out / 'model', {'a': torch.zeros(1)}, {'kind': 'unify'})
    before = _digest(out)
    with pytest.raises(FileExistsError, match='holds a finished unified run.*--overwrite'):
        unify(load_preset('smoke', ['stage_steps=2']), tmp_path / 'pre', out, {'noise': 3, 'rain': 8})
    assert _digest(out) == before
