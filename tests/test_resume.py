"Exact resume after a real SIGKILL (pre-training and GEF fine-tuning), and clear refusals of mismatched, unfinished or corrupted checkpoints."
import json, os, shutil, signal, subprocess, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dtir.checkpoint import CheckpointError, load_meta
from cli_helpers import REPO, ENV, dtir_cmd, run_main, one_line_error
from dtir.config import load_preset
from dtir.pretrain import pretrain
from dtir.train import RunSpec, Trainer, read_log, step_generator

torch.set_num_threads(1)

PRE_STEPS, PRE_KILL = 200, 60   # about 30 ms a smoke step: the kill lands with over 100 steps to go
PRE_SET = [f'pretrain_steps={PRE_STEPS}', 'ckpt_every=20', 'log_every=20']
FT_STEPS, FT_KILL = 120, 40
FT_SET = [f'finetune_steps={FT_STEPS}', 'ckpt_every=20', 'log_every=20', 'p_mix=0.5', 'mix=1', 'reg=1', 'orth=1']


def _sets(overrides) -> list[str]:
    return [a for o in overrides for a in ('--set', o)]


def pre_args(out, *extra) -> list[str]:
    return ['pretrain', '--preset', 'smoke', *_sets(PRE_SET), '--out', str(out), *extra]


def ft_args(out, ckpt, *extra) -> list[str]:
    return ['finetune', '--preset', 'smoke', '--task', 'rain', '--t-star', '8', '--ckpt', str(ckpt), *_sets(FT_SET),
            '--out', str(out), *extra]


def _start(args, log: Path) -> subprocess.Popen:
    f = open(log, 'wb')   # a file, not a pipe: tqdm on stderr must never block the run
    p = subprocess.Popen(dtir_cmd() + args, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    f.close()
    return p


def _finish(p: subprocess.Popen, log: Path, timeout: float = 180):
    p.wait(timeout)
    assert p.returncode == 0, f"{p.args} failed (rc {p.returncode}):\n{log.read_text()[-3000:]}"


def _ckpt_step(out: Path) -> int | None:
    "The step of `out/ckpt` while a run may be rewriting it (None if not readable right now)."
    try: return json.loads((out / 'ckpt' / 'meta.json').read_text())['step']
    except (FileNotFoundError, json.JSONDecodeError, KeyError): return None


def _kill_midway(p: subprocess.Popen, out: Path, at_step: int, total: int, log: Path, timeout: float = 120) -> int:
    "SIGKILL `p` once its checkpoint reaches `at_step`; fail loudly unless it was killed mid-way; return the saved step."
    t0 = time.time()
    while (s := _ckpt_step(out)) is None or s < at_step:
        if p.poll() is not None: pytest.fail(f"run ended (rc {p.returncode}) before its checkpoint reached step {at_step}:\n{log.read_text()[-2000:]}")
        if time.time() - t0 > timeout:
            p.kill(); p.wait()
            pytest.fail(f"no checkpoint at step >= {at_step} after {timeout} s")
        time.sleep(0.02)
    alive = p.poll() is None
    p.send_signal(signal.SIGKILL); p.wait()
    assert alive and p.returncode == -signal.SIGKILL, \
        f"the run finished (rc {p.returncode}) before it could be killed: make it longer so the kill lands mid-way"
    saved = load_meta(out / 'ckpt')['step']   # resolves the .ckpt.old twin if the kill fell between the two renames
    assert at_step <= saved < total and not (out / 'model').exists(), f"not killed mid-way: checkpoint at step {saved} of {total}"
    return saved


def _kill_and_resume(tmp: Path, args_fn, at_step: int, total: int) -> dict:
    "Run B uninterrupted and A killed mid-way then resumed, side by side; keep a copy of A as it was after the kill."
    A, B, killed = tmp / 'A', tmp / 'B', tmp / 'A_killed'
    procs = [_start(args_fn(B), tmp / 'B.out')]
    try:
        procs.append(_start(args_fn(A), tmp / 'A.out'))
        saved = _kill_midway(procs[-1], A, at_step, total, tmp / 'A.out')
        shutil.copytree(A, killed)
        procs.append(_start(args_fn(A, '--resume'), tmp / 'A_resume.out'))
        _finish(procs[-1], tmp / 'A_resume.out'); _finish(procs[0], tmp / 'B.out')
    finally:   # never leave a training process behind when something above failed
        for p in procs:
            if p.poll() is None: p.kill(); p.wait()
    return dict(A=A, B=B, killed=killed, saved=saved, total=total)


@pytest.fixture(scope='module')
def pre_runs(tmp_path_factory):
    return _kill_and_resume(tmp_path_factory.mktemp('pre'), pre_args, PRE_KILL, PRE_STEPS)


@pytest.fixture(scope='module')
def ft_runs(tmp_path_factory, pre_runs):
    ckpt = pre_runs['B'] / 'model'
    return _kill_and_resume(tmp_path_factory.mktemp('ft'), lambda out, *e: ft_args(out, ckpt, *e), FT_KILL, FT_STEPS)


def _assert_same_weights(a: Path, b: Path):
    wa, wb = load_file(str(a / 'model' / 'model.safetensors')), load_file(str(b / 'model' / 'model.safetensors'))
    assert wa.keys() == wb.keys()
    for k in wa: torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0, msg=lambda m: f'{k}: {m}')


