"Tests of dtir.gef on a toy network with the model contract (no backbone, no diffusion module needed)."
import json, math

import pytest
import torch
from torch import nn

from dtir.gef import (check_depth_groups, shallow_params, gen_param_selection, layer_decay_weights, compute_importance,
                      save_importance, load_importance, params_fingerprint, snapshot_params, reg_loss, grad_cosine,
                      orth_loss_batch, orth_loss_rows, orth_loss_sample, per_sample_grads, gef_backward, mix_iteration)
from dtir.gef import _splitmix64, _M64

torch.set_num_threads(1)


class ToyNet(nn.Module):
    "Tiny residual conv net with a time input and depth_groups."
    def __init__(self, width=6, n_blocks=3, T=50):
        super().__init__()
        self.T = T
        self.inp = nn.Conv2d(3, width, 3, padding=1)
        self.temb = nn.Linear(1, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU()) for _ in range(n_blocks)])
        self.out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x, t=None):
        h = self.inp(x)
        if t is not None:
            t = torch.as_tensor(t, device=x.device).to(x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
            h = h + self.temb(t / self.T)[:, :, None, None]
        for b in self.blocks: h = h + b(h)
        return self.out(h)

    def depth_groups(self):
        groups = [list(self.inp.named_parameters('inp')) + list(self.temb.named_parameters('temb'))]
        groups += [list(b.named_parameters(f'blocks.{i}')) for i, b in enumerate(self.blocks)]
        return groups + [list(self.out.named_parameters('out'))]


class Lin(nn.Module):
    "net(x) = <x, theta> per sample, theta split over two tensors."
    def __init__(self):
        super().__init__()
        self.p1, self.p2 = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))
    def forward(self, x, t=None): return x @ torch.cat([self.p1, self.p2])
    def depth_groups(self): return [[('p1', self.p1)], [('p2', self.p2)]]


