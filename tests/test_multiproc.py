"Two processes (torchrun, gloo on CPU) train like one: identical parameters on every rank, equal to the same run in one process."
import json, os, socket, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.multiproc
torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

# Runs of the worker script; each is the smoke preset plus these overrides (later keys win).
COMMON = ['finetune_steps=6', 'pretrain_steps=6', 'log_every=1', 'ckpt_every=100', 'device=cpu', 'mix=1', 'reg=1', 'orth=1']
RUNS = {
    'rec_reg': ['mix=0'],               # GEF without mixed steps: L_rec + L_reg only
    'mix': ['p_mix=0.5', 'orth=0'],     # + L_gen on mixed steps
    'full': ['p_mix=0.5'],              # mix, reg and orth all on
    'pretrain': [],                     # TMGP pre-training (L_pre)
}

# Trains every run of RUNS in this process (one rank of torchrun, or alone) and saves the live network's
# parameters of this rank; `Trainer.fit` is wrapped only to get hold of the Trainer that `finetune` builds.
WORKER = '''
import json, sys, torch
torch.set_num_threads(1)
from safetensors.torch import save_file
from dtir.checkpoint import state_dict_cpu
from dtir.config import load_preset
from dtir.finetune import finetune
from dtir.pretrain import pretrain
from dtir.train import Trainer
ckpt, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
seen, fit = {}, Trainer.fit
def spy(self, resume=False):
    seen['tr'] = self
    return fit(self, resume)
Trainer.fit = spy
for name, overrides in runs.items():
    cfg = load_preset('smoke', overrides)
    if name == 'pretrain': pretrain(cfg, f'{out}/{name}', progress=False)
    else: finetune(cfg, 'rain', ckpt, f'{out}/{name}', t_star=8, progress=False)
    tr = seen.pop('tr')
    r = tr.acc.process_index
    save_file(state_dict_cpu(tr.net), f'{out}/{name}/rank{r}.safetensors')
    with open(f'{out}/{name}/rank{r}.json', 'w') as f:
        json.dump(dict(rank=r, world=tr.acc.num_processes, type=str(tr.acc.distributed_type), step=tr.step), f)
'''


def _can_spawn() -> str | None:
    "Why two CPU processes cannot train together here (None if they can)."
    import torch.distributed as dist
    if not dist.is_available(): return 'torch.distributed is not available in this torch build'
    if not dist.is_gloo_available(): return 'torch.distributed has no gloo backend (needed on CPU)'
    try:
        with socket.socket() as s: s.bind(('127.0.0.1', 0))
    except OSError as e: return f'cannot open a localhost socket for the rendezvous ({e})'
    return None


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'GROUP_RANK')}
    return dict(env, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')


def _run(cmd: list[str], log: Path, timeout: float = 150):
    with open(log, 'wb') as f: p = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd[:6])} ... failed (rc {p.returncode}):\n{log.read_text()[-4000:]}"


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    why = _can_spawn()
    if why: pytest.skip(f'cannot run 2 training processes: {why}')
    from dtir.config import load_preset
    from dtir.pretrain import pretrain
    tmp = tmp_path_factory.mktemp('mp')
    ckpt = pretrain(load_preset('smoke', ['device=cpu']), tmp / 'pre', progress=False)
    script = tmp / 'worker.py'
    script.write_text(WORKER)
    arg = json.dumps({k: COMMON + v for k, v in RUNS.items()})
    # one process first: it also computes the parameter importance that both runs then read from beside the checkpoint
    _run([sys.executable, str(script), str(ckpt), str(tmp / 'one'), arg], tmp / 'one.log')
    # --standalone: a local rendezvous on a free port (no MASTER_PORT to pick); gloo is Accelerate's backend on CPU
    _run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script), str(ckpt),
          str(tmp / 'two'), arg], tmp / 'two.log')
    return tmp


def _params(d: Path, rank: int) -> dict:
    return load_file(str(d / f'rank{rank}.safetensors'))


@pytest.mark.parametrize('name', list(RUNS))
def test_two_processes_really_ran(runs, name):
    infos = [json.loads((runs / 'two' / name / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert [i['rank'] for i in infos] == [0, 1] and all(i['world'] == 2 and i['step'] == 6 for i in infos), infos
    assert all(i['type'].endswith('MULTI_CPU') for i in infos), infos
    assert json.loads((runs / 'one' / name / 'rank0.json').read_text())['world'] == 1
    log = [json.loads(l) for l in (runs / 'two' / name / 'log.jsonl').read_text().splitlines()]
    assert [x['step'] for x in log] == list(range(1, 7))
    if name in ('mix', 'full'): assert any('loss_gen' in x for x in log), 'no mixed step among the 6'
    if name == 'full': assert any('loss_orth' in x for x in log)


@pytest.mark.parametrize('name', list(RUNS))
def test_ranks_identical(runs, name):
    p0, p1 = _params(runs / 'two' / name, 0), _params(runs / 'two' / name, 1)
    assert p0.keys() == p1.keys()
    diff = {k: float((p0[k] - p1[k]).abs().max()) for k in p0 if not torch.equal(p0[k], p1[k])}
    assert not diff, f"ranks disagree: {diff}"


# With L_orth on, each process computes the batch-form |cos| on its own shard (documented in nbs/21_finetune): |cos| is not
# linear in the gradients, so 'full' is only required to agree across ranks, not with one process.
@pytest.mark.parametrize('name', [n for n in RUNS if n != 'full'])
def test_two_processes_equal_one(runs, name):
    one, two = _params(runs / 'one' / name, 0), _params(runs / 'two' / name, 0)
    assert one.keys() == two.keys()
    diff = {k: float((one[k] - two[k]).abs().max()) for k in one}
    bad = {k: v for k, v in diff.items() if v > 1e-5}
    assert not bad, f"2 processes differ from 1 (max |diff| {max(diff.values()):.2e}) in {len(bad)} tensors, e.g. {dict(list(bad.items())[:4])}"


def test_run_job_under_a_launcher(tmp_path, monkeypatch):
    "`dtir.launch.run_job` with DTIR_LAUNCH (what `dtir reproduce --launch` sets): 2 processes train the job, same weights as 1."
    why = _can_spawn()
    if why: pytest.skip(f'cannot run 2 training processes: {why}')
    from dtir.config import load_preset
    from dtir.launch import run_job
    cfg = load_preset('smoke', ['pretrain_steps=4', 'device=cpu', 'log_every=1'])
    for k, v in _env().items(): monkeypatch.setenv(k, v)
    monkeypatch.delenv('DTIR_LAUNCH', raising=False)
    one = run_job('pretrain', cfg, out=tmp_path / 'one', progress=False)
    monkeypatch.setenv('DTIR_LAUNCH', f'{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2')
    two = run_job('pretrain', cfg, out=tmp_path / 'two', progress=False)
    assert json.loads((tmp_path / 'two' / 'launch.json').read_text())['job'] == 'pretrain'
    a, b = load_file(str(one / 'model.safetensors')), load_file(str(two / 'model.safetensors'))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-5, f'launched 2-process pretraining differs from 1 process by {diff:.2e}'
