"Bad-input cases of the data layer (each converted by its documented rule or rejected naming the file) and the real sets."
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dtir.data.builtin import PatchSampler, builtin_images, clean_eval_images
from dtir.data.degrade import degrade
from dtir.data.io import ImageReadError, read_image, write_image
from dtir.data.paired import LAYOUTS, PairError, PairedFolder, check_pairs, clean_folder, data_check_main

torch.set_num_threads(1)
SHARED = Path(os.environ.get('DTIR_SHARED_DATA', Path(__file__).resolve().parents[1].parent / 'shared' / 'data'))


def _rgb(h=12, w=10, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _pair_tree(root, names=('a', 'b'), size=(12, 10)):
    for n in names:
        for d in ('input', 'target'):
            (root / d).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(*size)).save(root / d / f'{n}.png')
    return root


# --- single files: converted or rejected ---

def test_truncated_png_rejected(tmp_path):
    p = tmp_path / 'cut.png'
    Image.fromarray(_rgb(64, 64)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match='cut.png'):
        read_image(p)


def test_non_image_rejected(tmp_path):
    p = tmp_path / 'readme.jpg'
    p.write_text('hello, not a JPEG')
    with pytest.raises(ImageReadError, match='readme.jpg'):
        read_image(p)


def test_grayscale_to_three_channels(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, 'L').save(tmp_path / 'g.png')
    a = read_image(tmp_path / 'g.png')
    assert a.shape == (12, 10, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, np.repeat(g[..., None] / 255, 3, 2), atol=1e-6)


def test_rgba_alpha_dropped(tmp_path):
    rgba = np.concatenate([_rgb(), np.zeros((12, 10, 1), np.uint8)], 2)   # fully transparent: colour is kept
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'x.png')
    np.testing.assert_allclose(read_image(tmp_path / 'x.png'), rgba[..., :3] / 255, atol=1e-6)


def test_16bit_png_scaled_by_65535(tmp_path):
    a = np.random.default_rng(1).random((9, 11, 3)).astype(np.float32)
    write_image(tmp_path / 'c16.png', a, bit_depth=16)
    r = read_image(tmp_path / 'c16.png')
    np.testing.assert_allclose(r, a, atol=1 / 65535)          # 16 bits survive (Pillow alone would keep 8)
    assert np.abs(r - np.round(a * 255) / 255).max() > 1e-4
    g16 = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(g16).save(tmp_path / 'g16.png')
    np.testing.assert_allclose(read_image(tmp_path / 'g16.png')[..., 2], g16 / 65535, atol=1e-7)


