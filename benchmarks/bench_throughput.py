"""Training throughput against the machine's limit: img/s, achieved FLOP/s and its ratio to a measured peak, per step kind.

For each preset size, one pre-training step and one GEF step (every term on, mixing at the preset's p_mix) are timed as
`dtir.train.Trainer.train_step` runs them (the real batch functions, step functions and optimiser), beside a plain
reconstruction step. FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` over the same steps (matmuls and
convolutions, forward and backward; elementwise work is not counted, so the ratio is a lower bound on utilisation).
The peak is measured in the same run: a large fp32 matmul and a 3x3 convolution of the backbone's first-level shape.
"Outside the network" is the batch synthesis (crops, degradations, diffusion noise) timed on its own.
Variants (`--variants`) are interleaved step by step so that drift in machine load hits all of them alike:
  base            the Trainer as the preset runs it
  threads=N       torch.set_num_threads(N) for the step
  channels_last   the preset with channels_last=true (weights and image batches in that memory format, dtir.train.Trainer)
  contiguous      the preset with channels_last=false
  arch=NAME       another backbone of dtir.models.ARCHS at the preset's size (the step time of each backbone)
  compile         torch.compile of the backbone (needs a C++ compiler; slow first step, left out of the timing)
  orth=project    the GEF step with the first-order gradient projection instead of the L_orth loss (orth_form=project)
  orth_frac=F     the GEF step with L_orth on a share F of the mixed steps (the rest L_gen only)
  adam=loop       torch.optim.Adam's per-parameter Python loop (the Trainer's optimiser before it took fused=True)
  adam=foreach    torch.optim.Adam(foreach=True)
Usage: python benchmarks/bench_throughput.py [--presets default paper] [--steps 20] [--variants base threads=1 contiguous]
                                             [--batch N] [--patch N] [--device cpu|cuda] [--precision fp32|bf16]
"""
import argparse, os, statistics, sys, tempfile, time
from dataclasses import replace
import torch


def peak_flops(width: int, batch: int, patch: int, device: str, reps: int = 5, dtype=torch.float32) -> dict:
    "Measured FLOP/s of a square matmul (2048^3 on CPU, 8192^3 on a GPU) and of a width->width 3x3 convolution at (batch, patch, patch), in `dtype`."
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    def best(fn, flops):
        fn(); sync(); ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
        return flops / min(ts)
    n = 8192 if device == 'cuda' else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    mm = best(lambda: a @ b, 2 * n ** 3)
    conv = torch.nn.Conv2d(width, width, 3, padding=1).to(device, dtype)
    x = torch.randn(batch, width, patch, patch, device=device, dtype=dtype)
    with torch.no_grad(): cv = best(lambda: conv(x), 2 * batch * width * width * 9 * patch * patch)
    return dict(matmul=mm, conv=cv, peak=max(mm, cv))


def _trainer(cfg, net, batch_fn, step_fn, out):
    from dtir.train import Trainer, RunSpec
    return Trainer(cfg, net, batch_fn, step_fn, RunSpec('bench', 10 ** 6, 0), out, progress=False)


def build(kind: str, cfg, variant: str, out: str):
    "A Trainer for step kind `kind` (pretrain | gef | plain) under `variant`, and its batch function."
    from dtir.pretrain import new_model, with_diffusion_noise, pretrain_step_fn
    from dtir.batches import clean_batches, task_batches
    from dtir.diffusion import schedule_for
    from dtir.finetune import gef_step_fn
    from dtir.gef import snapshot_params
    if variant == 'orth=project': cfg = replace(cfg, orth_form='project')
    if variant.startswith('orth_frac='): cfg = replace(cfg, orth_frac=float(variant.split('=', 1)[1]))
    if variant in ('channels_last', 'contiguous'): cfg = replace(cfg, channels_last=variant == 'channels_last')
    if variant.startswith('arch='): cfg = replace(cfg, arch=variant.split('=', 1)[1])
    torch.manual_seed(0)
    net, _ = new_model(cfg, time=kind != 'plain', seed=0)
    sch = schedule_for(cfg)
    if kind == 'pretrain':
        bf, sf = with_diffusion_noise(clean_batches(cfg, 'builtin'), cfg.T, 0), pretrain_step_fn(sch, cfg.w_eps)
    else:
        bf = task_batches(cfg, {'rain': None if kind == 'plain' else 8}, 'builtin', seed=0)   # plain: no prompt
        if kind == 'gef':
            bf = with_diffusion_noise(bf, cfg.T, 0, prefix='gen_', purpose='gen')
            theta0 = snapshot_params(net)
            omega = {k: torch.rand_like(v) for k, v in theta0.items()}   # the importance's values do not change the step's cost
            sf = gef_step_fn(cfg, net, sch, theta0, omega, 0)
        else: sf = gef_step_fn(replace(cfg, gef=False), net, None, None, None, 0)
    if variant == 'compile': net.forward = torch.compile(net.forward)
    tr = _trainer(cfg, net, bf, sf, out)
    if variant.startswith('adam='):
        kw = dict(fused=False, foreach=False) if variant == 'adam=loop' else {variant.split('=')[1]: True}
        tr.opt = torch.optim.Adam(tr.params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kw)
        tr.sched = torch.optim.lr_scheduler.LambdaLR(tr.opt, tr.sched.lr_lambdas[0])
    return tr, bf


