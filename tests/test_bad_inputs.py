"""A corpus of bad inputs and faults against the `dtir` command. For each: the exit code, a message that names the file or
key at fault, and no change to any earlier output (every file of a workspace of finished results is hashed before and after)."""
import json, shutil, struct, zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import tree_digest, unwritable_dir
from dtir.cli import main as dtir_main

torch.set_num_threads(1)


def _png(p: Path, seed: int = 0, size=(24, 20)) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)).save(p)
    return p


def _bomb(p: Path) -> Path:
    "A tiny PNG declaring 20000x20000 16-bit RGB pixels."
    p.parent.mkdir(parents=True, exist_ok=True)
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    p.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 20000, 20000, 16, 2, 0, 0, 0))
                  + chunk(b'IDAT', zlib.compress(b'\0' * 4096)) + chunk(b'IEND', b''))
    return p


@pytest.fixture(scope='module')
def ws(tmp_path_factory) -> Path:
    "Earlier results: a finished pre-training run, a fine-tuned model, restored images, an evaluation file, a paired set."
    from dtir.checkpoint import save_checkpoint, state_dict_cpu
    from dtir.config import load_preset, preset_dict
    from dtir.pretrain import new_model, pretrain, schedule_meta
    from dtir.restore import restore_files
    w = tmp_path_factory.mktemp('ws')
    cfg = load_preset('smoke', ['pretrain_steps=2', 'ckpt_every=1'])
    pretrain(cfg, w / 'pre', progress=False)
    net, spec = new_model(cfg, time=True)
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.01)
    save_checkpoint(w / 'model', state_dict_cpu(net), dict(model=spec, preset=preset_dict(cfg), schedule=schedule_meta(cfg), t_star={'rain': 8}))
    for i, n in enumerate(('a', 'b')): _png(w / 'img' / f'{n}.png', i)
    restore_files(w / 'model', w / 'img', w / 'restored', log=None)
    (w / 'eval.json').write_text('{"id": {"psnr": 30.0}}')
    for i, n in enumerate(('a', 'b')): _png(w / 'data' / 'input' / f'{n}.png', i); _png(w / 'data' / 'target' / f'{n}.png', i + 5)
    (w / 'afile.txt').write_text('not a folder')
    return w


def _copy_model(ws: Path, tmp: Path, corrupt: Callable[[Path], None]) -> Path:
    m = shutil.copytree(ws / 'model', tmp / 'model')
    corrupt(m)
    return m


def _flip(f: Path):
    b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0xFF; f.write_bytes(bytes(b))


def _edit_t_star(m: Path):
    f = m / 'meta.json'; f.write_text(f.read_text().replace('"rain": 8', '"rain": 30'))


def _bad_folder(tmp: Path, files: dict[str, Callable[[Path], object]]) -> Path:
    for rel, make in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        make(tmp / rel)
    return tmp


PRE = ['pretrain', '--preset', 'smoke']
FT = ['finetune', '--preset', 'smoke', '--task', 'rain']
EV = ['evaluate', '--preset', 'smoke', '--task', 'rain', '--severity', 'id']


@dataclass
class Case:
    args: Callable          # (ws, tmp) -> argv after `dtir`
    rc: int                 # expected exit code
    words: Callable         # (ws, tmp) -> strings the message must hold (the file or key at fault)
    one_line: bool = True   # a user error: exactly one stderr line, no traceback
    lock: bool = False      # hold ws/pre's run lock meanwhile (a live second owner)