def test_16bit_tiff_scaled_by_65535(tmp_path):
    import tifffile
    a = (np.random.default_rng(2).random((8, 7, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'x.tif', a, photometric='rgb')
    np.testing.assert_allclose(read_image(tmp_path / 'x.tif'), a / 65535, atol=1e-7)
    tifffile.imwrite(tmp_path / 'planar.tif', np.moveaxis(a, -1, 0), photometric='rgb', planarconfig='separate')
    np.testing.assert_allclose(read_image(tmp_path / 'planar.tif'), a / 65535, atol=1e-7)


def test_float_tiff_out_of_range_rejected(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / 'f.tif', np.full((4, 4, 3), 1.5, np.float32), photometric='rgb')
    with pytest.raises(ImageReadError, match='f.tif'):
        read_image(tmp_path / 'f.tif')


def test_palette_converted(tmp_path):
    Image.fromarray(_rgb()).convert('P').save(tmp_path / 'p.png')
    assert read_image(tmp_path / 'p.png').shape == (12, 10, 3)


def test_image_smaller_than_patch_named():
    with pytest.raises(ValueError, match=r"'small' \(16x64\)"):
        PatchSampler([('small', np.zeros((16, 64, 3), np.float32))], patch=32, batch=2)


# --- pairs ---

def test_missing_partner_named(tmp_path):
    r = _pair_tree(tmp_path / 'd')
    (r / 'target' / 'b.png').unlink()
    rep = check_pairs(r)
    assert len(rep['problems']) == 1 and 'b.png' in rep['problems'][0] and 'missing partner' in rep['problems'][0]
    with pytest.raises(PairError, match='b.png'):
        PairedFolder(r)
    assert data_check_main(r) == 1


def test_size_mismatch_named(tmp_path):
    r = _pair_tree(tmp_path / 'd')
    Image.fromarray(_rgb(13, 10)).save(r / 'target' / 'a.png')
    with pytest.raises(PairError, match=r'size mismatch: .*a.png is 12x10.*a.png is 13x10'):
        PairedFolder(r)


def test_unreadable_pair_named(tmp_path):
    r = _pair_tree(tmp_path / 'd')
    (r / 'input' / 'a.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(PairError, match='unreadable: .*a.png'):
        PairedFolder(r)


def test_min_size_named(tmp_path):
    r = _pair_tree(tmp_path / 'd')
    with pytest.raises(PairError, match='too small: .*is 12x10 < min_size 16'):
        PairedFolder(r, min_size=16)


def test_stem_match_across_extensions_and_items(tmp_path):
    r = _pair_tree(tmp_path / 'd', names=('a',))
    (r / 'input' / 'a.png').rename(r / 'input' / 'a.jpg')
    ds = PairedFolder(r)
    item = ds[0]
    assert item['lq_path'].endswith('a.jpg') and item['gt_path'].endswith('a.png')
    assert item['lq'].shape == item['gt'].shape == (3, 12, 10)
    assert data_check_main(r) == 0


def test_ambiguous_stems_rejected(tmp_path):
    r = _pair_tree(tmp_path / 'd', names=('a',))
    Image.fromarray(_rgb()).save(r / 'target' / 'a.jpg')
    with pytest.raises(ValueError, match='a.jpg and a.png|a.png and a.jpg'):
        LAYOUTS['paired'](r)


def test_clean_only_synthesised(tmp_path):
    (tmp_path / 'c' / 'target').mkdir(parents=True)
    Image.fromarray(_rgb(32, 32)).save(tmp_path / 'c' / 'target' / '1.png')
    ds = PairedFolder(tmp_path / 'c', 'cbsd68', synth=('noise', 'id'))
    it = ds[0]
    assert it['task'] == 'noise' and it['lq_path'] == ''
    assert torch.equal(it['lq'], degrade(it['gt'][None], 'noise', 'id', seed=0)[0])
    assert [p.name for p in clean_folder(tmp_path / 'c')] == ['1.png']


# --- built-in images ---

def test_builtin_split_and_eval():
    assert {n for n, _ in builtin_images('train')}.isdisjoint(n for n, _ in builtin_images('test'))
    x, names = clean_eval_images(32, 4)
    assert x.shape == (4, 3, 32, 32) and len(names) == 4


# --- the real sets in ../shared/data (skipped when absent) ---

def _need(name):
    if not (SHARED / name).is_dir():
        pytest.skip(f'{SHARED / name} not present')
    return SHARED / name


def test_real_rain100l():
    root = _need('rain100l')
    rep = check_pairs(root, 'rain100', full=False)
    assert rep['pairs'] == 100 and rep['problems'] == [] and rep['counts'] == {'rain': 100}
    it = PairedFolder(root, 'rain100', full_check=False)[0]
    assert it['task'] == 'rain' and it['lq'].shape == it['gt'].shape and it['lq'].shape[0] == 3


def test_real_lol():
    root = _need('lol_v1_eval15')
    ds = PairedFolder(root, full_check=False)
    assert len(ds) == 15
    assert check_pairs(root, 'lol', full=False)['counts'] == {'lowlight': 15}
    it = ds[0]
    assert it['lq'].shape == (3, 400, 600) and it['lq'].mean() < it['gt'].mean()


@pytest.mark.parametrize('name,n', [('cbsd68', 68), ('kodak24', 24), ('mcmaster18', 18)])
def test_real_clean_sets(name, n):
    root = _need(name)
    files = clean_folder(root)
    assert len(files) == n
    a = read_image(files[0])
    assert a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert check_pairs(root, 'cbsd68', full=False)['clean_only'] == n
    x, names = clean_eval_images(64, 6, roots=[root / 'target'])
    assert x.shape == (6, 3, 64, 64) and names[1].startswith(f'{name}/')


@pytest.mark.parametrize('name', ['rain100l', 'lol_v1_eval15', 'kodak24', 'bsds500_test200'])
def test_real_files_read_alike_and_write_back(name, tmp_path):
    "On real files the training reader, the header size and the restore reader agree; an identity restore writes a PNG's pixels back."
    from dtir.data.io import decode_image, image_size, read_for_restore, write_like
    root = _need(name)
    files = sorted(p for p in root.rglob('*') if p.suffix.lower() in ('.png', '.jpg'))[:2]
    assert files
    for p in files:
        a, (rgb, info) = read_image(p), read_for_restore(p)
        assert image_size(p) == a.shape[:2] == info['size']
        if info['bit_depth'] == 8: np.testing.assert_array_equal(rgb, a)   # both value / 255 in float32
        out = write_like(tmp_path / p.name, rgb, info)
        if p.suffix.lower() == '.png': np.testing.assert_array_equal(decode_image(out)[0], decode_image(p)[0])
