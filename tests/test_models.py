"Backbones: the model contract (shapes, time input, depth groups, hook points) of every architecture."
import copy, json
import pytest
import torch
from torch import nn

from dtir.config import load_preset
from dtir.models import ARCHS, NAFNet, TimeFiLM, TimeUNet, build_model, check_spec, count_params, model_spec
from dtir.models.unet import as_time_tensor, pad_to_multiple

torch.set_num_threads(1)
SMALL = dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))


def perturb(net, std=0.05, seed=0):
    "Open every zero-initialised path (output conv, residual scales, AdaLN/FiLM) so all parameters matter."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters(): p.add_(torch.randn(p.shape, generator=g) * std)
    return net


def variants():
    "(label, network, has_time) for every backbone and time setting."
    torch.manual_seed(0)
    return [('unet', TimeUNet(**SMALL), True), ('unet-plain', TimeUNet(**SMALL, time=False), False),
            ('nafnet-film', TimeFiLM(NAFNet(**SMALL)), True), ('nafnet', NAFNet(**SMALL), False)]


@pytest.mark.parametrize('label,net,has_time', variants())
def test_shapes_odd_sizes(label, net, has_time):
    for h, w in ((37, 53), (16, 16), (5, 3)):
        x = torch.rand(2, 3, h, w)
        ts = (4, 7.5, torch.tensor([1, 50]), torch.tensor([0.5, 999.0])) if has_time else (None,)
        with torch.no_grad():
            for t in ts: assert net(x, t).shape == x.shape
            assert net.features(x, ts[0]).shape == (2, 32, -(-h // 4), -(-w // 4))


@pytest.mark.parametrize('label,net,has_time', variants())
def test_time_argument_rules(label, net, has_time):
    x = torch.rand(2, 3, 16, 16)
    if has_time:
        with pytest.raises(ValueError, match='t is required'): net(x, None)
        with pytest.raises(ValueError, match=r'shape \(2,\)'): net(x, torch.ones(3))
        assert net.time_dim > 0
    else:
        with pytest.raises(ValueError, match='t must be None'): net(x, 3)
        assert net.time_dim is None
        assert not [n for n, _ in net.named_parameters() if 'temb' in n or 'ada' in n or 'film' in n]


def test_as_time_tensor():
    assert torch.equal(as_time_tensor(3, 2), torch.tensor([3., 3.]))
    assert torch.equal(as_time_tensor(torch.tensor([2, 9]), 2), torch.tensor([2., 9.]))
    with pytest.raises(TypeError, match='bool'): as_time_tensor(True, 2)
    with pytest.raises(TypeError): as_time_tensor('3', 2)


def test_pad_to_multiple():
    x = torch.rand(1, 3, 37, 53)
    p = pad_to_multiple(x, 8)
    assert p.shape == (1, 3, 40, 56) and torch.equal(p[..., :37, :53], x)
    assert torch.equal(p[..., 37, :53], x[..., 35, :])  # reflect
    assert pad_to_multiple(torch.rand(1, 3, 2, 2), 16).shape == (1, 3, 16, 16)  # replicate fallback


@pytest.mark.parametrize('label,net,has_time', [v for v in variants() if v[2]])
def test_output_depends_on_t_per_sample(label, net, has_time):
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        a0, b0 = net(x, 1), net(x, 40)
        assert torch.allclose(a0, b0)  # zero-initialised modulation: no time dependence at init
        perturb(net)
        a, b = net(x, 1), net(x, 40)
        assert (a - b).abs().max() > 1e-4
        mixed = net(x, torch.tensor([1, 40]))
        assert torch.allclose(mixed, torch.cat([a[:1], b[1:]]), atol=1e-5)


def test_unet_zero_output_at_init():
    x = torch.rand(2, 3, 16, 16)
    assert TimeUNet(**SMALL)(x, 3).abs().max() == 0
    assert TimeUNet(**SMALL, zero_out=False)(x, 3).abs().max() > 0


@pytest.mark.parametrize('label,net,has_time', variants())
@pytest.mark.parametrize('order', ['forward', 'resolution'])
@pytest.mark.parametrize('temb', ['first', 'last'])
def test_depth_groups_cover_every_parameter_once(label, net, has_time, order, temb):
    groups = net.depth_groups(order, temb)
    names = [n for g in groups for n, _ in g]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(n for n, _ in net.named_parameters())
    assert all(g for g in groups)
    levels = 2
    assert len(groups) == (2 * levels + 1 if order == 'forward' else levels + 1)
    ps = dict(net.named_parameters())
    assert all(p is ps[n] for g in groups for n, p in g)
    if has_time:
        where = [i for i, g in enumerate(groups) if any(n.startswith('temb.') for n, _ in g)]
        assert where == ([0] if temb == 'first' else [len(groups) - 1])


def test_depth_groups_forward_order():
    net = TimeUNet(**SMALL)
    g = [[n.split('.')[0] for n, _ in grp] for grp in net.depth_groups()]
    assert g[0][0] == 'temb' and 'intro' in g[0] and set(g[0]) <= {'temb', 'intro', 'encoders'}
    assert set(g[2]) == {'downs', 'middle'}
    assert g[-1][-1] == 'ending' and 'decoders' in g[-1]
    film = TimeFiLM(NAFNet(**SMALL))
    for grp in film.depth_groups():
        names = [n for n, _ in grp]
        for k, target in enumerate(film.film_targets):
            if f'film.{k}.weight' in names: assert f'net.{target}.weight' in names


def test_depth_groups_list_trainable_parameters():
    net = TimeFiLM(NAFNet(**SMALL))
    net.net.intro.requires_grad_(False)
    names = [n for g in net.depth_groups() for n, _ in g]
    assert sorted(names) == sorted(n for n, p in net.named_parameters() if p.requires_grad)
    assert 'net.intro.weight' in [n for g in net.depth_groups(trainable_only=False) for n, _ in g]


def test_depth_groups_report_unplaced_parameters():
    net = TimeUNet(**SMALL)
    net.extra = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match='extra.weight'): net.depth_groups()


def test_film_at_init_equals_plain_net():
    torch.manual_seed(0)
    plain = NAFNet(**SMALL)
    with torch.no_grad():
        for n, p in plain.named_parameters():
            if n.endswith(('beta', 'gamma')): p.normal_(0, 0.5)  # a "trained" plain net: blocks are not identities
    x = torch.rand(2, 3, 21, 19)
    wrapped = TimeFiLM(plain)
    with torch.no_grad():
        ref = plain(x)
        for t in (1, 25.0, torch.tensor([3, 47])): assert torch.allclose(wrapped(x, t), ref, atol=1e-6)
        for lin in wrapped.film: lin.weight.normal_(0, 0.1)
        assert (wrapped(x, 5) - ref).abs().max() > 1e-4
        assert torch.allclose(wrapped.net(x), ref, atol=1e-6)  # calling the inner net runs it plain
        copied = copy.deepcopy(wrapped)
        for lin in copied.film: lin.weight.zero_()
        assert torch.allclose(copied(x, 5), ref, atol=1e-6)
        assert (wrapped(x, 5) - ref).abs().max() > 1e-4  # the original keeps its own hooks
        assert torch.allclose(wrapped.remove_hooks()(x), ref, atol=1e-6)


def test_film_under_functional_call():
    torch.manual_seed(0)
    net = perturb(TimeFiLM(NAFNet(**SMALL)))
    x = torch.rand(2, 3, 16, 16)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        out = torch.func.functional_call(net, params, (x, 7))
        assert torch.allclose(out, net(x, 7), atol=1e-6)
        for n in params:
            if n.startswith('film.'): params[n].zero_()
        assert (torch.func.functional_call(net, params, (x, 7)) - out).abs().max() > 1e-5


def test_film_needs_targets():
    with pytest.raises(ValueError, match='no modules of types'):
        TimeFiLM(nn.Sequential(nn.Conv2d(3, 3, 1)))


@pytest.mark.parametrize('label,net,has_time', variants())
def test_gradient_reaches_every_parameter(label, net, has_time):
    perturb(net)
    x = torch.rand(3, 3, 20, 20)
    t = torch.tensor([2, 20, 45]) if has_time else None
    net(x, t).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


@pytest.mark.parametrize('label,net,has_time', variants())
def test_adapters_are_called_with_time_vector(label, net, has_time):
    seen = []

    class Probe(nn.Module):
        def forward(self, h, temb=None):
            seen.append((tuple(h.shape), None if temb is None else tuple(temb.shape)))
            return h + 1.0

    x = torch.rand(2, 3, 16, 16)
    t = 5 if has_time else None
    perturb(net)
    with torch.no_grad():
        ref = net(x, t)
        net.adapters[0] = Probe()
        out = net(x, t)
    assert (out - ref).abs().max() > 1e-4
    assert seen == [((2, net.dec_channels[0], 8, 8), (2, net.time_dim) if has_time else None)]


def test_six_channel_input():
    for net in (TimeUNet(in_ch=6, **SMALL), TimeFiLM(NAFNet(in_ch=6, **SMALL))):
        assert net(torch.rand(2, 6, 13, 17), torch.tensor([12.5, 880.0])).shape == (2, 3, 13, 17)
        with pytest.raises(ValueError, match=r'x must be a \(B, 6, H, W\)'): net(torch.rand(2, 3, 8, 8), 1)


def test_bad_construction():
    with pytest.raises(ValueError, match='dec_blocks'): TimeUNet(enc_blocks=(1, 1), dec_blocks=(1,))
    with pytest.raises(ValueError, match='width'): NAFNet(width=0)


def test_build_model_and_spec():
    cfg = load_preset('smoke')
    assert set(ARCHS) == {'unet', 'nafnet', 'restormer', 'xrestormer'}
    assert isinstance(build_model(cfg), TimeUNet)
    ncfg = load_preset('smoke', {'arch': 'nafnet'})
    assert isinstance(build_model(ncfg), TimeFiLM) and isinstance(build_model(ncfg, time=False), NAFNet)
    assert count_params(build_model(cfg)) > count_params(build_model(cfg, time=False))
    s = model_spec(cfg)
    assert json.loads(json.dumps(s)) == s
    check_spec(s, model_spec(cfg))
    with pytest.raises(ValueError, match='width: 8 != 16'): check_spec(s, model_spec(load_preset('smoke', ['width=16'])))
    with pytest.raises(KeyError, match="arch 'vit'"): build_model(load_preset('smoke', {'arch': 'vit'}))


def test_paper_size_parameter_counts():
    "Counted on the meta device: no memory, no forward."
    cfg = load_preset('paper')
    with torch.device('meta'):
        n_time, n_plain = count_params(build_model(cfg)), count_params(build_model(cfg, time=False))
        naf64 = count_params(NAFNet(width=64, enc_blocks=(1, 1, 1, 28), middle_blocks=1, dec_blocks=(1, 1, 1, 1)))
        naf32 = count_params(NAFNet(width=32, enc_blocks=(1, 1, 1, 28), middle_blocks=1, dec_blocks=(1, 1, 1, 1)))
    assert (cfg.width, cfg.enc_blocks, cfg.middle_blocks, cfg.dec_blocks) == (48, (2, 2, 4, 28), 6, (2, 2, 2, 2))
    assert abs(n_plain / 1e6 - 61.34) < 0.01 and abs(n_time / 1e6 - 75.17) < 0.01
    assert abs(naf64 / 1e6 - 67.89) < 0.01  # the paper's NAFNet: 67.8 M
    assert abs(naf32 / 1e6 - 17.11) < 0.01  # NAFNet-width32: 17.1 M


# --- Restormer / X-Restormer (dtir.models.restormer): the same contract, restore end to end ---
from pathlib import Path


def restormer_variants():
    "(label, network, has_time) for the Restormer backbones, plain and through TimeFiLM."
    from dtir.models import Restormer, XRestormer
    torch.manual_seed(0)
    return [('restormer-film', TimeFiLM(Restormer(**SMALL)), True), ('restormer', Restormer(**SMALL), False),
            ('xrestormer-film', TimeFiLM(XRestormer(**SMALL)), True), ('xrestormer', XRestormer(**SMALL), False)]


@pytest.mark.parametrize('label,net,has_time', restormer_variants())
def test_restormer_model_contract(label, net, has_time):
    "The checks every other backbone passes: odd sizes, time rules, depth groups, adapters, gradients, t per sample."
    test_shapes_odd_sizes(label, net, has_time)
    test_time_argument_rules(label, net, has_time)
    for order in ('forward', 'resolution'):
        for temb in ('first', 'last'): test_depth_groups_cover_every_parameter_once(label, net, has_time, order, temb)
    if has_time:
        test_output_depends_on_t_per_sample(label, copy.deepcopy(net), has_time)
    test_gradient_reaches_every_parameter(label, copy.deepcopy(net), has_time)
    test_adapters_are_called_with_time_vector(label, copy.deepcopy(net), has_time)


@pytest.mark.parametrize('arch', ['restormer', 'xrestormer'])
def test_restormer_build_spec_and_film(arch):
    from dtir.models import Restormer, XRestormer
    cls = dict(restormer=Restormer, xrestormer=XRestormer)[arch]
    assert ARCHS[arch] is cls
    cfg = load_preset('smoke', {'arch': arch})
    torch.manual_seed(0)
    net = build_model(cfg, moe=2)
    assert isinstance(net, TimeFiLM) and type(net.net) is cls and type(build_model(cfg, time=False)) is cls
    s = model_spec(cfg, moe=2)
    assert s['time_wrapper'] == 'film' and json.loads(json.dumps(s)) == s
    check_spec(s, model_spec(cfg, moe=2))
    with pytest.raises(ValueError, match='moe'): check_spec(s, model_spec(cfg))
    x = torch.rand(2, 3, 23, 31)
    with torch.no_grad():
        plain = net.net
        assert torch.equal(net(x, torch.tensor([4, 60])), plain(x, temb=net.temb(torch.tensor([4, 60]), 2)))  # fresh FiLM: plain net


def _restormer_model(folder: Path, arch: str) -> tuple[Path, nn.Module]:
    "A smoke-size checkpoint of `arch` in `folder`/model (prompt 8 for rain), weights nudged; and the network saved."
    from dtir.checkpoint import save_checkpoint, state_dict_cpu
    from dtir.config import preset_dict
    from dtir.pretrain import new_model, schedule_meta
    cfg = load_preset('smoke', {'arch': arch})
    net, spec = new_model(cfg, time=True)
    perturb(net, std=0.01)
    meta = dict(model=spec, preset=preset_dict(cfg), schedule=schedule_meta(cfg), t_star={'rain': 8})
    return save_checkpoint(Path(folder) / 'model', state_dict_cpu(net), meta), net


@pytest.mark.parametrize('arch', ['restormer', 'xrestormer'])
def test_restore_with_restormer_backbones(arch, tmp_path):
    "`dtir restore` (its Python entry point) on a model folder of each new backbone: loaded strictly, tiled, written."
    import numpy as np
    from PIL import Image
    from dtir.pretrain import load_model
    from dtir.restore import restore_files, restore_tensor
    ckpt, net = _restormer_model(tmp_path, arch)
    rng = np.random.default_rng(0)
    src = tmp_path / 'in'; src.mkdir()
    a = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(src / 'img.png')
    loaded, meta = load_model(ckpt)
    assert meta['model']['arch'] == arch and type(loaded.net) is type(net.net)
    y = torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad(): want = (y - net.eval()(y, torch.tensor([8]))).clamp(0, 1)
    assert torch.allclose(restore_tensor(loaded, y, 8, tile=0), want, atol=1e-5)   # the saved weights, restored exactly
    for tile, out in ((0, tmp_path / 'whole'), (32, tmp_path / 'tiled')):
        r = restore_files(ckpt, src, out, t='model', tile=tile, overlap=8, log=None)
        assert [p.name for p in r['ok']] == ['img.png'] and not r['failed']
        b = np.asarray(Image.open(out / 'img.png'))
        assert b.shape == a.shape and not np.array_equal(a, b)
        if tile == 0: np.testing.assert_array_equal(b, np.rint(want[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        else: assert np.abs(b.astype(int) - np.asarray(Image.open(tmp_path / 'whole' / 'img.png')).astype(int)).mean() < 8
