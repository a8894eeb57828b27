"Optional tracking through Accelerate's trackers (`DTIR_TRACKING=tensorboard`): off by default, log.jsonl unchanged when on."
import importlib.util
from pathlib import Path

import pytest
import torch

from dtir.config import load_preset
from dtir.train import Trainer, RunSpec, read_log, step_generator


def toy(out: Path):
    cfg = load_preset('smoke', ['lr=0.05', 'log_every=2', 'ckpt_every=4', 'device=cpu'])
    def batch(step):
        g = step_generator(0, step, 'toy'); x = torch.randn(4, 3, generator=g)
        return {'x': x, 'y': x.sum(1, keepdim=True)}
    def step_fn(net, b, step, scale):
        loss = (net(b['x']) - b['y']).abs().mean(); (loss * scale).backward(); return {'loss': loss.item()}
    torch.manual_seed(0)
    Trainer(cfg, torch.nn.Linear(3, 1), batch, step_fn, RunSpec('toy', 8, 0), out, progress=False).fit()
    return read_log(out)


def test_tracking_off_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv('DTIR_TRACKING', raising=False)
    toy(tmp_path / 'a')
    assert not (tmp_path / 'a' / 'tracking').exists()


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None, reason='tensorboard is not installed (pip install tensorboard)')
def test_tensorboard_tracking_beside_log_jsonl(tmp_path, monkeypatch):
    monkeypatch.delenv('DTIR_TRACKING', raising=False)
    plain = toy(tmp_path / 'plain')
    monkeypatch.setenv('DTIR_TRACKING', 'tensorboard')
    tracked = toy(tmp_path / 'tb')
    strip = lambda recs: [{k: v for k, v in r.items() if k != 'img_s'} for r in recs]
    assert strip(tracked) == strip(plain), 'tracking must not change the run or its log.jsonl'
    events = list((tmp_path / 'tb' / 'tracking').rglob('events.out.tfevents*'))
    assert events, 'no TensorBoard event file written'
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(next(e for e in events if e.parent.name == 'toy').parent)); ea.Reload()
    assert [e.step for e in ea.Scalars('loss')] == [r['step'] for r in plain]
