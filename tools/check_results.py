"""Check that a `dtir reproduce` output folder has every results key the report promises and every figure it links.

Usage: python tools/check_results.py OUT_DIR [--real] [--all] [--browser PNG]   (--real: the real-data keys are required
too; --all: the keys of the FULL_ONLY notebooks too, for a run of `dtir reproduce --all`; --browser: open report.html in
headless chromium, check that every <img> loaded and save a screenshot to PNG; skipped, with the reason, without chromium)
Also: every top-level results key is documented (`dtir.runner.RESULTS_KEYS`), every table of report.md has its CSV in
tables/, report.html embeds every figure. Exit 1 with the list of what is missing. Used by CI on the smoke run, where the
numbers are meaningless but the shape is not.
"""
import json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--hide-scrollbars']

def find_browser() -> str | None:
    "Debian's chromium (or $DTIR_BROWSER), or None."
    for c in [os.environ.get('DTIR_BROWSER'), 'chromium', 'chromium-browser', 'google-chrome']:
        if c and shutil.which(c): return shutil.which(c)
    return None

def browser_check(html: Path, screenshot: Path | None = None, width: int = 1280, height: int = 3000, timeout: float = 120) -> dict:
    """Load `html` in headless chromium: {'images': n, 'broken': n} from the page's own load check (report.html marks its
    <body> with data-images / data-broken-images after the load event), and a screenshot. {'skipped': reason} without a browser."""
    exe = find_browser()
    if exe is None: return {'skipped': 'no chromium found (apt-get install -y chromium)'}
    url = Path(html).resolve().as_uri()
    res = {}
    with tempfile.TemporaryDirectory(prefix='dtir-chromium-') as prof:
        base = [exe, *CHROMIUM_FLAGS, f'--user-data-dir={prof}', '--virtual-time-budget=10000', f'--window-size={width},{height}']
        r = subprocess.run(base + ['--dump-dom', url], capture_output=True, text=True, timeout=timeout)
        m = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken-images="(\d+)"', r.stdout)
        if not m: return {'error': f'the page did not report its images (rc {r.returncode}): {r.stderr.strip()[-300:]}'}
        res = dict(images=int(m.group(1)), broken=int(m.group(2)))
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(base + [f'--screenshot={Path(screenshot).resolve()}', url], capture_output=True, text=True, timeout=timeout)
            if not Path(screenshot).exists(): res['error'] = f'no screenshot written (rc {r.returncode}): {r.stderr.strip()[-300:]}'
            else: res['screenshot'] = str(screenshot)
    return res

