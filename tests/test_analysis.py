"dtir.analysis against independent statistics, and the analysis notebooks using it instead of their own copies."
import ast, json
from pathlib import Path

import numpy as np
from scipy import stats

import dtir.analysis as A

NBS = Path(__file__).resolve().parents[1] / 'nbs' / 'analyses'


def test_paired_is_the_paired_t_statistic():
    "mean / se of `paired` is scipy's paired t statistic, and `verdict` follows |t| >= 2."
    rng = np.random.default_rng(0)
    for shift in (0.05, 0.3, -0.3):
        b = rng.normal(25, 3, 12)
        a = b + shift + rng.normal(0, 0.2, 12)
        m, se = A.paired(a, b)
        t = stats.ttest_rel(a, b).statistic
        np.testing.assert_allclose(m / se, t, rtol=1e-12)
        np.testing.assert_allclose(se, stats.sem(a - b), rtol=1e-12)
        assert A.verdict(m, se) == ('beyond two standard errors' if abs(t) >= 2 else 'within noise')


def test_seed_gap_is_welch_standard_error():
    "The standard error of a difference over seeds is the unpooled (Welch) one of scipy."
    rng = np.random.default_rng(1)
    x, y = rng.normal(20, 0.4, 3), rng.normal(19.5, 0.3, 4)
    res = {'t': {'a': {'ood': {'psnr': A.seed_stat(x)}}, 'b': {'ood': {'psnr': A.seed_stat(y)}}}}
    d, se = A.seed_gap(res, ['t'], 'a', 'b', 'ood')['t']
    np.testing.assert_allclose(d, x.mean() - y.mean(), rtol=1e-12)
    np.testing.assert_allclose(d / se, stats.ttest_ind(x, y, equal_var=False).statistic, rtol=1e-12)


def _defs(nb: Path) -> set[str]:
    "Names of the functions an analysis notebook defines in its code cells."
    out = set()
    for c in json.loads(nb.read_text())['cells']:
        if c['cell_type'] != 'code': continue
        src = '\n'.join(l for l in ''.join(c['source']).splitlines() if not l.lstrip().startswith(('%', '!')))
        out |= {n.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef)}
    return out


def test_notebooks_use_the_library_helpers():
    "No analysis notebook defines its own copy of a dtir.analysis helper."
    nbs = sorted(NBS.glob('[0-9]*.ipynb'))
    assert len(nbs) >= 10
    for nb in nbs:
        dup = _defs(nb) & set(A.__all__)
        assert not dup, f'{nb.name} redefines {sorted(dup)}: import them from dtir.analysis'
