"Known answers for dtir.diffusion: the ve numbers of DESIGN.md 2, oracle networks through losses and DDIM, DDPM posterior noise."
import math

import pytest
import torch
from torch import nn

from dtir.diffusion import (SCHEDULES, Schedule, ddim_reverse, ddim_step, diffuse_then_reverse, make_schedule,
                            onestep_restore, predict_x0, pretrain_loss, rec_loss)


class Oracle(nn.Module):
    "The ideal residual network for a known clean batch: net(x_t, t) = x_t - x0."
    def __init__(self, x0): super().__init__(); self.register_buffer('x0', x0)
    def forward(self, x, t=None): return x - self.x0


class TinyNet(nn.Module):
    def __init__(self, T=50):
        super().__init__(); self.T = T; self.conv = nn.Conv2d(4, 3, 3, padding=1)
    def forward(self, x, t=None):
        tt = torch.zeros(x.shape[0]) if t is None else torch.as_tensor(t).float().expand(x.shape[0])
        return self.conv(torch.cat([x, (tt / self.T).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], 1))


@pytest.fixture(params=list(SCHEDULES))
def sch(request) -> Schedule: return make_schedule(request.param, 50)


def test_ve_numbers_design_md():
    sb = make_schedule('ve', 50).s * 255
    assert sb[0] == 0 and abs(sb[4] - 2.9) < 0.05 and abs(sb[15] - 8.0) < 0.05
    assert (10 - sb[38:] < 0.012).all() and 10 - sb[37] > 0.012
    assert (sb[1:] > sb[:-1]).all() and abs(sb[50] - 10 * math.sqrt(1 - 0.005 ** 2)) < 1e-9
    # the formula written out independently
    T, s = 50, 1000 / 51
    theta = [1e-4 * s + i * (0.02 * s - 1e-4 * s) / T for i in range(T + 1)]
    tb = [sum(theta[1:t + 1]) for t in range(T + 1)]
    dt = -math.log(0.005) / tb[T]
    ref = [10 * math.sqrt(1 - math.exp(-2 * v * dt)) for v in tb]
    assert max(abs(a - b) for a, b in zip(sb.tolist(), ref)) < 1e-9


def test_vp_and_cosine_coefficients():
    vp = make_schedule('vp', 50)
    abar = vp.a ** 2
    assert (abar[1:] < abar[:-1]).all() and abs(1 - abar[1] - 2e-3) < 1e-12
    beta = torch.linspace(2e-3, 0.4, 50, dtype=torch.float64)
    assert torch.allclose(abar[1:], torch.cumprod(1 - beta, 0), atol=1e-14)
    sig = (vp.effective_sigma(torch.arange(1, 5)) * 255).tolist()
    assert [round(v) for v in sig] == [11, 28, 45, 62]  # DESIGN.md 10
    cs = make_schedule('cosine', 50)
    assert torch.allclose(cs.a ** 2 + cs.s ** 2, torch.ones(51, dtype=torch.float64))
    assert (cs.effective_sigma(torch.arange(1, 8)) < 60 / 255).sum() == 7   # finer at low noise than vp (4 of 7)
    assert (vp.effective_sigma(torch.arange(1, 8)) < 60 / 255).sum() == 3


def test_q_sample_moments(sch):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 2, 2, 2, dtype=torch.float64).expand(40000, 2, 2, 2)
    for t in (1, 25, 50):
        xt = sch.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        a, s = sch.a[t].item(), sch.s[t].item()
        assert (xt.mean(0) - a * x0[0]).abs().max() < 4 * s / 200
        assert ((xt.std(0) / s) - 1).abs().max() < 0.03


def test_oracle_pretrain_loss_is_zero(sch):
    x0 = torch.rand(4, 3, 8, 8)
    for t in (None, 1, 50, torch.tensor([1, 2, 30, 50]), torch.tensor([3.0, 4.0, 5.0, 6.0])):
        loss, logs = pretrain_loss(Oracle(x0), x0, sch, t=t, w_eps=1.0, generator=torch.Generator().manual_seed(0))
        assert loss.item() < 1e-5 and logs['eps_mse'] < 1e-6