def page_problems(out: Path) -> list[str]:
    "Tables without their CSV, figures not embedded in report.html, undocumented results keys."
    from dtir.runner import md_tables, undocumented_keys
    probs = []
    n_tab = sum(len(md_tables((out / 'reports' / f.name).read_text())) for f in sorted((out / 'reports').glob('*.md')))
    n_csv = len(list((out / 'tables').glob('*.csv'))) if (out / 'tables').is_dir() else 0
    if n_csv != n_tab: probs.append(f'{n_tab} tables in the notebooks\' reports but {n_csv} CSV files in tables/')
    page = (out / 'report.html').read_text() if (out / 'report.html').exists() else ''
    if not page: probs.append('report.html missing')
    elif re.search(r'<img[^>]+src="(?!data:)', page): probs.append('report.html links a figure instead of embedding it (missing file?)')
    und = undocumented_keys(json.loads((out / 'results.json').read_text()))
    if und: probs.append(f'results keys not documented in dtir.runner.RESULTS_KEYS: {und}')
    return probs

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
        need(f'difficulty.{t}.id.psnr'); need(f'timestep.{t}.t_star'); need(f'timestep.{t}.curve'); need(f'timestep.{t}.t_star_residual')
    need('timestep_meta.distinct')
    for sch in ('vp', 've'): need(f'noise.{sch}')
    for m in ('plain', 'ours'): need(f'tsne.{m}.silhouette')
    keys = {'haze': 'dehaze', 'rain': 'derain', 'snow': 'desnow', 'lowlight': 'lowlight'}
    meta_a = res.get('setting_a_meta', {})
    rows_a = [r for r in ROWS if r in meta_a.get('rows', ROWS)]   # plain_clean: only with a corpus; ablations: rows=all
    for r in ROWS:
        if r not in rows_a: need(f'setting_a_meta.skipped_rows.{r}')   # a row left out has its reason recorded
    d_rows = [r for r in DIFFUIR_ROWS if r in meta_a.get('rows', DIFFUIR_ROWS)]   # diffuir_t: rows=all only
    for r in DIFFUIR_ROWS:
        if r not in d_rows: need(f'setting_a_meta.skipped_rows.{r}')
    d_rows_b = [r for r in DIFFUIR_ROWS if r in res.get('setting_b_meta', {}).get('rows', DIFFUIR_ROWS)]
    d_rows_r = [r for r in DIFFUIR_ROWS if r not in res.get('real_meta', {}).get('left_out', [])]
    for t in cfg.setting_a_tasks:
        for r in rows_a + d_rows:
            for s in ('id', 'ood'):
                for m in ('psnr', 'ssim', 'lpips', 'change'): need(f'setting_a.{keys[t]}.{r}.{s}.{m}')
                if t == 'rain':
                    for m in ('psnr_y', 'ssim_y'): need(f'setting_a.{keys[t]}.{r}.{s}.{m}')
        for w in ('full', 'plain'):
            for k in ('choice', 'val_psnr', 'n_runs', 'trials'): need(f'setting_a.{keys[t]}.selection.{w}.{k}')
        need(f'setting_a.{keys[t]}.frac_at_theta0.full')
    for k in ('train', 'val', 'test'): need(f'meta.splits.{k}')
    need('setting_a_meta.headline.mean_ood_gain'); need('setting_a_meta.returns_input')
    for r in ('plain', 'no_tit', 'no_moe', 'oracle', 'blind') + tuple(d_rows_b):
        for t in list(cfg.tasks) + ['avg']:
            for m in ('psnr', 'ssim', 'lpips', 'change'): need(f'setting_b.{r}.{t}.{m}')
    for t in cfg.tasks: need(f'setting_b_estimator.accuracy.{t}'); need(f'setting_b_estimator.task_accuracy.{t}')
    for k in ('returns_input', 'stage_plan', 'samples_per_task'): need(f'setting_b_meta.{k}')
    for r in ('plain', 'no_tit', 'no_moe', 'oracle', 'blind') + tuple(d_rows_b):
        for t in [t for t in ('rain', 'raindrop') if t in cfg.tasks]:
            for m in ('psnr_y', 'ssim_y'): need(f'setting_b_y.{r}.{t}.{m}')
    if real:
        for st in ('rain100l', 'lol_v1_eval15'):
            for r in ('plain', 'plain_long', 'full') + tuple(d_rows_r):
                for m in ('psnr', 'ssim'): need(f'real.{st}.{r}.{m}')
            for r in ('blind', 'diffuir'):
                for m in ('psnr', 'ssim'): need(f'real_unified.{st}.{r}.{m}')
        for r in ('input', 'plain', 'plain_long', 'full') + tuple(d_rows_r):
            for m in ('psnr_y', 'ssim_y'): need(f'real.rain100l.{r}.{m}')
        for r in ('input', 'plain', 'blind', 'diffuir'):
            for m in ('psnr_y', 'ssim_y'): need(f'real_unified.rain100l.{r}.{m}')
    if full:
        for c in ('shallow', 'deep', 'all', 'none'):
            for s in ('id', 'ood'): need(f'layer.{c}.{s}.psnr')
        for p in cfg.mix_ratios:
            for s in ('id', 'ood'): need(f'mix.{float(p)}.{s}.psnr', 'mix', str(float(p)), s, 'psnr')
        from dtir.unires import COMBOS, APPLY_ORDER
        spec = sorted({t for c in COMBOS for t in c.split('+')}, key=APPLY_ORDER.index)
        rows = ['input'] + [f'spec_{t}' for t in spec] + ['unified_blind', 'diffuir', 'unires_grid', 'unires_est', 'unires_est_raw', 'unires_uniform']
        for c in list(COMBOS) + ['avg']:
            for r in rows:
                for m in ('psnr', 'ssim', 'lpips'): need(f'compound.{c}.{r}.{m}', 'compound', c, r, m)
        need('compound_meta.fidelity_curve'); need('compound_meta.calibration.temperature')
        for c in COMBOS:
            for r in ('unires_grid', 'unires_est', 'unires_est_raw', 'unires_uniform'): need(f'compound_meta.steps_chosen.{c}.{r}', 'compound_meta', 'steps_chosen', c, r)
        corpus_pts = list(res.get('scale_meta', {}).get('axes', {}).get('corpus', {})) or [cfg.scale_corpus[0]]
        for axis, vals in (('pretrain_steps', [str(v) for v in cfg.scale_pretrain_steps]), ('width', [str(v) for v in cfg.scale_widths]),
                           ('corpus', corpus_pts)):
            for v in vals:
                for t in cfg.scale_tasks:
                    for q in ('gain', 'full', 'plain'): need(f'scale.{axis}.{v}.{keys[t]}.{q}.mean', 'scale', axis, v, keys[t], q, 'mean')
        for axis in ('pretrain_steps', 'corpus', 'width'): need(f'scale_meta.trend.{axis}')
        for a in cfg.backbones:
            for r in ('plain', 'ours'):
                for t in list(cfg.tasks) + ['avg']:
                    for m in ('psnr', 'ssim'): need(f'backbones.{a}.{r}.{t}.{m}.mean', 'backbones', a, r, t, m, 'mean')
            need(f'backbones.{a}.gain.mean', 'backbones', a, 'gain', 'mean')
        for c in [c for c in COMBOS if 'rain' in c.split('+') or 'raindrop' in c.split('+')]:
            for r in rows:
                for m in ('psnr_y', 'ssim_y'): need(f'compound.{c}.{r}.{m}', 'compound', c, r, m)
    return miss

if __name__ == '__main__':
    out = Path(sys.argv[1])
    res = json.loads((out / 'results.json').read_text())
    miss = missing_keys(res, '--real' in sys.argv, '--all' in sys.argv)
    figs = re.findall(r'\]\((figures/[^)]+)\)', (out / 'report.md').read_text())
    nofig = [f for f in figs if not (out / f).exists()]
    if not figs: nofig.append('(the report links no figure at all)')
    probs = page_problems(out)
    if '--browser' in sys.argv:
        b = browser_check(out / 'report.html', Path(sys.argv[sys.argv.index('--browser') + 1]))
        if 'skipped' in b: print(f'browser check skipped: {b["skipped"]}')
        elif 'error' in b: probs.append(f'browser: {b["error"]}')
        elif b['broken'] or not b['images']: probs.append(f"browser: {b['broken']} of {b['images']} images did not load")
        else: print(f"browser: all {b['images']} images of report.html loaded in chromium; screenshot {b['screenshot']}")
    if miss or nofig or probs:
        print(f'{out}: {len(miss)} results keys missing, e.g. {miss[:10]}; {len(nofig)} figures missing: {nofig[:10]}'
              + ''.join(f'; {p}' for p in probs))
        sys.exit(1)
    print(f'{out}: every results key present; {len(figs)} figures linked and written; every table has its CSV; report.html self-contained')
