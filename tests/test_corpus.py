"The clean pre-training corpus (`pretrain_data`): found, recorded in the splits, and a said fallback when it is absent."
from dtir.batches import corpus_images, splits
from dtir.config import load_preset
from dtir.runner import assemble


def test_absent_corpus_falls_back_and_the_report_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv('DTIR_SHARED_DATA', str(tmp_path / 'empty'))
    (tmp_path / 'empty').mkdir()
    ims, what = corpus_images('bsds500')
    assert ims == [] and 'not found' in what and 'bsds500_test200' in what
    cfg = load_preset('smoke', ['pretrain_data=bsds500'])
    sp = splits(cfg)
    assert sp['pretrain_corpus'] == dict(what=what, images=[])
    out = tmp_path / 'out'; out.mkdir()
    assemble(out, [], 'smoke', cfg, 1.0, data_sets=[], splits=sp)
    head = (out / 'report.md').read_text().splitlines()[:8]
    assert any('not found' in l and 'built-in training photos only' in l for l in head), head


def test_shared_corpus_is_the_200_bsds_photos():
    import pytest
    ims, what = corpus_images('bsds500')
    if not ims: pytest.skip(what)
    assert len(ims) == 200 and all(n.startswith('bsds500_test200/') for n, _ in ims)
    assert min(min(a.shape[:2]) for _, a in ims) == 321