def batches(n, B=3, size=8, t_star=10, T=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    gen, rec = [], []
    for _ in range(n):
        x0 = torch.rand(B, 3, size, size, generator=g)
        gen.append(dict(x0=x0, t=torch.randint(1, T + 1, (B,), generator=g), eps=torch.randn(B, 3, size, size, generator=g)))
        x = torch.rand(B, 3, size, size, generator=g)
        rec.append(dict(y=(x + 0.2 * torch.randn(B, 3, size, size, generator=g)).clamp(0, 1), x=x, t=torch.full((B,), t_star)))
    return gen, rec


def pre_loss(net, b, reduce=True, T=50):
    ab = (1 - b['t'].float() / (T + 1)).reshape(-1, 1, 1, 1)
    xt = ab.sqrt() * b['x0'] + (1 - ab).sqrt() * b['eps']
    l = ((xt - net(xt, b['t'])) - b['x0']).abs().mean((1, 2, 3))
    return l.mean() if reduce else l


def rec_loss(net, b, reduce=True):
    l = ((b['y'] - net(b['y'], b['t'])) - b['x']).abs().mean((1, 2, 3))
    return l.mean() if reduce else l


def rec_loss_notime(net, b, reduce=True):
    "A plain (t=None) restoration loss: the time embedding gets no gradient from it."
    l = ((b['y'] - net(b['y'])) - b['x']).abs().mean((1, 2, 3))
    return l.mean() if reduce else l


def fresh(seed=0, **kw):
    torch.manual_seed(seed)
    return ToyNet(**kw)


GB, RB = batches(3)


# ---------------------------------------------------------------- parameter selection and decay
def test_depth_groups_and_selection():
    net = fresh()
    assert len(check_depth_groups(net)) == 5
    names = [n for n, _ in shallow_params(net, 2)]
    assert names == ['inp.weight', 'inp.bias', 'temb.weight', 'temb.bias', 'blocks.0.0.weight', 'blocks.0.0.bias']
    assert [n for n, _ in gen_param_selection(net, 'shallow', 2)] == names
    assert [n for n, _ in gen_param_selection(net, 'deep', 2)] == ['blocks.2.0.weight', 'blocks.2.0.bias', 'out.weight', 'out.bias']
    assert [n for n, _ in gen_param_selection(net, 'all', 1)] == [n for g in net.depth_groups() for n, _ in g]
    assert gen_param_selection(net, 'none', 2) == [] and shallow_params(net, 0) == []
    with pytest.raises(ValueError, match='k_shallow=6 but ToyNet has 5 depth groups'): shallow_params(net, 6)
    with pytest.raises(ValueError, match='k_shallow=9'): gen_param_selection(net, 'deep', 9)
    with pytest.raises(ValueError, match='gen_layers'): gen_param_selection(net, 'middle', 1)


def test_check_depth_groups_catches_contract_violations():
    class Dup(ToyNet):
        def depth_groups(self): g = super().depth_groups(); return g + [g[0]]
    class Missing(ToyNet):
        def depth_groups(self): return super().depth_groups()[1:]
    class Wrong(ToyNet):
        def depth_groups(self): return [[('inp.weight', self.out.weight)]] + super().depth_groups()[1:]
    with pytest.raises(ValueError, match="'inp.weight' appears in groups 0 and 5"): check_depth_groups(Dup())
    with pytest.raises(ValueError, match='misses trainable parameters'): check_depth_groups(Missing())
    with pytest.raises(ValueError, match='not net.inp.weight'): check_depth_groups(Wrong())


def test_layer_decay_weights():
    names = [f'p{i}' for i in range(6)]
    w = layer_decay_weights(names, t_star=20, a=0.05)
    assert list(w) == names
    for i, n in enumerate(names): assert w[n] == pytest.approx(math.exp(-0.05 * 20 * i / 5))
    assert w['p0'] == 1.0 and w['p5'] == pytest.approx(math.exp(-1.0))
    assert layer_decay_weights(['only'], 50) == {'only': 1.0}
    assert layer_decay_weights([], 50) == {}
    assert all(v == 1.0 for v in layer_decay_weights(names, 0).values())
    with pytest.raises(ValueError, match='duplicates'): layer_decay_weights(['a', 'a'], 3)
    with pytest.raises(ValueError, match='t_star'): layer_decay_weights(['a', 'b'], -1)


# ---------------------------------------------------------------- importance
def test_importance_known_values_and_no_side_effects():
    lin = Lin()
    A = [torch.tensor([[1., -2, 3, 0, 1]]), torch.tensor([[-3., 0, 1, 2, 1]])]
    f = lambda m, x: m(x).mean()
    om = compute_importance(lin, f, A)
    torch.testing.assert_close(om['p1'], torch.tensor([2., 1, 2]))
    torch.testing.assert_close(om['p2'], torch.tensor([1., 1]))
    torch.testing.assert_close(compute_importance(lin, f, A, 'fisher')['p1'], torch.tensor([5., 2, 5]))
    assert lin.p1.grad is None and lin.p2.grad is None
    with pytest.raises(ValueError, match='empty'): compute_importance(lin, f, [])
    with pytest.raises(ValueError, match="kind must be 'abs' or 'fisher'"): compute_importance(lin, f, A, 'l2')
    with pytest.raises(ValueError, match='scalar'): compute_importance(lin, lambda m, x: m(x), A)


def test_importance_unused_parameters_are_zero():
    net = fresh()
    om = compute_importance(net, rec_loss_notime, RB[:2])
    assert set(om) == {n for n, _ in net.named_parameters()}
    assert om['temb.weight'].abs().sum() == 0 and om['inp.weight'].abs().sum() > 0


def test_save_load_importance(tmp_path):
    net = fresh()
    om = compute_importance(net, pre_loss, GB[:2])
    f = tmp_path / 'sub' / 'imp.safetensors'
    meta = dict(checkpoint=params_fingerprint(net), kind='abs', n=2)
    save_importance(f, om, meta)
    assert sorted(p.name for p in f.parent.iterdir()) == ['imp.safetensors', 'imp.safetensors.json']
    om2, meta2 = load_importance(f, expect_meta=dict(checkpoint=params_fingerprint(net), n=2))
    assert meta2 == meta and all(torch.equal(om2[k], om[k]) for k in om)
    with pytest.raises(ValueError, match="meta 'checkpoint' is"):
        load_importance(f, expect_meta=dict(checkpoint=params_fingerprint(fresh(1))))
    with pytest.raises(ValueError, match="meta has no 'seed'"): load_importance(f, expect_meta=dict(seed=0))
    # overwrite keeps exactly two files; a stale sidecar is detected
    save_importance(f, {k: v * 2 for k, v in om.items()}, meta)
    assert sorted(p.name for p in f.parent.iterdir()) == ['imp.safetensors', 'imp.safetensors.json']
    side = json.loads((f.parent / 'imp.safetensors.json').read_text())
    save_importance(f, om, meta)
    (f.parent / 'imp.safetensors.json').write_text(json.dumps(side))
    with pytest.raises(ValueError, match='does not match its sidecar'): load_importance(f)
    with pytest.raises(FileNotFoundError, match='missing.safetensors'): load_importance(tmp_path / 'missing.safetensors')
    (f.parent / 'imp.safetensors.json').unlink()
    with pytest.raises(FileNotFoundError, match='sidecar'): load_importance(f)


def test_fingerprint_and_snapshot():
    net = fresh()
    th0 = snapshot_params(net)
    assert params_fingerprint(net) == params_fingerprint(th0) == params_fingerprint(fresh())
    with torch.no_grad(): net.out.bias.add_(1e-6)
    assert params_fingerprint(net) != params_fingerprint(th0)
    assert not torch.equal(th0['out.bias'], net.out.bias.detach())


# ---------------------------------------------------------------- regulariser
def test_reg_loss_zero_at_theta0():
    net = fresh()
    om = compute_importance(net, pre_loss, GB[:2])
    P = dict(net.named_parameters())
    r = reg_loss(P, snapshot_params(net), om)
    assert r.item() == 0.0
    gs = torch.autograd.grad(r, list(P.values()), allow_unused=True, materialize_grads=True)
    assert all(g.abs().sum() == 0 for g in gs)


def test_reg_loss_value_pull_back_and_weights():
    lin = Lin()
    with torch.no_grad(): lin.p1.copy_(torch.tensor([0.5, -0.5, 0.5])); lin.p2.copy_(torch.tensor([1., 1.]))
    th = {'p1': torch.zeros(3), 'p2': torch.zeros(2)}
    om = {'p1': torch.tensor([1., 1., 3.]), 'p2': torch.tensor([2., 0.])}
    P = dict(lin.named_parameters())
    r = reg_loss(P, th, om, lam=0.5)
    assert r.item() == pytest.approx(0.5 * 7.875)
    g1, g2 = torch.autograd.grad(r, [lin.p1, lin.p2])
    assert (g1 * lin.p1.detach() > 0).all()
    assert g1[2].abs() > g1[0].abs() and g2[1] == 0
    # one SGD step moves every regularised parameter toward theta0
    before = {k: v.detach().clone() for k, v in P.items()}
    opt = torch.optim.SGD(lin.parameters(), lr=0.01); opt.zero_grad(); reg_loss(P, th, om).backward(); opt.step()
    assert (lin.p1.detach().abs() < before['p1'].abs()).all()
    w = {'p1': 0.5}
    assert reg_loss(P, th, om, w).item() == pytest.approx(
        0.2 * (0.5 * reg_loss({'p1': P['p1']}, th, {'p1': om['p1']}, lam=1).item()
               + reg_loss({'p2': P['p2']}, th, {'p2': om['p2']}, lam=1).item()), rel=1e-6)
    assert reg_loss(P, th, om, reduction='mean').item() == pytest.approx(reg_loss(P, th, om).item() / 5)
    with pytest.raises(KeyError, match='lacks'): reg_loss({'p1': lin.p1}, th, om)
    with pytest.raises(KeyError, match='theta0 lacks'): reg_loss(P, {'p1': th['p1']}, om)
    with pytest.raises(ValueError, match='reduction'): reg_loss(P, th, om, reduction='max')


def test_reg_loss_ignores_parameters_without_importance():
    lin = Lin()
    r = reg_loss(dict(lin.named_parameters()), {'p1': torch.zeros(3)}, {'p1': torch.ones(3)})
    assert torch.autograd.grad(r, lin.p2, allow_unused=True)[0] is None


# ---------------------------------------------------------------- orthogonality
def _split(v): return [v[:3], v[3:]]


@pytest.mark.parametrize('angle', [0.0, math.pi / 3, math.pi / 2, 2 * math.pi / 3, math.pi])
def test_orth_batch_known_angle(angle):
    a = torch.tensor([1., 2, 0, -1, 3]); ah = a / a.norm()
    perp = torch.tensor([2., -1, 5, 0, 0]); perp = perp - (perp @ ah) * ah; perp = perp / perp.norm()
    b = 3 * (math.cos(angle) * ah + math.sin(angle) * perp)
    assert grad_cosine(_split(a), _split(b)).item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert orth_loss_batch(_split(a), _split(b)).item() == pytest.approx(abs(math.cos(angle)), abs=1e-5)
    # through real gradients of the linear losses <a, theta>, <b, theta>
    lin = Lin()
    ga = torch.autograd.grad(lin(a[None]).sum(), [lin.p1, lin.p2])
    gb_ = torch.autograd.grad(lin(b[None]).sum(), [lin.p1, lin.p2])
    assert orth_loss_batch(ga, gb_).item() == pytest.approx(abs(math.cos(angle)), abs=1e-5)


def test_orth_batch_zero_and_missing_gradients():
    assert orth_loss_batch([torch.zeros(3)], [torch.ones(3)]).item() == 0.0
    assert orth_loss_batch([torch.ones(3), None], [torch.ones(3), torch.ones(2)]).item() == pytest.approx(math.sqrt(3 / 5))
    with pytest.raises(ValueError): grad_cosine([torch.ones(3)], [torch.ones(3), torch.ones(1)])


def test_orth_batch_has_gradient_only_with_create_graph():
    net = fresh()
    sh = [p for _, p in shallow_params(net, 2)]
    gg = torch.autograd.grad(pre_loss(net, GB[0]), sh, create_graph=True)
    gr = torch.autograd.grad(rec_loss(net, RB[0]), sh, create_graph=True)
    lo = orth_loss_batch(gg, gr)
    assert sum(g.abs().sum() for g in torch.autograd.grad(lo, sh)) > 0
    gg0 = torch.autograd.grad(pre_loss(net, GB[0]), sh)
    gr0 = torch.autograd.grad(rec_loss(net, RB[0]), sh)
    assert not orth_loss_batch(gg0, gr0).requires_grad
    assert orth_loss_batch(gg0, gr0).item() == pytest.approx(lo.item(), abs=1e-6)


def test_orth_sample_known_values():
    torch.manual_seed(3)
    lin = Lin()
    Ag, Ar = torch.randn(4, 5), torch.randn(3, 5)
    f = lambda m, x: m(x).mean()
    rows = per_sample_grads(lin, f, Ag, list(lin.named_parameters()))
    torch.testing.assert_close(torch.cat(rows, 1), Ag)
    lo, s, d = orth_loss_sample(lin, f, Ag, f, Ar, list(lin.named_parameters()), gamma=0.5, return_terms=True)
    U, V = Ag / Ag.norm(dim=1, keepdim=True), Ar / Ar.norm(dim=1, keepdim=True)
    s_ref = 0.5 * (((U @ U.T).sum() - 4) / 12 + ((V @ V.T).sum() - 3) / 6)
    d_ref = (U @ V.T).mean()
    assert s.item() == pytest.approx(s_ref.item(), abs=1e-5) and d.item() == pytest.approx(d_ref.item(), abs=1e-5)
    assert lo.item() == pytest.approx((1 - s_ref + 0.5 * d_ref.abs()).item(), abs=1e-5)
    # identical rows within each objective, orthogonal across: the loss is 0
    e1, e2 = torch.eye(5)[:1].repeat(3, 1), torch.eye(5)[1:2].repeat(2, 1)
    assert orth_loss_rows([e1], [e2])[0].item() == pytest.approx(0.0, abs=1e-6)
    # rows aligned across objectives: |d| = 1
    assert orth_loss_rows([e1], [e1[:2]])[2].item() == pytest.approx(1.0)


def test_orth_and_reg_gradients_match_finite_differences():
    d64 = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)
    ga, gb = [d64(3), d64(2, 2)], [d64(3), d64(2, 2)]
    assert torch.autograd.gradcheck(lambda *v: orth_loss_batch(v[:2], v[2:]), (*ga, *gb))
    Rg, Rr = [d64(3, 4), d64(3, 2)], [d64(2, 4), d64(2, 2)]
    for gamma in (0.0, 0.7):
        assert torch.autograd.gradcheck(lambda *v: orth_loss_rows(v[:2], v[2:], gamma)[0], (*Rg, *Rr))
    om, t0 = torch.rand(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: reg_loss({'p': v}, {'p': t0}, {'p': om}, {'p': 0.3}), (d64(5),))


