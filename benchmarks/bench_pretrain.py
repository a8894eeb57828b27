"""Pre-training throughput (images/s) and peak memory of the `unet` backbone at preset sizes.

Each configuration runs in its own subprocess so that peak memory (max RSS on CPU, max allocated on CUDA) is its own.
Usage: python benchmarks/bench_pretrain.py [--presets default paper] [--steps 5] [--batch N] [--patch N] [--device cpu|cuda]
Prints one line per preset; numbers are measured, nothing is assumed.
"""
import argparse, json, os, resource, subprocess, sys, time

def worker(preset, steps, batch, patch, device):
    import torch
    from dtir.models.core import count_params
    from dtir.diffusion import pretrain_loss
    from _common import preset_model
    cfg, net, sch = preset_model(preset, batch, patch, device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
    x = torch.rand(cfg.batch, 3, cfg.patch, cfg.patch, device=device)
    g = torch.Generator(device='cpu').manual_seed(0)
    def step():
        loss, _ = pretrain_loss(net, x, sch, generator=g, w_eps=cfg.w_eps)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    step()  # warm-up (allocations, kernels)
    if device == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if device == 'cuda': torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(preset=preset, device=device, params_M=round(count_params(net) / 1e6, 2), batch=cfg.batch, patch=cfg.patch,
                threads=torch.get_num_threads(), s_per_step=round(dt, 3), img_per_s=round(cfg.batch / dt, 2),
                peak_MiB=round(peak, 1), peak_kind='cuda max allocated' if device == 'cuda' else 'max RSS')

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--presets', nargs='+', default=['default', 'paper'])
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--batch', type=int, default=0, help='override the preset batch (0: keep)')
    ap.add_argument('--patch', type=int, default=0, help='override the preset patch (0: keep)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.steps, a.batch, a.patch, a.device)))
        sys.exit(0)
    for p in a.presets:
        cmd = [sys.executable, __file__, '--worker', p, '--steps', str(a.steps), '--batch', str(a.batch), '--patch', str(a.patch), '--device', a.device]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode: print(f'{p}: failed\n{r.stderr[-2000:]}'); continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{d['preset']:>8} {d['device']}: {d['params_M']} M params, batch {d['batch']} x {d['patch']} px, {d['threads']} threads: "
              f"{d['s_per_step']} s/step, {d['img_per_s']} img/s, peak {d['peak_MiB']} MiB ({d['peak_kind']})")
