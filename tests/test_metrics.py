"Parity of dtir.metrics with scikit-image on real images, published input-vs-target numbers, and the LPIPS status."
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.color
import skimage.data
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as sk_psnr, structural_similarity as sk_ssim

from dtir.metrics import LPIPS, check_image, fmt, get_lpips, psnr, score, ssim


def shared_data() -> Path | None:
    env = os.environ.get('DTIR_SHARED_DATA')
    p = Path(env) if env else Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
    return p if p.is_dir() else None


def need(name: str) -> Path:
    d = shared_data()
    if d is None or not (d / name).is_dir(): pytest.skip(f'shared data set {name} not available')
    return d / name


def read(p) -> np.ndarray: return np.asarray(Image.open(p).convert('RGB'), dtype=np.float64) / 255
def to_t(a) -> torch.Tensor: return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()
def y_of(a) -> np.ndarray: return skimage.color.rgb2ycbcr(a)[..., 0] / 255


def sk_ssim1(a, b):
    return sk_ssim(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                   channel_axis=-1 if a.ndim == 3 else None)


def check_pair(x: np.ndarray, y: np.ndarray, tol: float = 1e-4):
    X, Y = to_t(x), to_t(y)
    assert abs(psnr(X, Y).item() - sk_psnr(y, x, data_range=1)) < tol
    assert abs(ssim(X, Y).item() - sk_ssim1(x, y)) < tol
    assert abs(psnr(X, Y, y_channel=True).item() - sk_psnr(y_of(y), y_of(x), data_range=1)) < tol
    assert abs(ssim(X, Y, y_channel=True).item() - sk_ssim1(y_of(x), y_of(y))) < tol
    c = 4
    assert abs(ssim(X, Y, crop_border=c).item() - sk_ssim1(x[c:-c, c:-c], y[c:-c, c:-c])) < tol


@pytest.mark.parametrize('name', ['astronaut', 'coffee', 'chelsea'])
def test_parity_skimage_photos(name):
    gt = getattr(skimage.data, name)()[:192, :224].astype(np.float64) / 255
    rng = np.random.default_rng(0)
    check_pair(np.clip(gt + rng.normal(0, 25 / 255, gt.shape), 0, 1), gt)


def test_parity_kodak24_noise():
    d = need('kodak24')
    rng = np.random.default_rng(1)
    for f in sorted((d / 'target').iterdir())[:2]:
        gt = read(f)
        check_pair(np.clip(gt + rng.normal(0, 25 / 255, gt.shape), 0, 1), gt)


def rain100l_pairs(d: Path):
    names = sorted((d / 'target').iterdir(), key=lambda p: int(p.stem))
    return [(read(d / 'input' / f.name), read(f)) for f in names]


def test_rain100l_published_input_scores():
    "Rain100L input vs target: Y-PSNR 26.90 dB and MATLAB Y-SSIM 0.838, the published 'input' row."
    pairs = rain100l_pairs(need('rain100l'))
    check_pair(*pairs[0])
    r = score([to_t(x) for x, _ in pairs], [to_t(y) for _, y in pairs], y_channel=True, lpips=False)
    assert (r['n'], r['protocol']) == (100, 'Y (BT.601), crop 0')
    assert abs(r['psnr'] - 26.90) < 0.005
    assert abs(r['ssim'] - 0.838) < 0.0005


def test_lol_eval15_published_input_psnr():
    d = need('lol_v1_eval15')
    names = sorted((d / 'target').iterdir())
    r = score([to_t(read(d / 'input' / f.name)) for f in names], [to_t(read(f)) for f in names], lpips=False)
    assert r['n'] == 15 and abs(r['psnr'] - 7.77) < 0.005


def test_range_and_shape_errors():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r'x: values must lie in \[0, 1\]'): psnr(x * 2, x)
    with pytest.raises(ValueError, match=r'y: values must lie in \[0, 1\]'): ssim(x, x - 0.5)
    with pytest.raises(TypeError, match='divide integer images by 255'): psnr((x * 255).byte(), x)
    with pytest.raises(ValueError, match='same shape'): psnr(x, x[..., :8])
    with pytest.raises(ValueError, match='y_channel=True needs RGB'): psnr(x[:, :1], x[:, :1], y_channel=True)
    assert check_image(x + 1e-6).max() <= 1


def test_identical_images_and_means():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(x, x)).all()
    r = score(x, x, lpips=False)
    assert r['psnr'] == 100.0 and r['psnr_capped'] == 2 and r['per_image']['psnr'] == [float('inf')] * 2
    assert abs(r['ssim'] - 1) < 1e-12
    assert fmt(r['psnr']) == '100.00' and fmt(r['per_image']['psnr'][0]) == 'inf'


def test_lpips_status_is_explicit():
    lp = get_lpips()
    assert lp is get_lpips() and isinstance(lp, LPIPS)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    r = score(x, y)
    if lp.available:
        d = lp(x, y)
        assert d.shape == (2,) and (d > 0).all() and lp(x, x).abs().max() < 1e-6
        assert r['lpips'] == pytest.approx(d.mean().item())
    else:
        assert lp.reason and lp(x, y) is None
        assert r['lpips'] == 'unavailable' and r['per_image']['lpips'] is None and r['lpips_status'] == lp.reason
        assert fmt(r['lpips'], 3) == 'unavailable'
