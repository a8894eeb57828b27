"Input guards: one image reader (pixel limit, EXIF orientation) for data check, training data and restore; nothing skipped silently; clear one-line errors for unwritable outputs and edited checkpoints."
import json, os, struct, zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import one_line_error, unwritable_dir as unwritable, nudged_model
from dtir.cli import main as dtir_main

torch.set_num_threads(1)


def cli(capsys, *args) -> tuple[int, str, str]:
    "`dtir ARGS` in-process: (exit code, stdout, stderr)."
    capsys.readouterr()
    try: rc = dtir_main([str(a) for a in args])
    except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
    o = capsys.readouterr()
    return rc, o.out, o.err


def png(p: Path, a: np.ndarray | None = None, seed: int = 0, size=(24, 20)) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    a = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8) if a is None else a
    Image.fromarray(a).save(p)
    return p


def bomb_png(p: Path, w: int = 20000, h: int = 20000, depth: int = 16) -> Path:
    "A few-byte PNG declaring w x h RGB pixels of `depth` bits (20000x20000x16 bit: 2.4 GB once decoded)."
    p.parent.mkdir(parents=True, exist_ok=True)
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    p.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, 2, 0, 0, 0))
                  + chunk(b'IDAT', zlib.compress(b'\0' * 4096)) + chunk(b'IEND', b''))
    return p


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    return nudged_model(tmp_path_factory.mktemp('ck'))


# --- item 5: one pixel limit for every reader ---

def test_data_check_refuses_a_decompression_bomb(tmp_path, capsys):
    png(tmp_path / 'input' / 'a.png'); bomb_png(tmp_path / 'target' / 'a.png')
    rc, out, err = cli(capsys, 'data', 'check', tmp_path)
    assert rc == 1, out + err
    prob = [l for l in out.splitlines() if 'PROBLEM' in l]
    assert len(prob) == 1 and str(tmp_path / 'target' / 'a.png') in prob[0] and '20000x20000' in prob[0] and 'limit' in prob[0], out


def test_training_data_refuses_a_decompression_bomb(tmp_path):
    from dtir.data.paired import PairedFolder, PairError
    png(tmp_path / 'input' / 'a.png'); bomb_png(tmp_path / 'target' / 'a.png', depth=8)
    with pytest.raises(PairError, match=r'target/a\.png: declares 20000x20000'): PairedFolder(tmp_path)


def test_restore_and_training_share_the_reader(tmp_path):
    "`restore` reads through `dtir.data.io.decode_image` like training data: a TIFF bomb is refused by its header there too."
    import tifffile
    from dtir.data import io
    f = tmp_path / 'big.tif'
    tifffile.imwrite(f, np.zeros((16, 16, 3), np.uint8), photometric='rgb')
    old = io.MAX_PIXELS
    io.MAX_PIXELS = 100
    try:
        for read in (io.read_image, io.read_for_restore, io.image_size):
            with pytest.raises(OSError, match='big.tif: declares 16x16 = 256 pixels, more than the limit of 100'): read(f)
    finally: io.MAX_PIXELS = old


# --- item 6: zero pairs is an error; skipped files are counted and listed ---

def test_data_check_empty_folders_is_an_error(tmp_path, capsys):
    (tmp_path / 'input').mkdir(); (tmp_path / 'target').mkdir()
    rc, out, err = cli(capsys, 'data', 'check', tmp_path)
    assert rc == 1, out + err
    assert f'no image pairs found under {tmp_path}' in out, out


def test_data_check_lists_files_in_subfolders(tmp_path, capsys):
    for n in ('a', 'b'): png(tmp_path / 'input' / f'{n}.png'); png(tmp_path / 'target' / f'{n}.png')
    png(tmp_path / 'input' / 'more' / 'c.png'); png(tmp_path / 'target' / 'more' / 'c.png')
    rc, out, err = cli(capsys, 'data', 'check', tmp_path)
    assert rc == 0, out + err
    sk = [l for l in out.splitlines() if 'SKIPPED' in l]
    assert len(sk) == 2 and all('more/c.png' in l and 'does not read' in l for l in sk), out
    assert '2 file(s) skipped' in out and ': 2 pairs' in out


def test_data_check_rain100_nested_tree(tmp_path, capsys):
    for i in (1, 2): png(tmp_path / 'rain' / 'train' / f'rain-{i}.png'); png(tmp_path / 'norain' / 'train' / f'norain-{i}.png')
    rc, out, err = cli(capsys, 'data', 'check', tmp_path, '--layout', 'rain100')
    assert rc == 1, out + err
    assert 'no image pairs found' in out and out.count('SKIPPED') == 4 and 'rain/train/rain-1.png' in out, out


# --- item 7: outputs that cannot be written: one line, before any work ---

def test_restore_output_under_a_file(model, tmp_path, capsys):
    img = png(tmp_path / 'in' / 'x.png')
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', img.parent, '--output', img / 'out')
    msg = one_line_error(rc, err, 'restore')
    assert str(img) in msg and 'is a file' in msg and 'Errno' not in msg, msg


def test_restore_output_unwritable(model, tmp_path, capsys):
    img = png(tmp_path / 'in' / 'x.png')
    dst = unwritable(tmp_path) / 'out'
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', img.parent, '--output', dst)
    msg = one_line_error(rc, err, 'restore')
    assert str(dst) in msg and 'cannot create' in msg, msg


