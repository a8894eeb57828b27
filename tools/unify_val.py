"""Setting B's prompt (matching) choices judged on validation by the fine-tuned unified model, not by the matching curve.

For every variant (comma-separated `key=value` preset overrides, e.g. `unify_match_mode=residual` or
`schedule=cosine,unify_match_mode=residual`): the variant's pre-training and matching (cached in the artifacts folder), then
Setting B's `ours` (TIT + MoE + GEF, `dtir.artifacts.unify_model`) on every seed and the blind t* estimator over the
variant's prompts (the first seed's, as Setting B), scored on the validation crops of each of the ten tasks
(in-distribution crops of the training photos' held-out bands: no test crop is read) with the oracle prompt (row `V`) and
with the estimator's (row `V blind`): a rule whose prompts the estimator cannot tell apart helps the oracle row only.
Beside them the `plain` multi-task row (no prompt, the same steps), which no variant changes. Printed per variant:
the matched t* per task, how many distinct values they take, their Spearman rho against the authors' table, the
estimator's share of right prompts and of crops recognised as their own task on the validation crops, and per task
the validation PSNR / SSIM (mean over seeds) with the difference to the first variant and to `plain`. A variant that
returns its input on a task (mean |out - in| below `dtir.metrics` threshold) is flagged.
Runs are cached in `--root` (the artifacts folder of a run), so a finished `make reproduce` supplies the first variant's
models at `default`; the others train in a `JobPool` of the preset's `workers`.
Usage: python tools/unify_val.py [--preset default] [--root outputs/default/artifacts] [--out FILE.json]
                                 [--variants unify_match_mode=onestep unify_match_mode=residual] [--seeds 0 1] [--no-plain]
"""
import argparse, json
from pathlib import Path