def test_orth_sample_has_gradient():
    net = fresh()
    sp = shallow_params(net, 2)
    lo = orth_loss_sample(net, pre_loss, GB[0], rec_loss, RB[0], sp)
    gs = torch.autograd.grad(lo, [p for _, p in net.named_parameters()], allow_unused=True, materialize_grads=True)
    named = dict(zip([n for n, _ in net.named_parameters()], gs))
    assert named['inp.weight'].abs().sum() > 0 and named['out.weight'].abs().sum() > 0


# ---------------------------------------------------------------- combined backward
def _setup(seed=0):
    net = fresh(seed)
    sp = shallow_params(net, 2)
    dec = layer_decay_weights([n for n, _ in sp], 30)
    th0 = {n: v + 0.01 for n, v in snapshot_params(net).items()}
    om = compute_importance(net, pre_loss, GB[:2])
    return net, sp, dec, th0, om


def _gef(alpha=0.5, orth='batch', scale=1.0, reps=1, rl=rec_loss):
    net, sp, dec, th0, om = _setup()
    r = orth != 'sample'
    for _ in range(reps):
        out = gef_backward(net, rl(net, RB[0], r), pre_loss(net, GB[0], r),
                           reg_loss(dict(net.named_parameters()), th0, om, dec), sp, dec, alpha, orth, scale)
    return {n: p.grad.clone() for n, p in net.named_parameters()}, out


