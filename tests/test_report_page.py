"""The report as a page: report.html self-contained (tables as HTML tables, ours apart from the paper's, figures embedded),
every table as CSV, opened in headless chromium (every <img> loads, a screenshot is saved; skipped without a browser), and
the data block that opens the report and the `dtir reproduce` output when no data set is found."""
import csv, json, os, shutil, subprocess, sys
from pathlib import Path

import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest

from dtir.config import load_preset
from dtir.runner import assemble, data_sets, RESULTS_KEYS
from cli_helpers import REPO, ENV, dtir_cmd

sys.path.insert(0, str(REPO / 'tools'))
from check_results import browser_check, find_browser, page_problems   # noqa: E402

FRAG = """## Setting X

| row | rain PSNR (RGB, crop 0, no ensemble) | rain PSNR (Y, crop 0, no ensemble) |
|---|---|---|
| input | 20.00 | 21.00 |
| ours | 25.00 | 26.50 |

### The paper's numbers

| paper row | PSNR | SSIM |
|---|---|---|
| Ours | 29.88 | 0.877 |

![bars](figures/x_bars.png)

*A figure.*
"""


def make_run(out: Path, frag: str = FRAG, figure: bool = True) -> Path:
    for d in ('reports', 'results', 'figures'): (out / d).mkdir(parents=True, exist_ok=True)
    if figure:
        fig, ax = plt.subplots(figsize=(4, 2)); ax.bar([0, 1, 2], [20, 25, 26.5]); fig.savefig(out / 'figures/x_bars.png'); plt.close(fig)
    (out / 'reports' / 'x.md').write_text(frag)
    rec = dict(name='x', results={'setting_a': {'derain': {'ours': {'id': {'psnr': 25.0}}}}}, wall_s=1.0)
    assemble(out, [rec], 'smoke', load_preset('smoke'), 1.0, data_sets=data_sets())
    return out


def test_report_html_is_one_self_contained_page(tmp_path):
    out = make_run(tmp_path)
    page = (out / 'report.html').read_text()
    assert page.count('<table') == 3 and '<th>rain PSNR (Y, crop 0, no ensemble)</th>' in page
    assert '<table class="paper"><caption>Published numbers, copied from the paper' in page
    assert page.count('<table class="ours"><caption>Measured in this run') == 2
    assert 'src="data:image/png;base64,' in page and 'src="figures/' not in page
    assert page_problems(out) == []
    assert json.loads((out / 'results.json').read_text())['meta']['data'][0]['name'] == 'rain100l'


def test_every_table_is_a_csv(tmp_path):
    out = make_run(tmp_path)
    names = sorted(p.name for p in (out / 'tables').glob('*.csv'))
    assert names == ['x_01_setting_x.csv', 'x_02_the_paper_s_numbers.csv']
    rows = list(csv.reader(open(out / 'tables' / names[0])))
    assert rows == [['row', 'rain PSNR (RGB, crop 0, no ensemble)', 'rain PSNR (Y, crop 0, no ensemble)'], ['input', '20.00', '21.00'], ['ours', '25.00', '26.50']]


def test_results_keys_are_documented():
    "Every key a notebook writes into results.json is documented (tools/check_results.py fails otherwise)."
    import re
    written = set()
    for nb in (REPO / 'nbs' / 'analyses').glob('*.ipynb'):
        written |= set(re.findall(r"an\.results\[\\?'([a-z_]+)\\?'\]", nb.read_text()))
    assert written and written <= set(RESULTS_KEYS), sorted(written - set(RESULTS_KEYS))


@pytest.mark.skipif(find_browser() is None, reason='no chromium on this machine (CI installs it: apt-get install -y chromium)')
def test_report_in_a_real_browser(tmp_path):
    out = make_run(tmp_path / 'run')
    shot = Path(os.environ.get('DTIR_SCREENSHOT_DIR', tmp_path)) / 'report_page.png'
    r = browser_check(out / 'report.html', shot, height=1400)
    assert 'error' not in r, r
    assert r['images'] == 1 and r['broken'] == 0, r
    assert shot.stat().st_size > 10_000, 'the screenshot is (nearly) empty'
    # the same check sees a broken image: a page whose figure file is gone
    bad = make_run(tmp_path / 'bad', FRAG + '\n![gone](figures/missing.png)\n')
    r = browser_check(bad / 'report.html')
    assert (r['images'], r['broken']) == (2, 1), r


def test_reproduce_without_data_says_what_is_missing_first(tmp_path):
    "On a clone without ../shared (and nothing in data/), the first lines name each missing set and the command that fetches it."
    if any((REPO / 'data' / s).is_dir() for s in ('rain100l', 'lol_v1_eval15', 'cbsd68', 'kodak24', 'mcmaster18')):
        pytest.skip('data/ holds fetched sets: this is not a fresh clone')
    env = {k: v for k, v in ENV.items() if k != 'DTIR_DATA'} | {'DTIR_SHARED_DATA': str(tmp_path / 'no-shared')}
    r = subprocess.run(dtir_cmd() + ['reproduce', '--preset', 'smoke', '--only', 'data', '--out', str(tmp_path / 'out')],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    first = r.stdout.splitlines()[:6]
    assert first[0].startswith('data: 0 of 5 sets found; without rain100l, lol_v1_eval15, cbsd68, kodak24, mcmaster18'), first
    assert first[1].strip() == 'missing rain100l: dtir data fetch rain100l', first
    assert first[2].strip() == 'missing lol_v1_eval15: dtir data fetch lol_v1_eval15', first
    head = (tmp_path / 'out' / 'report.md').read_text().splitlines()[:6]
    assert head[2].startswith('**Data sets**: 0 of 5 found') and head[4] == '- **missing** `rain100l`: `dtir data fetch rain100l`', head
