"Values that cannot be right are refused by `dtir.config.validate` with a one-line error naming the key (issue 16, item 4)."
import pytest
from dtir.config import load_preset
from cli_helpers import run_main, one_line_error

BAD = [('finetune_steps=0', 'finetune_steps'), ('finetune_steps=-5', 'finetune_steps'), ('lam_reg=-100', 'lam_reg'),
       ('lr=0', 'lr'), ('lr=inf', 'lr'), ('log_every=0', 'log_every'), ('ckpt_every=0', 'ckpt_every'),
       ('pretrain_steps=0', 'pretrain_steps'), ('alpha_orth=-1', 'alpha_orth'), ('w_eps=nan', 'w_eps'),
       ('mixed_precision=fp16', 'mixed_precision')]


@pytest.mark.parametrize('kv,key', BAD)
def test_preset_refuses_values_that_cannot_be_right(kv, key):
    with pytest.raises(ValueError, match=key): load_preset('smoke', [kv])


@pytest.mark.parametrize('kv,key', BAD[:7])
def test_training_commands_refuse_them_in_one_line(kv, key, tmp_path, capsys):
    out = tmp_path / 'run'
    rc, err = run_main(['train-plain', '--preset', 'smoke', '--set', kv, '--task', 'rain', '--out', out], capsys)
    line = one_line_error(rc, err, 'train-plain')
    assert key in line, line
    assert not out.exists(), 'nothing may be written for a refused configuration'


def test_good_edge_values_still_load():
    p = load_preset('smoke', ['lam_reg=0', 'alpha_orth=0', 'finetune_steps=1', 'log_every=1', 'ckpt_every=1', 'mixed_precision=bf16'])
    assert (p.lam_reg, p.finetune_steps, p.mixed_precision) == (0.0, 1, 'bf16')