def count_flops(tr, steps: int) -> float:
    "FLOPs per optimiser step, averaged over `steps` steps; the step counter is put back, so the timing sees the same mix iterations."
    from torch.utils.flop_counter import FlopCounterMode
    total, s0 = 0, tr.step
    for _ in range(steps):
        with FlopCounterMode(display=False) as fc: tr.train_step()
        total += fc.get_total_flops()
    tr.step = s0
    return total / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--presets', nargs='+', default=['default', 'paper'])
    ap.add_argument('--steps', type=int, default=20, help='timed steps per kind and variant (GEF mixes at p_mix within them)')
    ap.add_argument('--variants', nargs='+', default=['base', 'threads=1', 'contiguous'])
    ap.add_argument('--kinds', nargs='+', default=['pretrain', 'gef', 'plain'])
    ap.add_argument('--batch', type=int, default=0); ap.add_argument('--patch', type=int, default=0)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'],
                    help='bf16: the steps under mixed_precision=bf16 (autocast) and the peak of a bf16 matmul')
    a = ap.parse_args()
    from dtir.config import load_preset
    from dtir.models.core import count_params
    sync = torch.cuda.synchronize if a.device == 'cuda' else (lambda: None)
    base_threads = torch.get_num_threads()
    for preset in a.presets:
        ov = [f'device={a.device}'] + (['mixed_precision=bf16'] if a.precision == 'bf16' else []) + ([f'batch={a.batch}'] if a.batch else []) + ([f'patch={a.patch}'] if a.patch else [])
        cfg = load_preset(preset, ov)
        pk = peak_flops(cfg.width, cfg.batch, cfg.patch, a.device, dtype=torch.bfloat16 if a.precision == 'bf16' else torch.float32)
        print(f"{preset}: batch {cfg.batch} x {cfg.patch} px, {a.device} ({torch.cuda.get_device_name() if a.device == 'cuda' else str(base_threads) + ' threads'}), "
              f"{a.precision}; measured {a.precision} peak: "
              f"matmul {pk['matmul']/1e9:.1f} GFLOP/s, conv {pk['conv']/1e9:.1f} GFLOP/s", flush=True)
        with tempfile.TemporaryDirectory() as d:
            runs, times, bt = {}, {}, {}
            for kind in a.kinds:
                for v in a.variants:
                    if v.startswith('orth') and kind != 'gef': continue
                    tr, bf = build(kind, cfg, v, os.path.join(d, f'{kind}-{v}'))
                    runs[kind, v] = tr; times[kind, v] = []
                    if v == 'compile': tr.train_step()   # compilation happens here, not in the timing
                bt[kind] = bf
            for kv, tr in runs.items():   # FLOPs of each kind (the same for every variant but the projection), warm-up
                tr.flops = count_flops(tr, a.steps)   # as many steps as are timed: the same share of mix iterations
            for i in range(a.steps):
                for (kind, v), tr in runs.items():
                    n = int(v.split('=')[1]) if v.startswith('threads=') else base_threads
                    torch.set_num_threads(n)
                    sync(); t0 = time.perf_counter(); tr.train_step(); sync()
                    times[kind, v].append(time.perf_counter() - t0)
                    torch.set_num_threads(base_threads)
            outside = {}
            for kind, bf in bt.items():
                t0 = time.perf_counter()
                for i in range(a.steps): bf(10 ** 5 + i)
                outside[kind] = (time.perf_counter() - t0) / a.steps
            plain = statistics.mean(times['plain', 'base']) if ('plain', 'base') in times else None
            print(f"  {'step':9} {'variant':14} {'ms/step':>9} {'img/s':>8} {'GFLOP/step':>11} {'GFLOP/s':>8} {'of peak':>8} "
                  f"{'vs base':>8} {'vs plain':>9} {'batch synth':>12}")
            for (kind, v), ts in times.items():
                m = statistics.mean(ts); tr = runs[kind, v]
                base = statistics.mean(times[kind, 'base']) if (kind, 'base') in times else m
                print(f"  {kind:9} {v:14} {m*1e3:9.1f} {cfg.batch/m:8.1f} {tr.flops/1e9:11.2f} {tr.flops/m/1e9:8.1f} "
                      f"{tr.flops/m/pk['peak']:8.1%} {base/m:7.2f}x {(m/plain if plain else float('nan')):8.2f}x "
                      f"{outside[kind]/m:11.1%}", flush=True)
            pc = {v: count_params(runs[k, v].net) for k, v in runs if k == a.kinds[0]}
            ps = (f"{pc[a.variants[0]]/1e6:.2f} M" if len(set(pc.values())) == 1 else ', '.join(f'{v} {n/1e6:.2f} M' for v, n in pc.items()))
            print(f"  params {ps}; mean over {a.steps} steps each, "
                  f"interleaved; 'vs base' > 1 is faster; 'vs plain' is the step's cost in plain steps (GEF target <= 1.3x)")


if __name__ == '__main__':
    main()
