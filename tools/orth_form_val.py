"""The orthogonality term's cheaper forms against the L_orth loss, on validation.

For every Setting A task: `full` at the task's committed selection (`select_source` of the preset), `finetune_steps`
steps, every seed of the preset, once per variant, scored by validation PSNR (in-distribution validation crops of the
training photos; no test crop is read). A variant is a `key=value` preset override applied to `full`'s settings; the
first one is the reference the others are compared with. The defaults compare `orth_form=batch` (the L_orth loss, what
Setting A trains) with `orth_form=project` (first-order gradient projection); `orth_frac=F` computes the loss on a share F
of the mixed steps. Runs are cached in the artifacts folder of a run (`--root`), so the loss-form models of a finished
`make reproduce` are reused and only the other variants train (in a `JobPool` of `workers`).
Usage: python tools/orth_form_val.py [--preset default] [--root outputs/default/artifacts] [--out FILE.json]
                                     [--variants orth_form=batch orth_form=project orth_frac=0.25] [--seeds 0 1] [--tasks rain]
"""
import argparse, json
from dataclasses import replace
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='default'); ap.add_argument('--root', default=None); ap.add_argument('--out', default=None)
    ap.add_argument('--variants', nargs='+', default=['orth_form=batch', 'orth_form=project'],
                    help='key=value overrides of full, the first the reference (default: the loss against the projection)')
    ap.add_argument('--seeds', nargs='+', type=int, default=None, help="default: the preset's seeds")
    ap.add_argument('--tasks', nargs='+', default=None, help="default: the preset's Setting A tasks")
    a = ap.parse_args(argv)
    from dtir.config import load_preset
    from dtir.artifacts import finetuned
    from dtir.select import selections, row_settings, val_psnr, grid_for
    from dtir.launch import job_pool
    from dtir.runner import progress
    cfg = load_preset(a.preset)
    over = {}   # variant -> {key: typed value}; load_preset refuses an unknown key or an invalid value
    for v in a.variants:
        key = v.split('=', 1)[0]
        over[v] = {key: getattr(load_preset(a.preset, [v]), key)}
    seeds = list(a.seeds if a.seeds is not None else cfg.seeds)
    tasks = list(a.tasks or cfg.setting_a_tasks)
    root = Path(a.root or f'outputs/{a.preset}/artifacts').resolve()   # absolute, as dtir reproduce names it: a model's key holds its pre-trained model's path
    sel = selections(cfg, root, tasks, grid_for(a.preset)[0])
    full = {task: row_settings(cfg, root, task, sel[task])['full'] for task in tasks}   # `full` exactly as Setting A trains it
    models = {}   # (pre-training and matching above, in this process: the runs below need their models)
    with job_pool(cfg, log=progress):
        for task, (cf, pre, t) in full.items():
            for v in a.variants:
                for seed in seeds:
                    c = replace(cf, **over[v])
                    models[task, v, seed] = (c, finetuned(c, root, task, t, pre, seed=seed, steps=cfg.finetune_steps))
    res = {f'{t}/{v}/{s}': val_psnr(m, c, t) for (t, v, s), (c, m) in models.items()}
    ref = a.variants[0]
    print(f"validation PSNR (dB, in distribution), {cfg.finetune_steps} steps, seeds {seeds}; differences against {ref}")
    print(f"  {'task':10}" + ''.join(f'{v:>22}' for v in a.variants))
    diffs = {v: [] for v in a.variants[1:]}
    for t in tasks:
        m = {v: sum(res[f'{t}/{v}/{s}'] for s in seeds) / len(seeds) for v in a.variants}
        for v in diffs: diffs[v].append(m[v] - m[ref])
        print(f"  {t:10}{m[ref]:22.2f}" + ''.join(f'{m[v]:14.2f} ({m[v] - m[ref]:+.2f})' for v in a.variants[1:]))
    for v, d in diffs.items(): print(f"  mean difference {v} - {ref}: {sum(d) / len(d):+.2f} dB")
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