def _brute(alpha=0.5, orth='batch', rl=rec_loss):
    net, sp, dec, th0, om = _setup()
    names, ps = zip(*net.named_parameters())
    sh = [p for _, p in sp]
    G = lambda L: torch.autograd.grad(L, ps, allow_unused=True, materialize_grads=True)
    total = [a + b for a, b in zip(G(rl(net, RB[0])), G(reg_loss(dict(net.named_parameters()), th0, om, dec)))]
    if orth == 'batch':
        lo = orth_loss_batch(torch.autograd.grad(pre_loss(net, GB[0]), sh, create_graph=True),
                             torch.autograd.grad(rl(net, RB[0]), sh, create_graph=True, allow_unused=True))
    else:
        lo = orth_loss_sample(net, pre_loss, GB[0], rl, RB[0], sp)
    total = [a + b for a, b in zip(total, G(alpha * lo))]
    gg = dict(zip([n for n, _ in sp], torch.autograd.grad(pre_loss(net, GB[0]), sh)))
    return {n: t + dec[n] * gg[n] if n in gg else t for n, t in zip(names, total)}, lo.item()


def test_gef_gen_update_only_shallow_with_decay():
    net = fresh()
    sp = shallow_params(net, 2)
    dec = layer_decay_weights([n for n, _ in sp], t_star=40)
    ref = dict(zip([n for n, _ in sp], torch.autograd.grad(pre_loss(net, GB[0]), [p for _, p in sp])))
    before = snapshot_params(net)
    lr = 0.1
    opt = torch.optim.SGD(net.parameters(), lr=lr); opt.zero_grad()
    out = gef_backward(net, 0 * rec_loss(net, RB[0]), pre_loss(net, GB[0]), None, sp, dec, alpha=0.0, orth=None)
    opt.step()
    assert set(out) == {'rec', 'gen', 'reg', 'total'} and out['rec'] == 0.0
    moved = {}
    for n, p in net.named_parameters():
        step = before[n] - p.detach()
        if n in dec:
            torch.testing.assert_close(step, lr * dec[n] * ref[n], rtol=1e-4, atol=1e-7)
            moved[n] = step.norm() / (lr * ref[n].norm())
        else:
            assert step.abs().max() == 0, n
    assert (moved['inp.weight'] / moved['blocks.0.0.bias']).item() == pytest.approx(dec['inp.weight'] / dec['blocks.0.0.bias'], rel=1e-4)
    assert dec['inp.weight'] / dec['blocks.0.0.bias'] == pytest.approx(math.exp(2.0))