def _assert_log_resumed(r: dict):
    "No duplicated step, the same records as the uninterrupted run, and the killed run's records kept (so it resumed, not restarted)."
    la, lb, lk = read_log(r['A']), read_log(r['B']), read_log(r['killed'])
    steps = [x['step'] for x in la]
    assert len(steps) == len(set(steps)), f"duplicated steps in log.jsonl: {steps}"
    assert steps == [x['step'] for x in lb] and steps[-1] == r['total']
    for x, y in zip(la, lb):
        assert set(x) == set(y), f"step {x['step']}: logged terms differ: {sorted(x)} vs {sorted(y)}"
        for k in set(x) - {'img_s'}: assert x[k] == pytest.approx(y[k], abs=2e-6), f"step {x['step']}: {k} differs ({x[k]} vs {y[k]})"
    kept = [x for x in lk if x['step'] <= r['saved']]
    assert kept and la[:len(kept)] == kept, "the records written before the kill were not kept: the run restarted instead of resuming"


def test_pretrain_resume_after_kill(pre_runs):
    assert pre_runs['saved'] >= PRE_KILL
    _assert_same_weights(pre_runs['A'], pre_runs['B'])
    _assert_log_resumed(pre_runs)


def test_finetune_resume_after_kill(ft_runs):
    _assert_same_weights(ft_runs['A'], ft_runs['B'])
    _assert_log_resumed(ft_runs)
    la = read_log(ft_runs['A'])
    for k in ('loss_gen', 'loss_orth', 'loss_reg'):   # mixed steps, L_orth and L_reg really ran
        assert any(k in x for x in la), f"no logged step has {k}: {la}"
    assert load_meta(ft_runs['A'] / 'model')['extra']['tasks'] == {'rain': 8}


# --- refusals through the real console script (run side by side to save time) ---

@pytest.fixture(scope='module')
def killed_copy(pre_runs, tmp_path_factory):
    "A fresh copy of the pre-training run as it was just after the kill (an unfinished run)."
    def make(name: str) -> Path:
        d = tmp_path_factory.mktemp(name) / 'run'
        shutil.copytree(pre_runs['killed'], d)
        return d
    return make


def _ckpt_folder(run: Path) -> Path:
    return run / 'ckpt' if (run / 'ckpt' / 'meta.json').exists() else run / '.ckpt.old'


