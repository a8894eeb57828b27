"""Check that a `dtir reproduce` output folder has every results key the report promises and every figure it links.

Usage: python tools/check_results.py OUT_DIR [--real] [--all]   (--real: the real-data keys are required too;
--all: the keys of the FULL_ONLY notebooks too, for a run of `dtir reproduce --all`)
Exit 1 with the list of what is missing. Used by CI on the smoke run, where the numbers are meaningless but the shape is not.
"""
import json, re, sys
from pathlib import Path

def missing_keys(res: dict, real: bool, full: bool = False) -> list[str]:
    from dtir.config import load_preset
    from dtir.artifacts import ROWS, DIFFUIR_ROWS
    cfg = load_preset(res['meta']['preset'])
    miss = []
    def need(path, *keys):
        "`path` is dotted; `keys` (when given) are the exact keys, for keys that hold a dot themselves (mix.'0.05')."
        d = res
        for k in keys or path.split('.'):
            if not isinstance(d, dict) or k not in d: miss.append(path); return
            d = d[k]
    for k in ('preset', 'seeds', 'git_commit', 'wall_s', 'device'): need(f'meta.{k}')
    for t in cfg.tasks:
        need(f'difficulty.{t}.id.psnr'); need(f'timestep.{t}.t_star'); need(f'timestep.{t}.curve')
    for c in ('shallow', 'deep', 'all', 'none'):
        for s in ('id', 'ood'): need(f'layer.{c}.{s}.psnr')
    for p in cfg.mix_ratios:
        for s in ('id', 'ood'): need(f'mix.{float(p)}.{s}.psnr', 'mix', str(float(p)), s, 'psnr')
    for sch in ('vp', 've'): need(f'noise.{sch}')
    for m in ('plain', 'ours'): need(f'tsne.{m}.silhouette')
    keys = {'haze': 'dehaze', 'rain': 'derain', 'snow': 'desnow', 'lowlight': 'lowlight'}
    for t in cfg.setting_a_tasks:
        for r in ROWS + DIFFUIR_ROWS:
            for s in ('id', 'ood'):
                for m in ('psnr', 'ssim', 'lpips'): need(f'setting_a.{keys[t]}.{r}.{s}.{m}')
    for r in ('plain', 'no_tit', 'no_moe', 'oracle', 'blind') + DIFFUIR_ROWS:
        for t in list(cfg.tasks) + ['avg']:
            for m in ('psnr', 'ssim', 'lpips'): need(f'setting_b.{r}.{t}.{m}')
    for t in cfg.tasks: need(f'setting_b_estimator.accuracy.{t}')
    if real:
        for st in ('rain100l', 'lol_v1_eval15'):
            for r in ('plain', 'plain_long', 'full') + DIFFUIR_ROWS:
                for m in ('psnr', 'ssim'): need(f'real.{st}.{r}.{m}')
            for r in ('blind', 'diffuir'):
                for m in ('psnr', 'ssim'): need(f'real_unified.{st}.{r}.{m}')
    if full:
        from dtir.unires import COMBOS, APPLY_ORDER
        spec = sorted({t for c in COMBOS for t in c.split('+')}, key=APPLY_ORDER.index)
        rows = ['input'] + [f'spec_{t}' for t in spec] + ['unified_blind', 'diffuir', 'unires_grid', 'unires_est', 'unires_uniform']
        for c in list(COMBOS) + ['avg']:
            for r in rows:
                for m in ('psnr', 'ssim', 'lpips'): need(f'compound.{c}.{r}.{m}', 'compound', c, r, m)
        need('compound_meta.fidelity_curve')
    return miss

if __name__ == '__main__':
    out = Path(sys.argv[1])
    res = json.loads((out / 'results.json').read_text())
    miss = missing_keys(res, '--real' in sys.argv, '--all' in sys.argv)
    figs = re.findall(r'\]\((figures/[^)]+)\)', (out / 'report.md').read_text())
    nofig = [f for f in figs if not (out / f).exists()]
    if not figs: nofig.append('(the report links no figure at all)')
    if miss or nofig:
        print(f'{out}: {len(miss)} results keys missing, e.g. {miss[:10]}; {len(nofig)} figures missing: {nofig[:10]}')
        sys.exit(1)
    print(f'{out}: every results key present; {len(figs)} figures linked and written')