@pytest.mark.parametrize('orth', ['batch', 'sample'])
def test_gef_equals_brute_force_and_orth_acts(orth):
    got, out = _gef(orth=orth)
    want, lo = _brute(orth=orth)
    for n in want: torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6)
    assert out['orth'] == pytest.approx(lo, abs=1e-5)
    base, out0 = _gef(alpha=0.0, orth=orth)
    assert max((got[n] - base[n]).abs().max().item() for n in got) > 1e-6
    assert (got['out.weight'] - base['out.weight']).abs().max() > 0
    assert out0['orth'] == pytest.approx(out['orth'], abs=1e-6)   # measured (not applied) at alpha = 0
    keys = {'rec', 'gen', 'reg', 'orth', 'cos', 'total'} | ({'s'} if orth == 'sample' else set())
    assert set(out) == keys
    assert out['total'] == pytest.approx(out['rec'] + out['reg'] + out['gen'] + 0.5 * out['orth'])


def test_gef_with_parameters_unused_by_rec():
    got, _ = _gef(rl=rec_loss_notime)
    want, _ = _brute(rl=rec_loss_notime)
    for n in want: torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6)


def test_gef_scale_accumulates():
    g2, _ = _gef(scale=0.5, reps=2)
    g1, _ = _gef()
    for n in g1: torch.testing.assert_close(g2[n], g1[n], rtol=1e-5, atol=1e-7)


