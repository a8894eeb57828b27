"""`orth_form=batch` (the L_orth loss) against `orth_form=project` (first-order gradient projection) on validation.

For every Setting A task: `full` at the task's committed selection (`select_source` of the preset), `finetune_steps`
steps, every seed of the preset, once per form, scored by validation PSNR (in-distribution validation crops of the
training photos; no test crop is read). Runs are cached in the artifacts folder of a run (`--root`), so the loss-form
models of a finished `make reproduce` are reused and only the projection runs train (in a `JobPool` of `workers`).
Usage: python tools/orth_form_val.py [--preset default] [--root outputs/default/artifacts] [--out FILE.json]
"""
import argparse, json
from dataclasses import replace
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='default'); ap.add_argument('--root', default=None); ap.add_argument('--out', default=None)
    a = ap.parse_args(argv)
    from dtir.config import load_preset
    from dtir.artifacts import finetuned
    from dtir.select import selections, row_settings, val_psnr, grid_for
    from dtir.launch import job_pool
    from dtir.runner import progress
    cfg = load_preset(a.preset)
    root = Path(a.root or f'outputs/{a.preset}/artifacts').resolve()   # absolute, as dtir reproduce names it: a model's key holds its pre-trained model's path
    tasks = list(cfg.setting_a_tasks)
    sel = selections(cfg, root, tasks, grid_for(a.preset)[0])
    models = {}
    with job_pool(cfg, log=progress):
        for task in tasks:
            cf, pre, t = row_settings(cfg, root, task, sel[task])['full']   # `full` exactly as Setting A trains it
            for form in ('batch', 'project'):
                for seed in cfg.seeds:
                    c = replace(cf, orth_form=form)
                    models[task, form, seed] = (c, finetuned(c, root, task, t, pre, seed=seed, steps=cfg.finetune_steps))
    res = {f'{t}/{f}/{s}': val_psnr(m, c, t) for (t, f, s), (c, m) in models.items()}
    print(f"validation PSNR (dB, in distribution), {cfg.finetune_steps} steps, seeds {list(cfg.seeds)}")
    print(f"  {'task':10}{'batch (loss)':>14}{'project':>10}{'project - batch':>17}")
    diffs = []
    for t in tasks:
        b = sum(res[f'{t}/batch/{s}'] for s in cfg.seeds) / len(cfg.seeds)
        p = sum(res[f'{t}/project/{s}'] for s in cfg.seeds) / len(cfg.seeds)
        diffs.append(p - b)
        print(f"  {t:10}{b:14.2f}{p:10.2f}{p - b:+17.2f}")
    print(f"  mean difference {sum(diffs) / len(diffs):+.2f} dB")
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
