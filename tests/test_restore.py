"`dtir restore` end to end: a folder of mixed images (8/16-bit, alpha, gray JPEG, one corrupt) through the command."
import argparse, contextlib, io, os
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

from dtir.checkpoint import save_checkpoint, state_dict_cpu
from dtir.config import load_preset, preset_dict
from dtir.pretrain import new_model
from dtir.data.io import read_for_restore
from dtir.restore import _cmd_restore, add_restore_parser
from cli_helpers import nudged_model

torch.set_num_threads(1)
H, W = 40, 56   # larger than --tile 32: the tiled path runs


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    return nudged_model(tmp_path_factory.mktemp('ck'))


def _png16(path: Path, a: np.ndarray):
    with open(path, 'wb') as f:
        png.Writer(a.shape[1], a.shape[0], greyscale=a.ndim == 2, bitdepth=16).write(f, a.reshape(a.shape[0], -1))


def _png_info(path: Path) -> tuple[int, int, int, int]:
    "(width, height, bit depth, planes) of a PNG."
    w, h, _, info = png.Reader(filename=str(path)).read()
    return w, h, info['bitdepth'], info['planes']


@pytest.fixture
def inputs(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / 'in'; d.mkdir()
    Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(d / 'good.png')
    _png16(d / 'deep.png', rng.integers(0, 65536, (H, W, 3), dtype=np.uint16))
    Image.fromarray((rng.random((H, W, 4)) * 255).astype(np.uint8)).save(d / 'alpha.png')
    yy, xx = np.mgrid[0:H, 0:W]
    Image.fromarray((yy * 4 + xx * 2).astype(np.uint8)).save(d / 'gray.jpg', quality=95)
    (d / 'broken.png').write_bytes(rng.bytes(500))
    return d


def restore(*args) -> tuple[int, str]:
    "Run `dtir restore ARGS` through its parser; (exit code, stdout)."
    ap = argparse.ArgumentParser(prog='dtir')
    add_restore_parser(ap.add_subparsers(dest='cmd'))
    out = io.StringIO()
    with contextlib.redirect_stdout(out): rc = _cmd_restore(ap.parse_args(['restore', *map(str, args)]))
    return rc, out.getvalue()


GOOD = ('good.png', 'deep.png', 'alpha.png', 'gray.jpg')


def test_restore_folder(model, inputs, tmp_path):
    out = tmp_path / 'out'
    rc, text = restore('--ckpt', model, '--input', inputs, '--output', out, '--tile', 32, '--overlap', 8)
    assert rc == 1, text
    failed = [l for l in text.splitlines() if 'broken.png' in l]
    assert failed and all('FAILED' in l or 'failed' in l for l in failed), text
    assert '4 restored, 0 skipped, 1 failed' in text, text
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)   # no temporary or partial files left

    assert _png_info(out / 'good.png') == (W, H, 8, 3)
    assert _png_info(out / 'deep.png') == (W, H, 16, 3)
    assert _png_info(out / 'alpha.png') == (W, H, 8, 4)
    np.testing.assert_array_equal(np.asarray(Image.open(out / 'alpha.png'))[..., 3], np.asarray(Image.open(inputs / 'alpha.png'))[..., 3])
    g = Image.open(out / 'gray.jpg')
    assert (g.format, g.mode, g.size) == ('JPEG', 'L', (W, H))
    # the model is not the identity: the colour was changed
    assert not np.array_equal(np.asarray(Image.open(out / 'good.png')), np.asarray(Image.open(inputs / 'good.png')))
    rgb, info = read_for_restore(out / 'deep.png')
    assert info['bit_depth'] == 16 and len(np.unique(rgb)) > 256   # 16-bit precision, not 8-bit values stored in 16


def test_rerun_skips_then_overwrite(model, inputs, tmp_path):
    out = tmp_path / 'out'
    restore('--ckpt', model, '--input', inputs, '--output', out)
    (inputs / 'broken.png').unlink()
    stamp = {n: (out / n).stat().st_mtime_ns for n in GOOD}
    rc, text = restore('--ckpt', model, '--input', inputs, '--output', out)
    assert rc == 0, text
    assert '0 restored, 4 skipped, 0 failed' in text and '--overwrite' in text, text
    assert {n: (out / n).stat().st_mtime_ns for n in GOOD} == stamp
    for n in GOOD: os.utime(out / n, ns=(1, 1))
    rc, text = restore('--ckpt', model, '--input', inputs, '--output', out, '--overwrite', '--t', '20', '--tile', '0')
    assert rc == 0 and '4 restored, 0 skipped, 0 failed' in text and 't=20' in text, text
    assert all((out / n).stat().st_mtime_ns > 1 for n in GOOD)


@pytest.mark.parametrize('args, exc, words', [
    (['--tile', '32', '--overlap', '32'], ValueError, ['--tile 32', '--overlap 32']),
    (['--overlap', '-1'], ValueError, ['--overlap']),
    (['--t', 'rainy'], ValueError, ['--t', "'rainy'"]),
    (['--t', '0'], ValueError, ['--t', '1..50']),
    (['--device', 'gpu0'], ValueError, ['--device']),
], ids=['tile<=overlap', 'overlap<0', 't-word', 't-range', 'device'])
def test_bad_arguments(model, inputs, tmp_path, args, exc, words):
    with pytest.raises(exc) as e: restore('--ckpt', model, '--input', inputs, '--output', tmp_path / 'o', *args)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / 'o').exists()


def test_missing_paths(model, inputs, tmp_path):
    with pytest.raises(FileNotFoundError, match='--ckpt'): restore('--ckpt', tmp_path / 'nope', '--input', inputs, '--output', tmp_path / 'o')
    with pytest.raises(FileNotFoundError, match='--input'): restore('--ckpt', model, '--input', tmp_path / 'nope', '--output', tmp_path / 'o')


def test_diffuir_model_refused(inputs, tmp_path):
    "A DiffUIR baseline checkpoint (6-channel input, restores by sampling) gets a clear error, not a shape error."
    cfg = load_preset('smoke')
    net, spec = new_model(cfg, time=True, in_ch=6)
    ck = save_checkpoint(tmp_path / 'dfu' / 'model', state_dict_cpu(net), dict(model=spec, preset=preset_dict(cfg), t_star=None, diffuir=True))
    with pytest.raises(ValueError, match='DiffUIR'): restore('--ckpt', ck, '--input', inputs, '--output', tmp_path / 'o')
    assert not (tmp_path / 'o').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_unavailable(model, inputs, tmp_path):
    with pytest.raises(ValueError, match='CUDA is not available'):
        restore('--ckpt', model, '--input', inputs, '--output', tmp_path / 'o', '--device', 'cuda')


def test_registered_in_dtir_cli(model, inputs, tmp_path, capsys):
    "Once `dtir.cli` registers the subcommand, a bad argument is a one-line error with exit 2."
    from dtir.cli import build_parser
    from cli_helpers import run_main, one_line_error
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if 'restore' not in sub.choices: pytest.skip('dtir.cli does not register `restore` yet')
    rc, err = run_main(['restore', '--ckpt', model, '--input', inputs, '--output', tmp_path / 'o', '--tile', '16', '--overlap', '16'], capsys)
    assert '--overlap 16' in one_line_error(rc, err, 'restore')