@pytest.fixture(scope='module')
def cli_refusals(killed_copy):
    "Two refusals through the real console script, side by side: an unfinished run without --resume, corrupted weights."
    runs = {k: killed_copy(k) for k in ('no_resume', 'flipped')}
    f = _ckpt_folder(runs['flipped']) / 'model.safetensors'
    b = bytearray(f.read_bytes()); b[len(b) * 3 // 4] ^= 0xFF; f.write_bytes(bytes(b))
    cmds = dict(no_resume=pre_args(runs['no_resume']), flipped=pre_args(runs['flipped'], '--resume'))
    procs = {k: subprocess.Popen(dtir_cmd() + c, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, c in cmds.items()}
    res = {k: (p, *p.communicate(timeout=120)) for k, p in procs.items()}
    return {k: dict(rc=p.returncode, out=o, err=e, run=runs[k], file=f) for k, (p, o, e) in res.items()}


def test_cli_refuses_unfinished_run_without_resume(cli_refusals, pre_runs):
    r = cli_refusals['no_resume']
    msg = one_line_error(r['rc'], r['err'], 'pretrain')
    assert '--resume' in msg and 'ckpt' in msg
    assert load_meta(r['run'] / 'ckpt')['step'] == pre_runs['saved'] and not (r['run'] / 'model').exists()   # left untouched
    assert read_log(r['run']) == read_log(pre_runs['killed'])


def test_cli_corrupted_weights_one_line(cli_refusals):
    r = cli_refusals['flipped']
    msg = one_line_error(r['rc'], r['err'], 'pretrain')
    assert str(r['file']) in msg and 'corrupt' in msg


def test_resume_refuses_other_preset(killed_copy, capsys):
    run = killed_copy('other_preset')
    with pytest.raises(CheckpointError, match=r"cannot resume .*'preset' differs"):
        pretrain(load_preset('smoke', PRE_SET + ['width=12']), run, resume=True, progress=False)
    msg = one_line_error(*run_main(pre_args(run, '--resume', '--set', 'width=12'), capsys), 'pretrain')
    assert 'preset' in msg and 'width' in msg and str(run / 'ckpt') in msg and '--resume' in msg
    assert not (run / 'model').exists() and load_meta(run / 'ckpt')['preset']['width'] == load_preset('smoke').width != 12


# --- corrupted checkpoints: library and CLI (in-process `main`, which is what the console script calls) ---

def _flip(f: Path):
    b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0xFF; f.write_bytes(bytes(b))

def _truncate(f: Path): f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

def _garbage(f: Path): f.write_text('not json {{')

def _binary(f: Path): f.write_bytes(b'\x00\xff\xfe garbage')   # not even UTF-8 (e.g. a damaged disk block)

def _not_object(f: Path): f.write_text('[1, 2, 3]')   # valid JSON, but not a checkpoint description

CORRUPT = {'flip-weights': ('model.safetensors', _flip), 'truncate-state': ('state.pt', _truncate),
           'garbage-meta': ('meta.json', _garbage), 'binary-meta': ('meta.json', _binary),
           'meta-not-object': ('meta.json', _not_object)}


@pytest.mark.parametrize('case', list(CORRUPT))
def test_corrupted_checkpoint_library(case, killed_copy):
    run = killed_copy('lib-' + case)
    name, corrupt = CORRUPT[case]
    f = _ckpt_folder(run) / name
    corrupt(f)
    with pytest.raises(CheckpointError, match=str(f).replace('.', r'\.')):
        pretrain(load_preset('smoke', PRE_SET), run, resume=True, progress=False)


@pytest.mark.parametrize('case', list(CORRUPT))
def test_corrupted_checkpoint_cli(case, killed_copy, capsys):
    run = killed_copy('cli-' + case)
    name, corrupt = CORRUPT[case]
    f = _ckpt_folder(run) / name
    corrupt(f)
    msg = one_line_error(*run_main(pre_args(run, '--resume'), capsys), 'pretrain')
    assert str(f) in msg, msg


# --- the corner cases of a kill, on a toy network through the same Trainer (fast, deterministic) ---

class _Crash(Exception): pass


def _toy(out: Path, steps: int = 20, crash_at: int | None = None, resume: bool = False) -> Trainer:
    "A 4-parameter regression trained by the Trainer; `crash_at` stops it like a kill at that step."
    cfg = load_preset('smoke', ['log_every=5', 'ckpt_every=10', 'grad_clip=0'])
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    def batch_fn(step):
        x = torch.randn(4, 3, generator=step_generator(0, step, 'toy'))
        return {'x': x, 'y': x @ torch.tensor([[1.0], [-2.0], [0.5]])}
    def step_fn(net, batch, step, scale):
        if step == crash_at: raise _Crash
        loss = (net(batch['x']) - batch['y']).pow(2).mean()
        (loss * scale).backward()
        return {'loss': loss.item()}
    tr = Trainer(cfg, net, batch_fn, step_fn, RunSpec('toy', steps, 0), out, progress=False)
    try: tr.fit(resume=resume)
    except _Crash: pass
    return tr


def _toy_weights(out: Path) -> dict:
    return load_file(str(out / 'model' / 'model.safetensors'))


def test_toy_resume_is_exact(tmp_path):
    ref = _toy(tmp_path / 'ref')
    _toy(tmp_path / 'a', crash_at=13)
    assert load_meta(tmp_path / 'a' / 'ckpt')['step'] == 10 and [x['step'] for x in read_log(tmp_path / 'a')] == [5, 10]
    _toy(tmp_path / 'a', resume=True)
    for k, v in _toy_weights(tmp_path / 'ref').items(): torch.testing.assert_close(_toy_weights(tmp_path / 'a')[k], v, atol=1e-6, rtol=0)
    la, lr = read_log(tmp_path / 'a'), read_log(tmp_path / 'ref')
    assert [x['step'] for x in la] == [5, 10, 15, 20] and ref.step == 20
    assert [x['loss'] for x in la] == pytest.approx([x['loss'] for x in lr], abs=1e-6)


def test_toy_resume_from_old_twin(tmp_path):
    "Killed between the two renames of a checkpoint save: only `.ckpt.old` exists; --resume continues from it."
    _toy(tmp_path / 'ref')
    a = tmp_path / 'a'
    _toy(a, crash_at=13)
    os.replace(a / 'ckpt', a / '.ckpt.old')
    _toy(a, resume=True)
    for k, v in _toy_weights(tmp_path / 'ref').items(): torch.testing.assert_close(_toy_weights(a)[k], v, atol=1e-6, rtol=0)
    assert [x['step'] for x in read_log(a)] == [5, 10, 15, 20] and not (a / '.ckpt.old').exists()


def test_toy_old_twin_refused_without_resume(tmp_path):
    "An unfinished run whose checkpoint survives only as `.ckpt.old` is an unfinished run too: refused without --resume."
    a = tmp_path / 'a'
    _toy(a, crash_at=13)
    os.replace(a / 'ckpt', a / '.ckpt.old')
    with pytest.raises(FileExistsError, match='--resume'): _toy(a)


def test_toy_resume_before_first_checkpoint_keeps_log_clean(tmp_path):
    "Killed after a log record but before the first checkpoint: --resume starts at 0 and must not duplicate logged steps."
    _toy(tmp_path / 'ref')
    a = tmp_path / 'a'
    _toy(a, crash_at=7)
    assert not (a / 'ckpt').exists() and [x['step'] for x in read_log(a)] == [5]
    _toy(a, resume=True)
    for k, v in _toy_weights(tmp_path / 'ref').items(): torch.testing.assert_close(_toy_weights(a)[k], v, atol=1e-6, rtol=0)
    assert [x['step'] for x in read_log(a)] == [5, 10, 15, 20]
