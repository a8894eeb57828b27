"The `dtir` command: help of every subcommand, `data check` on a broken and a real paired set, and one-line user errors (exit 2)."
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dtir.cli import build_parser, main as dtir_main
from cli_helpers import REPO, ENV, dtir_cmd, run_main, one_line_error, tiny_pretrained

torch.set_num_threads(1)
SHARED = Path(os.environ.get('DTIR_SHARED_DATA', REPO.parent / 'shared' / 'data'))
SUBCOMMANDS = [['reproduce'], ['data'], ['data', 'check'], ['pretrain'], ['match'], ['finetune'], ['train-plain'], ['evaluate'], ['unify'], ['restore']]


def dtir(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(dtir_cmd() + [str(a) for a in args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


# --- help ---

def test_help_console_script():
    r = dtir('--help')
    assert r.returncode == 0, r.stderr
    for sub in ('reproduce', 'data', 'pretrain', 'match', 'finetune', 'train-plain', 'evaluate', 'unify', 'restore'): assert sub in r.stdout


def test_python_m_dtir_cli():
    "`python -m dtir.cli ...` is how README's multi-GPU recipe runs the CLI (`accelerate launch -m dtir.cli pretrain ...`)."
    r = subprocess.run([sys.executable, '-m', 'dtir.cli', '--help'], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith('usage: dtir'), \
        f"python -m dtir.cli --help printed {r.stdout[:200]!r} (rc {r.returncode}): the module does not run main()"


@pytest.mark.parametrize('sub', SUBCOMMANDS, ids=' '.join)
def test_help_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as e: build_parser().parse_args([*sub, '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: dtir {' '.join(sub)}"), out[:200]


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e: dtir_main([])
    assert e.value.code == 2 and 'usage: dtir' in capsys.readouterr().err


# --- data check ---

def _png(p: Path, seed: int):
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((24, 20, 3)) * 255).astype(np.uint8)).save(p)


def test_data_check_missing_partner(tmp_path, capsys):
    for i, n in enumerate(('a', 'b')): _png(tmp_path / 'input' / f'{n}.png', i); _png(tmp_path / 'target' / f'{n}.png', i + 9)
    _png(tmp_path / 'input' / 'lonely.png', 5)   # no target/lonely.png
    capsys.readouterr()
    rc = dtir_main(['data', 'check', str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    probs = [l for l in out.splitlines() if 'PROBLEM' in l]
    assert len(probs) == 1 and 'lonely.png' in probs[0] and 'missing' in probs[0], out
    assert '1 problem(s)' in out


def test_data_check_clean_fake_set(tmp_path, capsys):
    for i, n in enumerate(('a', 'b', 'c')): _png(tmp_path / 'input' / f'{n}.png', i); _png(tmp_path / 'target' / f'{n}.png', i + 9)
    capsys.readouterr()
    rc = dtir_main(['data', 'check', str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and ': 3 pairs' in out and '0 problem(s)' in out, out


def test_data_check_missing_folder(tmp_path, capsys):
    rc, err = run_main(['data', 'check', tmp_path / 'nowhere'], capsys)
    assert rc == 1 and 'nowhere' in err and 'input' in err, err


def test_data_check_rain100l():
    root = SHARED / 'rain100l'
    if not (root / 'input').is_dir(): pytest.skip(f'real data not found: {root} (set DTIR_SHARED_DATA)')
    r = dtir('data', 'check', root, '--layout', 'rain100')
    assert r.returncode == 0, r.stdout + r.stderr
    assert ': 100 pairs' in r.stdout and 'rain: 100' in r.stdout and '0 problem(s)' in r.stdout, r.stdout


# --- finetune: bad prompts and parameters are refused before any training (exit 2, one line naming the parameter) ---

@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    return tiny_pretrained(tmp_path_factory.mktemp('pre'))


def _finetune(capsys, out, *args) -> tuple[int, str]:
    return run_main(['finetune', '--preset', 'smoke', '--task', 'rain', '--out', out, *args], capsys)


def test_finetune_t_star_zero(pretrained, tmp_path, capsys):
    rc, err = _finetune(capsys, tmp_path / 'o', '--ckpt', pretrained, '--t-star', '0')
    msg = one_line_error(rc, err, 'finetune')
    from dtir.config import load_preset
    assert 't*' in msg and f'1..{load_preset("smoke").T}' in msg and 'got 0' in msg
    assert not (tmp_path / 'o').exists()


def test_finetune_k_shallow_too_deep(pretrained, tmp_path, capsys):
    rc, err = _finetune(capsys, tmp_path / 'o', '--ckpt', pretrained, '--t-star', '8', '--set', 'k_shallow=99')
    msg = one_line_error(rc, err, 'finetune')
    assert 'k_shallow' in msg and '99' in msg
    assert not (tmp_path / 'o').exists()


def test_finetune_t_star_auto_without_match(pretrained, tmp_path):
    "Through the console script: the real exit code and stderr."
    r = dtir('finetune', '--preset', 'smoke', '--task', 'rain', '--ckpt', pretrained, '--t-star', 'auto', '--out', tmp_path / 'o')
    msg = one_line_error(r.returncode, r.stderr, 'finetune')
    assert 'dtir match' in msg and 'match.json' in msg
    assert not (tmp_path / 'o').exists()


def test_finetune_t_star_auto_is_the_default(pretrained, tmp_path, capsys):
    rc, err = _finetune(capsys, tmp_path / 'o', '--ckpt', pretrained)
    assert 'dtir match' in one_line_error(rc, err, 'finetune')


def test_finetune_t_star_auto_without_ckpt(tmp_path, capsys):
    "No --ckpt to find match.json beside: a user error like the others (exit 2, the usual one-line form)."
    rc, err = _finetune(capsys, tmp_path / 'o', '--t-star', 'auto')
    msg = one_line_error(rc, err, 'finetune')
    assert '--ckpt' in msg


def test_finetune_t_star_not_a_number(pretrained, tmp_path, capsys):
    rc, err = _finetune(capsys, tmp_path / 'o', '--ckpt', pretrained, '--t-star', 'eight')
    msg = one_line_error(rc, err, 'finetune')
    assert '--t-star' in msg and "'eight'" in msg


def test_unknown_preset_key(tmp_path, capsys):
    rc, err = run_main(['pretrain', '--preset', 'smoke', '--set', 'widht=8', '--out', tmp_path / 'o'], capsys)
    msg = one_line_error(rc, err, 'pretrain')
    assert "'widht'" in msg and not (tmp_path / 'o').exists()


# --- unify: TIT stages + MoE + the estimator, then a blind restore with the result ---

def test_unify_then_restore_auto(pretrained, tmp_path, capsys):
    "`dtir unify` end to end at smoke size (2 tasks: matching, 2 stages, estimator inside the model), killed-and-resumed, then `restore --t auto`."
    import json, shutil
    pre = tmp_path / 'pre'
    shutil.copytree(pretrained, pre)
    # tit_new_share 0.75: the sample budget gives both stages steps (at 0.5 stage 1 would be empty, see dtir.tit.stage_budget)
    args = ['unify', '--preset', 'smoke', '--set', 'stage_steps=4', '--set', 'estimator_steps=4', '--set', 'match_images=2',
            '--set', 'tit_new_share=0.75', '--ckpt', pre, '--out', tmp_path / 'u', '--tasks', 'noise', 'lowlight']
    rc, err = run_main(args, capsys)
    assert rc == 0, err
    model = tmp_path / 'u' / 'model'
    assert (model / 'estimator' / 'meta.json').exists() and sorted(p.name for p in (tmp_path / 'u').glob('stage-*')) == ['stage-01', 'stage-02']
    meta = json.loads((model / 'meta.json').read_text())
    assert set(meta['t_star']) == {'noise', 'lowlight'} and meta['model']['moe'] >= 1
    # a second run without --resume refuses nothing finished; with --resume it is a no-op
    rc, err = run_main(args + ['--resume'], capsys)
    assert rc == 0, err
    img = tmp_path / 'in' / 'a.png'
    _png(img, 3)
    rc, err = run_main(['restore', '--ckpt', model, '--input', img, '--output', tmp_path / 'out', '--t', 'auto'], capsys)
    assert rc == 0, err
    assert (tmp_path / 'out' / 'a.png').exists()