def test_evaluate_out_unwritable(model, tmp_path, capsys):
    dst = unwritable(tmp_path) / 'sub' / 'res.json'
    rc, out, err = cli(capsys, 'evaluate', '--preset', 'smoke', '--ckpt', model, '--task', 'rain', '--severity', 'id', '--out', dst)
    msg = one_line_error(rc, err, 'evaluate')
    assert str(dst) in msg and '--out' in msg, msg


# --- item 8: litter of a killed restore ---

def test_restore_temp_litter_is_neither_input_nor_kept(model, tmp_path, capsys):
    "A 0-byte `.NAME.tmpPID.png` of a killed restore: not read as an input, and removed from the output folder."
    out1 = tmp_path / 'out1'; out1.mkdir()
    litter = out1 / '.x.tmp999999.png'; litter.write_bytes(b'')
    png(out1 / 'done.png')
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', out1, '--output', tmp_path / 'out2')
    assert rc == 0 and '1 restored, 0 skipped, 0 failed' in out and 'failed:' not in out, out + err
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', tmp_path / 'out2', '--output', out1, '--overwrite')
    assert rc == 0, out + err
    assert not litter.exists() and sorted(p.name for p in out1.iterdir()) == ['done.png']


# --- item 9: every skipped input named, GIF content said ---

def test_restore_names_unsupported_inputs(model, tmp_path, capsys):
    d = tmp_path / 'in'
    png(d / 'a.png')
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(d / 'clip.gif', save_all=True, append_images=frames[1:])
    frames[0].save(d / 'fake.png', format='GIF', save_all=True, append_images=frames[1:])
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', d, '--output', tmp_path / 'o')
    assert rc == 0, out + err
    assert '1 input file(s) ignored' in out, out
    ig = [l for l in out.splitlines() if 'ignored:' in l]
    assert len(ig) == 1 and 'clip.gif' in ig[0] and 'unsupported file type .gif' in ig[0], out
    notes = [l for l in out.splitlines() if 'note:' in l and 'fake.png' in l]
    assert any('GIF content under a .png name' in l for l in notes) and any('only the first' in l for l in notes), out


# --- item 10 ---

def test_finetune_missing_ckpt_folder(tmp_path, capsys):
    rc, out, err = cli(capsys, 'finetune', '--preset', 'smoke', '--task', 'rain', '--ckpt', tmp_path / 'nope' / 'model', '--out', tmp_path / 'o')
    msg = one_line_error(rc, err, 'finetune')
    assert str(tmp_path / 'nope' / 'model') in msg and 'not found' in msg and 'dtir match' not in msg, msg


def test_restore_output_is_an_existing_file(model, tmp_path, capsys):
    img = png(tmp_path / 'img' / 'x.png')
    rc, out, err = cli(capsys, 'restore', '--ckpt', model, '--input', img, '--output', img)
    msg = one_line_error(rc, err, 'restore')
    assert 'Errno' not in msg and str(img) in msg and 'give a folder' in msg, msg


def test_edited_meta_json_is_refused(model, tmp_path, capsys):
    import shutil
    m = shutil.copytree(model, tmp_path / 'model')
    f = m / 'meta.json'
    f.write_text(f.read_text().replace('"rain": 8', '"rain": 30'))
    img = png(tmp_path / 'in' / 'x.png')
    rc, out, err = cli(capsys, 'restore', '--ckpt', m, '--input', img, '--output', tmp_path / 'o')
    msg = one_line_error(rc, err, 'restore')
    assert str(f) in msg and 'edited' in msg, msg
    assert not (tmp_path / 'o').exists()


def test_weights_file_mode_follows_umask(tmp_path):
    from dtir.checkpoint import save_checkpoint
    old = os.umask(0o022)
    try: save_checkpoint(tmp_path / 'ck', {'a': torch.zeros(2)}, {})
    finally: os.umask(old)
    assert (tmp_path / 'ck' / 'model.safetensors').stat().st_mode & 0o777 == 0o644


def test_exif_rotated_pair_is_not_a_size_mismatch(tmp_path, capsys):
    "A phone photo stored sideways (EXIF orientation 6) with its upright target: data check and training read both upright."
    from dtir.data.paired import PairedFolder
    yy, xx = np.mgrid[0:20, 0:30]
    up = np.stack([yy * 10, xx * 8, 200 - xx * 3], 2).astype(np.uint8)   # 30 wide x 20 high, upright; smooth, so JPEG keeps it close
    ex = Image.Exif(); ex[0x0112] = 6
    (tmp_path / 'input').mkdir()
    Image.fromarray(np.rot90(up, 1).copy()).save(tmp_path / 'input' / 'p.jpg', quality=100, exif=ex.tobytes())   # stored 20 wide x 30 high
    png(tmp_path / 'target' / 'p.png', up)
    rc, out, err = cli(capsys, 'data', 'check', tmp_path)
    assert rc == 0 and '0 problem(s)' in out, out + err
    it = PairedFolder(tmp_path)[0]
    assert it['lq'].shape == it['gt'].shape == (3, 20, 30)
    assert (it['lq'] - it['gt']).abs().mean() < 0.02   # the same picture, not a turned one