def test_gef_plain_iteration_is_one_backward():
    net, sp, dec, th0, om = _setup()
    out = gef_backward(net, rec_loss(net, RB[1]), None, reg_loss(dict(net.named_parameters()), th0, om), sp, dec)
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    net2, *_ = _setup()
    (rec_loss(net2, RB[1]) + reg_loss(dict(net2.named_parameters()), th0, om)).backward()
    for n, p in net2.named_parameters(): torch.testing.assert_close(got[n], p.grad)
    assert set(out) == {'rec', 'reg', 'total'} and out['reg'] > 0


def test_gef_gen_layers_none_still_measures_cosine():
    net, sp, dec, th0, om = _setup()
    out = gef_backward(net, rec_loss(net, RB[0]), pre_loss(net, GB[0]), None, [], None, alpha=0.0, orth='batch', orth_params=sp)
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    net2, *_ = _setup()
    rec_loss(net2, RB[0]).backward()
    for n, p in net2.named_parameters(): torch.testing.assert_close(got[n], p.grad)
    assert 0 <= out['orth'] <= 1 and out['orth'] == pytest.approx(abs(out['cos']))


def test_gef_errors():
    net, sp, dec, *_ = _setup()
    L = lambda: (rec_loss(net, RB[0]), pre_loss(net, GB[0]))
    with pytest.raises(ValueError, match='per-sample'): gef_backward(net, *L(), None, sp, dec, orth='sample')
    with pytest.raises(ValueError, match='not trainable parameters'): gef_backward(net, *L(), None, shallow_params(fresh(), 1))
    with pytest.raises(KeyError, match='decay has no weight'): gef_backward(net, *L(), None, sp, {'inp.weight': 1.0})
    with pytest.raises(ValueError, match="orth must be"): gef_backward(net, *L(), None, sp, dec, orth='cos')
    with pytest.raises(ValueError, match='L_rec must be a scalar'): gef_backward(net, torch.zeros(2, 2, requires_grad=True))


# ---------------------------------------------------------------- mix schedule
@pytest.mark.parametrize('p', [0.05, 0.1, 0.2, 0.5])
def test_mix_rate(p):
    for seed in (0, 1, 42):
        rate = sum(mix_iteration(k, p, seed) for k in range(10_000)) / 10_000
        assert abs(rate - p) <= 0.01 * p
        rate_r = sum(mix_iteration(k, p, seed, 'random') for k in range(10_000)) / 10_000
        assert abs(rate_r - p) <= 4 * math.sqrt(p * (1 - p) / 10_000)


