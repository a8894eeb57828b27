"""Cost of one GEF fine-tuning step relative to one plain reconstruction step, measured side by side.

For each preset size: the time of (a) a plain step (L_rec backward), (b) a GEF step without mixing (L_rec + L_reg),
(c) a mixed GEF step (+ L_gen with layer decay), (d) a mixed GEF step with the batch orthogonality loss, and the average GEF
step at p_mix (the paper's 10 %: 0.9 (b) + 0.1 (d)); with `--orth-frac F ...` also the average when only a share F of the
mixed steps computes L_orth (preset key orth_frac: 0.9 (b) + 0.1 (F (d) + (1 - F) (c))). Steps alternate between the
variants so drift in machine load hits all.
Usage: python benchmarks/bench_gef.py [--presets default paper] [--reps 5] [--batch N] [--patch N] [--device cpu|cuda]
                                      [--orth-frac 0.5 0.25]
"""
import argparse, statistics, time, sys
import torch

def measure(preset, reps, batch, patch, device):
    from dtir.models.core import count_params
    from dtir.diffusion import rec_loss, pretrain_loss
    from dtir.gef import gen_param_selection, layer_decay_weights, reg_apply_, gef_backward, snapshot_params
    from _common import preset_model
    cfg, net, sch = preset_model(preset, batch, patch, device)
    theta0 = snapshot_params(net)
    omega = {k: torch.rand_like(v) * 1e-3 for k, v in theta0.items()}
    with torch.no_grad():
        for p in net.parameters(): p.add_(1e-3 * torch.randn_like(p))
    gp = gen_param_selection(net, 'shallow', cfg.k_shallow)
    decay = layer_decay_weights([n for n, _ in gp], 8, cfg.decay_a)
    y = torch.rand(cfg.batch, 3, cfg.patch, cfg.patch, device=device); x = torch.rand_like(y)
    t = torch.full((cfg.batch,), 8, device=device)
    g = torch.Generator().manual_seed(0)
    sync = (lambda: torch.cuda.synchronize()) if device == 'cuda' else (lambda: None)
    def timed(fn):
        net.zero_grad(set_to_none=False); sync(); t0 = time.perf_counter(); fn(); sync(); return time.perf_counter() - t0
    def plain():
        rec_loss(net, y, x, t)[0].backward()
    P = dict(net.named_parameters())
    def reg_only():   # what dtir.finetune does: L_rec backward + the closed-form L_reg gradient
        gef_backward(net, rec_loss(net, y, x, t)[0], None); reg_apply_(P, theta0, omega, decay, cfg.lam_reg)
    def mixed(orth):
        def f():
            L_gen = pretrain_loss(net, x, sch, generator=g)[0]
            gef_backward(net, rec_loss(net, y, x, t)[0], L_gen, None, gp, decay, alpha=cfg.alpha_orth, orth='batch' if orth else None)
            reg_apply_(P, theta0, omega, decay, cfg.lam_reg)
        return f
    variants = dict(plain=plain, reg=reg_only, mix=mixed(False), mix_orth=mixed(True))
    for f in variants.values(): timed(f)  # warm-up
    times = {k: [] for k in variants}
    for _ in range(reps):
        for k, f in variants.items(): times[k].append(timed(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    avg = (1 - cfg.p_mix) * med['reg'] + cfg.p_mix * med['mix_orth']
    return cfg, count_params(net), med, avg

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--presets', nargs='+', default=['default', 'paper'])
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--batch', type=int, default=0); ap.add_argument('--patch', type=int, default=0)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--orth-frac', nargs='*', type=float, default=[], help='also the average step when this share of mixed steps computes L_orth')
    a = ap.parse_args()
    for p in a.presets:
        cfg, n, med, avg = measure(p, a.reps, a.batch, a.patch, a.device)
        b = med['plain']
        print(f"{p} ({n/1e6:.2f} M params, batch {cfg.batch} x {cfg.patch} px, {a.device}, {torch.get_num_threads()} threads), median of {a.reps}:")
        print(f"  plain L_rec step        {b*1e3:9.1f} ms  1.00x")
        print(f"  GEF, no mix (+L_reg)    {med['reg']*1e3:9.1f} ms  {med['reg']/b:.2f}x   (L_reg costs {(med['reg']-b)/b:+.2f}x)")
        print(f"  GEF, mix (+L_gen)       {med['mix']*1e3:9.1f} ms  {med['mix']/b:.2f}x   (L_gen costs {(med['mix']-med['reg'])/b:+.2f}x)")
        print(f"  GEF, mix + L_orth       {med['mix_orth']*1e3:9.1f} ms  {med['mix_orth']/b:.2f}x   (L_orth costs {(med['mix_orth']-med['mix'])/b:+.2f}x)")
        print(f"  average GEF step at p_mix={cfg.p_mix}: {avg/b:.2f}x a plain step (target <= 1.3x)")
        for f in a.orth_frac:
            af = (1 - cfg.p_mix) * med['reg'] + cfg.p_mix * (f * med['mix_orth'] + (1 - f) * med['mix'])
            print(f"  average at p_mix={cfg.p_mix}, orth_frac={f}: {af/b:.2f}x a plain step")
        sys.stdout.flush()