def test_oracle_ddim_exact_from_every_t(sch):
    T = sch.T
    x0 = torch.rand(T, 3, 6, 6, dtype=torch.float64)
    eps = torch.randn_like(x0)
    ts = torch.arange(1, T + 1)
    xt = sch.q_sample(x0, ts, eps)
    for eta in (0.0, 0.5, 1.0):
        out = ddim_reverse(Oracle(x0), xt, ts, sch, eta=eta, generator=torch.Generator().manual_seed(1))
        assert (out - x0).abs().max() < 1e-9
    for t in range(1, T + 1):  # a whole batch starting at the same t
        assert (ddim_reverse(Oracle(x0[:2]), sch.q_sample(x0[:2], t, eps[:2]), t, sch) - x0[:2]).abs().max() < 1e-9


def test_ddim_step_keeps_forward_marginals(sch):
    "One DDIM step with an x0-oracle from q(x_t|x0) lands on q(x_{t-1}|x0) with the same eps (eta = 0)."
    x0 = torch.rand(3, 3, 4, 4, dtype=torch.float64); eps = torch.randn_like(x0)
    for t in (1, 2, 10, 50):
        out = ddim_step(Oracle(x0), sch.q_sample(x0, t, eps), t, sch)
        assert (out - sch.q_sample(x0, t - 1, eps)).abs().max() < 1e-9


def test_ddpm_posterior_covariance():
    "eta = 1 reproduces the forward joint law: Cov(x_t, x_{t-1} | x0) = (a_t/a_{t-1}) s_{t-1}^2."
    g = torch.Generator().manual_seed(2)
    x0 = torch.full((200_000, 1, 1, 1), 0.5, dtype=torch.float64)
    for name, t in (('vp', 2), ('ve', 3), ('cosine', 20)):
        sch = make_schedule(name)
        xt = sch.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        xp = ddim_reverse(Oracle(x0), xt, t, sch, t_end=t - 1, eta=1.0, generator=g)
        a_t, a_p, s_p = sch.a[t].item(), sch.a[t - 1].item(), sch.s[t - 1].item()
        cov = ((xt - a_t * 0.5) * (xp - a_p * 0.5)).mean().item()
        assert abs(cov / (a_t / a_p * s_p ** 2) - 1) < 0.02
        assert abs(xp.var().item() / s_p ** 2 - 1) < 0.02


def test_losses_accept_none_int_tensor():
    net = TinyNet(); x = torch.rand(2, 3, 8, 8); y = (x + 0.1).clamp(0, 1)
    sch = make_schedule('vp')
    for t in (None, 5, torch.tensor([1, 7])):
        loss, logs = rec_loss(net, y, x, t, fft_weight=0.1)
        loss.backward()
        assert set(logs) == {'loss', 'l1', 'fft'}
        loss, logs = pretrain_loss(net, x, sch, t=t)
        loss.backward()
        assert logs['loss'] == pytest.approx(logs['l1'])
    assert rec_loss(Oracle(x), y, x, 3, fft_weight=0.1)[0].item() < 1e-6
    assert torch.allclose(onestep_restore(Oracle(x), y, 4), x, atol=1e-6)
    assert torch.allclose(predict_x0(Oracle(x), y, None), x, atol=1e-6)
    with pytest.raises(ValueError, match='t must lie in 1..50'): pretrain_loss(net, x, sch, t=0)
    with pytest.raises(ValueError, match=r't: timesteps must lie in 0..50'): pretrain_loss(net, x, sch, t=51)


def test_diffuse_then_reverse(sch):
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64); y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    out = diffuse_then_reverse(Oracle(x), y, torch.tensor([1, 10, 50]), sch, torch.Generator().manual_seed(0))
    assert (out - x).abs().max() < 1e-9
    assert torch.equal(diffuse_then_reverse(Oracle(x), y, 0, sch), y)


def test_unknown_schedule():
    with pytest.raises(KeyError, match='choose one of vp, ve, cosine'): make_schedule('edm')
