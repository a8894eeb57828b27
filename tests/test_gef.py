"GEF inside whole smoke fine-tuning runs. The unit tests of `dtir.gef` itself are the examples of nbs/20_gef.ipynb (run by nbdev-test)."
import math

import pytest
import torch

torch.set_num_threads(1)


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