CASES = {
    # --- configuration values that cannot be right (dtir.config.validate) ---
    'finetune_steps=0': Case(lambda w, t: FT + ['--ckpt', w / 'pre' / 'model', '--t-star', '8', '--set', 'finetune_steps=0', '--out', w / 'pre'], 2, lambda w, t: ['finetune_steps']),
    'finetune_steps=-5': Case(lambda w, t: FT + ['--ckpt', w / 'pre' / 'model', '--t-star', '8', '--set', 'finetune_steps=-5', '--out', t / 'o'], 2, lambda w, t: ['finetune_steps']),
    'lam_reg=-100': Case(lambda w, t: FT + ['--ckpt', w / 'pre' / 'model', '--t-star', '8', '--set', 'lam_reg=-100', '--out', t / 'o'], 2, lambda w, t: ['lam_reg']),
    'lr=inf': Case(lambda w, t: PRE + ['--set', 'lr=inf', '--out', w / 'pre'], 2, lambda w, t: ['lr']),
    'lr=0': Case(lambda w, t: PRE + ['--set', 'lr=0', '--out', w / 'pre'], 2, lambda w, t: ['lr']),
    'log_every=0': Case(lambda w, t: PRE + ['--set', 'log_every=0', '--out', w / 'pre'], 2, lambda w, t: ['log_every']),
    'ckpt_every=0': Case(lambda w, t: PRE + ['--set', 'ckpt_every=0', '--out', w / 'pre'], 2, lambda w, t: ['ckpt_every']),
    'unknown-key': Case(lambda w, t: PRE + ['--set', 'widht=8', '--out', w / 'pre'], 2, lambda w, t: ["'widht'"]),
    'unknown-preset': Case(lambda w, t: ['pretrain', '--preset', 'nosuch', '--out', w / 'pre'], 2, lambda w, t: ['nosuch']),
    # --- run folders ---
    'rerun-finished-without-flags': Case(lambda w, t: PRE + ['--set', 'pretrain_steps=2', '--set', 'ckpt_every=1', '--set', 'lr=2e-4', '--out', w / 'pre'], 2,
                                         lambda w, t: [str(w / 'pre'), '--overwrite']),
    'resume-with-other-preset': Case(lambda w, t: PRE + ['--set', 'pretrain_steps=2', '--set', 'ckpt_every=1', '--set', 'width=12', '--out', w / 'pre', '--resume'], 2,
                                     lambda w, t: [str(w / 'pre' / 'ckpt'), 'width']),
    'second-run-on-locked-folder': Case(lambda w, t: PRE + ['--set', 'pretrain_steps=2', '--set', 'ckpt_every=1', '--out', w / 'pre', '--resume'], 2,
                                        lambda w, t: [str(w / 'pre'), 'in use by another run', 'pid'], lock=True),
    'evaluate-out-exists': Case(lambda w, t: EV + ['--ckpt', w / 'model', '--out', w / 'eval.json'], 2, lambda w, t: [str(w / 'eval.json'), '--overwrite']),
    'evaluate-out-under-a-file': Case(lambda w, t: EV + ['--ckpt', w / 'model', '--out', w / 'afile.txt' / 'r.json'], 2, lambda w, t: [str(w / 'afile.txt'), 'is a file']),
    'evaluate-out-unwritable': Case(lambda w, t: EV + ['--ckpt', w / 'model', '--out', unwritable_dir(t) / 'x' / 'r.json'], 2, lambda w, t: ['--out', 'r.json']),
    # --- checkpoints ---
    'finetune-ckpt-missing': Case(lambda w, t: FT + ['--ckpt', t / 'nope' / 'model', '--out', t / 'o'], 2, lambda w, t: [str(t / 'nope' / 'model'), 'not found']),
    'finetune-ckpt-flipped-weights': Case(lambda w, t: FT + ['--ckpt', _copy_model(w, t, lambda m: _flip(m / 'model.safetensors')), '--t-star', '8', '--out', t / 'o'], 2,
                                          lambda w, t: [str(t / 'model' / 'model.safetensors'), 'corrupt']),
    'evaluate-edited-t-star': Case(lambda w, t: EV + ['--ckpt', _copy_model(w, t, _edit_t_star)], 2, lambda w, t: [str(t / 'model' / 'meta.json'), 'edited']),
    'evaluate-garbage-meta': Case(lambda w, t: EV + ['--ckpt', _copy_model(w, t, lambda m: (m / 'meta.json').write_text('{not json'))], 2,
                                  lambda w, t: [str(t / 'model' / 'meta.json'), 'corrupted']),
    'evaluate-weights-missing': Case(lambda w, t: EV + ['--ckpt', _copy_model(w, t, lambda m: (m / 'model.safetensors').unlink())], 2,
                                     lambda w, t: [str(t / 'model' / 'model.safetensors'), 'missing']),
    'pretrain-resume-truncated-state': Case(lambda w, t: PRE + ['--set', 'pretrain_steps=4', '--set', 'ckpt_every=1', '--resume', '--out', _truncated_state_run(w, t)], 2,
                                            lambda w, t: ['state.pt']),
    'unify-ckpt-missing': Case(lambda w, t: ['unify', '--preset', 'smoke', '--ckpt', t / 'nope', '--out', t / 'u'], 2, lambda w, t: [str(t / 'nope')]),
    'finetune-t-star-0': Case(lambda w, t: FT + ['--ckpt', w / 'pre' / 'model', '--t-star', '0', '--out', t / 'o'], 2, lambda w, t: ['t*', 'got 0']),
    # --- restore ---
    'restore-output-is-input': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', w / 'img'], 2, lambda w, t: ['--output', 'input folder']),
    'restore-output-under-a-file': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', w / 'afile.txt' / 'o'], 2,
                                        lambda w, t: [str(w / 'afile.txt'), 'is a file']),
    'restore-output-is-a-file': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', w / 'restored' / 'a.png'], 2,
                                     lambda w, t: [str(w / 'restored' / 'a.png'), 'give a folder']),
    'restore-output-unwritable': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', unwritable_dir(t) / 'o'], 2,
                                      lambda w, t: ['--output', 'cannot create']),
    'restore-input-missing': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', t / 'nope', '--output', w / 'restored'], 2, lambda w, t: ['--input', str(t / 'nope')]),
    'restore-t-out-of-range': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', w / 'restored', '--overwrite', '--t', '0'], 2, lambda w, t: ['--t', '1..']),
    'restore-tile-le-overlap': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', w / 'img', '--output', w / 'restored', '--overwrite', '--tile', '16', '--overlap', '16'], 2,
                                    lambda w, t: ['--overlap 16']),
    'restore-ckpt-not-a-checkpoint': Case(lambda w, t: ['restore', '--ckpt', w / 'img', '--input', w / 'img', '--output', t / 'o'], 2, lambda w, t: [str(w / 'img'), 'meta.json']),
    'restore-only-gifs': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', _bad_folder(t / 'in', {'x.gif': lambda p: p.write_bytes(b'GIF89a')}), '--output', w / 'restored'], 2,
                              lambda w, t: [str(t / 'in'), 'x.gif', 'unsupported file type .gif']),
    'restore-corrupt-image': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', _bad_folder(t / 'in', {'bad.png': lambda p: p.write_bytes(b'\x89PNG garbage')}), '--output', t / 'o'], 1,
                                  lambda w, t: [str(t / 'in' / 'bad.png')], one_line=False),
    'restore-decompression-bomb': Case(lambda w, t: ['restore', '--ckpt', w / 'model', '--input', _bomb(t / 'in' / 'big.png'), '--output', t / 'o'], 1,
                                       lambda w, t: [str(t / 'in' / 'big.png'), 'limit'], one_line=False),
    # --- data ---
    'data-check-empty': Case(lambda w, t: ['data', 'check', _bad_folder(t, {'input': Path.mkdir, 'target': Path.mkdir})], 1, lambda w, t: [str(t), 'no image pairs'], one_line=False),
    'data-check-missing-root': Case(lambda w, t: ['data', 'check', t / 'nowhere'], 1, lambda w, t: [str(t / 'nowhere'), 'input']),
    'data-check-bomb': Case(lambda w, t: ['data', 'check', _bad_folder(t, {'input/a.png': _png, 'target/a.png': _bomb})], 1,
                            lambda w, t: [str(t / 'target' / 'a.png'), 'limit'], one_line=False),
    'data-check-truncated': Case(lambda w, t: ['data', 'check', _bad_folder(t, {'input/a.png': _png, 'target/a.png': lambda p: (_png(p), p.write_bytes(p.read_bytes()[:80]))})], 1,
                                 lambda w, t: [str(t / 'target' / 'a.png'), 'unreadable'], one_line=False),
    'data-check-unknown-layout': Case(lambda w, t: ['data', 'check', w / 'data', '--layout', 'nosuch'], 1, lambda w, t: ['nosuch', 'layout']),
    'train-on-a-bomb': Case(lambda w, t: ['train-plain', '--preset', 'smoke', '--task', 'rain', '--set', 'finetune_steps=2', '--out', t / 'o',
                                          '--data', _bad_folder(t / 'd', {'input/a.png': _png, 'target/a.png': _bomb})], 2,
                            lambda w, t: [str(t / 'd' / 'target' / 'a.png'), 'limit'], one_line=False),
}


def _truncated_state_run(w: Path, t: Path) -> Path:
    "A copy of the finished pre-training run with its state.pt cut in half (a damaged resume point)."
    run = shutil.copytree(w / 'pre', t / 'run')
    f = run / 'ckpt' / 'state.pt'; f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return run


def test_corpus_size():
    assert len(CASES) >= 25


@pytest.mark.parametrize('name', list(CASES))
def test_bad_input(name, ws, tmp_path, capsys):
    c = CASES[name]
    args = [str(a) for a in c.args(ws, tmp_path)]
    before = tree_digest(ws)
    capsys.readouterr()
    from contextlib import nullcontext
    if c.lock: from dtir.checkpoint import RunLock
    with (RunLock(ws / 'pre') if c.lock else nullcontext()):
        try: rc = dtir_main(args)
        except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
    out, err = (lambda o: (o.out, o.err))(capsys.readouterr())
    text = err + out
    assert rc == c.rc, f"exit code {rc}, expected {c.rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert 'Traceback' not in text, text
    if c.one_line:
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    for w in c.words(ws, tmp_path): assert w in text, f"the message does not name {w!r}:\n{text}"
    assert tree_digest(ws) == before, f"{name}: an earlier output changed"