def variant_cfg(preset: str, variant: str):
    "The preset under a variant's comma-separated overrides (load_preset refuses an unknown key or an invalid value, naming it)."
    from dtir.config import load_preset
    return load_preset(preset, [o for o in variant.split(',') if o])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='default'); ap.add_argument('--root', default=None); ap.add_argument('--out', default=None)
    ap.add_argument('--variants', nargs='+', default=['unify_match_mode=onestep', 'unify_match_mode=residual'],
                    help='comma-separated key=value overrides per variant; the first is the reference')
    ap.add_argument('--seeds', nargs='+', type=int, default=None, help="default: the preset's seeds")
    ap.add_argument('--no-plain', action='store_true', help='leave out the plain multi-task row')
    a = ap.parse_args(argv)
    import numpy as np
    from dtir.artifacts import pretrained, unify_tstars, unify_model, unified, unify_steps, estimator_model
    from dtir.estimator import load_estimator
    from dtir.batches import val_set, predict
    from dtir.finetune import model_prompt
    from dtir.launch import job_pool
    from dtir.match import spearman_vs_reference
    from dtir.metrics import score, input_change, returns_input
    from dtir.pretrain import load_model
    from dtir.runner import progress
    cfgs = {v: variant_cfg(a.preset, v) for v in a.variants}
    base = variant_cfg(a.preset, '')
    seeds = list(a.seeds if a.seeds is not None else base.seeds)
    root = Path(a.root or f'outputs/{a.preset}/artifacts').resolve()   # absolute, as dtir reproduce names it (model keys hold paths)
    with job_pool(base, log=progress):   # the variants' pre-trainings side by side (one per distinct pre-training key)
        pres = {v: pretrained(c, root) for v, c in cfgs.items()}   # their model/ folders, written when the block ends
    tstar = {v: unify_tstars(c, pres[v]) for v, c in cfgs.items()}   # Setting B's prompts under each variant
    tasks = list(base.tasks)
    models = {}
    with job_pool(base, log=progress):
        for s in seeds:
            if not a.no_plain:
                models['plain', s] = (base, unified(base, root, tstar[a.variants[0]], None, plain=True,
                                                    steps=unify_steps(base, tstar[a.variants[0]]), seed=s))
            for v, c in cfgs.items(): models[v, s] = (c, unify_model(c, root, tstar[v], pres[v], seed=s))
        ests = {v: estimator_model(c, root, tstar[v], seed=seeds[0]) for v, c in cfgs.items()}
    ests = {v: load_estimator(m) for v, m in ests.items()}
    pairs = {t: val_set(base, t) for t in tasks}
    ans = {v: {t: ests[v].answers(pairs[t][0]) for t in tasks} for v in cfgs}   # the estimator's prompts and recognised tasks per crop
    est_t = {v: {t: ans[v][t][0] for t in tasks} for v in cfgs}
    acc = {v: {t: float((est_t[v][t] == tstar[v][t]).float().mean()) for t in tasks} for v in cfgs}
    task_acc = {v: {t: sum(q == t for q in ans[v][t][1]) / len(pairs[t][0]) for t in tasks} for v in cfgs}
    res = {}
    for (row, s), (c, m) in models.items():
        net, meta = load_model(m)
        for name, blind in ((row, False), (f'{row} blind', True)):
            if blind and row == 'plain': continue
            for t in tasks:
                y, x, _ = pairs[t]
                out = predict(net, y, est_t[row][t] if blind else model_prompt(meta, t))
                sc = score(out, x, lpips=False)
                res.setdefault(name, {}).setdefault(t, {})[str(s)] = dict(psnr=sc['psnr'], ssim=sc['ssim'], change=input_change(out, y))
    rows = [r for v in cfgs for r in (v, f'{v} blind')] + ([] if a.no_plain else ['plain'])
    mean = {r: {t: {k: float(np.mean([res[r][t][str(s)][k] for s in seeds])) for k in ('psnr', 'ssim', 'change')} for t in tasks}
            for r in rows}
    for r in rows:
        mean[r]['avg'] = {k: float(np.mean([mean[r][t][k] for t in tasks])) for k in ('psnr', 'ssim')}
    ref = a.variants[0]
    print(f"Setting B on validation ({base.n_val} crops of {base.val_size} px per task, in distribution; oracle prompt, and the estimator's for 'blind'), "
          f"{unify_steps(base, tstar[ref])} steps per row, seeds {seeds}; PSNR dB RGB / SSIM, mean over seeds")
    for v in cfgs:
        sp = spearman_vs_reference(tstar[v])
        rho = 'undefined' if sp['rho'] is None else f"{sp['rho']:+.2f} (p = {sp['p']:.2f})"
        print(f"  {v}: t* {tstar[v]}; {len(set(tstar[v].values()))} distinct; Spearman vs the authors' table {rho}; "
              f"estimator: right prompts {np.mean(list(acc[v].values())):.2f} (" + ', '.join(f'{t} {p:.2f}' for t, p in acc[v].items()) + ')'
              f", recognised as their own task {np.mean(list(task_acc[v].values())):.2f}")
    flag = lambda r, t: ' †' if any(returns_input(res[r][t][str(s)]['change']) for s in seeds) else ''
    w = max(30, *(len(r) + 2 for r in rows))
    print(f"  {'task':9}" + ''.join(f'{r:>{w}}' for r in rows))
    for t in tasks + ['avg']:
        cells = []
        for r in rows:
            m = mean[r][t]
            r0 = ref + (' blind' if r.endswith(' blind') else '')   # oracle rows against the reference's oracle, blind against its blind
            d = '' if r in (ref, f'{ref} blind', 'plain') else f" ({m['psnr'] - mean[r0][t]['psnr']:+.2f})"
            cells.append(f"{m['psnr']:.2f} / {m['ssim']:.3f}{d}{flag(r, t) if t != 'avg' else ''}")
        print(f"  {t:9}" + ''.join(f'{c:>{w}}' for c in cells))
    if not a.no_plain:
        for r in rows[:-1]: print(f"  {r} - plain, average: {mean[r]['avg']['psnr'] - mean['plain']['avg']['psnr']:+.2f} dB")
    if any(flag(r, t) for r in rows for t in tasks): print('  † a seed returns its input on this task')
    if a.out:
        Path(a.out).write_text(json.dumps(dict(preset=a.preset, seeds=seeds, variants=a.variants, t_star=tstar, estimator_accuracy=acc, estimator_task_accuracy=task_acc,
                                               per_seed=res, mean=mean, val=dict(n=base.n_val, size=base.val_size)), indent=1))


if __name__ == '__main__':
    main()