def test_mix_deterministic_and_resumable():
    full = [mix_iteration(k, 0.1, 5) for k in range(2000)]
    resumed = full[:1000] + [mix_iteration(k, 0.1, 5) for k in range(1000, 2000)]
    assert full == resumed
    assert full != [mix_iteration(k, 0.1, 6) for k in range(2000)]
    # SplitMix64's published outputs from state 0 pin the hash both modes draw the seed offset (and 'random' its steps) from
    assert [_splitmix64(k * 0x9E3779B97F4A7C15 & _M64) for k in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    u0 = _splitmix64(5) / 2**64
    assert full[0] == (u0 < 0.1) and mix_iteration(0, u0 + 1e-9, 5) and not mix_iteration(0, u0 - 1e-9, 5)
    assert not any(mix_iteration(k, 0.0, 1) for k in range(1000)) and all(mix_iteration(k, 1.0, 1) for k in range(1000))
    with pytest.raises(ValueError, match='p_mix'): mix_iteration(0, -0.1, 0)
    with pytest.raises(ValueError, match='mode'): mix_iteration(0, 0.1, 0, 'sobol')


@pytest.mark.parametrize('p', [0.05, 0.1, 0.3])
def test_mix_quasi_is_a_weyl_sequence_and_random_is_independent(p):
    ks = [k for k in range(10_000) if mix_iteration(k, p, 3)]
    gaps = sorted({b - a for a, b in zip(ks, ks[1:])})   # three-gap theorem: 2 or 3 gap lengths, the largest the sum of the others
    assert len(gaps) in (2, 3) and (len(gaps) == 2 or gaps[2] == gaps[0] + gaps[1]), gaps
    assert not any(mix_iteration(k, p, 3) and mix_iteration(k + 1, p, 3) for k in range(10_000))   # consecutive u differ by phi
    r = [mix_iteration(k, p, 3, 'random') for k in range(20_000)]
    pairs = sum(a and b for a, b in zip(r, r[1:])) / 19_999
    assert abs(pairs - p * p) <= 5 * math.sqrt(p * p * (1 + 2 * p) / 19_999)


def test_finetune_with_the_projection_form(tmp_path):
    "`orth_form=project` through a whole smoke fine-tuning run where every step mixes: the log carries the cosine it removed."
    from dtir.config import load_preset
    from dtir.finetune import finetune
    from dtir.train import read_log
    from cli_helpers import tiny_pretrained
    pre = tiny_pretrained(tmp_path / 'pre')
    cfg = load_preset('smoke', ['orth_form=project', 'p_mix=1', 'log_every=1', 'device=cpu'])
    finetune(cfg, 'rain', pre, tmp_path / 'ft', t_star=8, steps=3, progress=False)
    log = read_log(tmp_path / 'ft')
    assert len(log) == 3 and all('cos' in r and 'loss_gen' in r and math.isfinite(r['loss_total']) for r in log), log
    assert all(abs(r['loss_total'] - (r['loss_rec'] + r['loss_gen'] + r.get('loss_reg', 0))) < 1e-5 for r in log), log
    with pytest.raises(ValueError, match='orth_form'): load_preset('smoke', ['orth_form=surgery'])


def test_finetune_lr_is_fine_tuning_only(tmp_path):
    "`finetune_lr` sets the fine-tuning run's rate (logged) and leaves the pre-training cache key alone; 0 keeps `lr`."
    from dtir.config import load_preset
    from dtir.finetune import finetune
    from dtir.train import read_log
    from dtir.artifacts import key_of, PRETRAIN_KEYS, FINETUNE_KEYS
    from cli_helpers import tiny_pretrained
    pre = tiny_pretrained(tmp_path / 'pre')
    lrs = {}
    for v in (0.0, 2e-3):
        cfg = load_preset('smoke', [f'finetune_lr={v}', 'log_every=1', 'warmup=0', 'device=cpu'])
        finetune(cfg, 'rain', pre, tmp_path / f'ft{v}', t_star=8, steps=2, progress=False)
        lrs[v] = read_log(tmp_path / f'ft{v}')[0]['lr']
    assert abs(lrs[2e-3] / lrs[0.0] - 2e-3 / load_preset('smoke').lr) < 0.01, lrs   # both on the same cosine (lr_min 1e-6 aside)
    a, b = load_preset('smoke'), load_preset('smoke', ['finetune_lr=3e-3'])
    assert key_of(a, PRETRAIN_KEYS) == key_of(b, PRETRAIN_KEYS) and key_of(a, FINETUNE_KEYS) != key_of(b, FINETUNE_KEYS)
    with pytest.raises(ValueError, match='finetune_lr'): load_preset('smoke', ['finetune_lr=-1'])
