"Matching never drops other tasks' t* and never writes into a checkpoint folder unasked (issue 16, item 1)."
import json, shutil
import pytest
from cli_helpers import run_main, one_line_error, tiny_pretrained


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    return tiny_pretrained(tmp_path_factory.mktemp('pre'))


def _tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}


def test_match_subset_merges_into_match_json(pretrained, tmp_path, capsys):
    pre = tmp_path / 'pre'; shutil.copytree(pretrained, pre)
    base = ['match', '--preset', 'smoke', '--set', 'match_images=2', '--modes', 'onestep', '--ckpt', pre]
    rc, err = run_main(base + ['--tasks', 'noise', 'rain', 'haze', '--out', pre], capsys)
    assert rc == 0, err
    first = json.loads((pre / 'match.json').read_text())['t_star']
    rc, err = run_main(base + ['--tasks', 'snow', '--out', pre], capsys)
    assert rc == 0, err
    now = json.loads((pre / 'match.json').read_text())['t_star']
    assert set(now) == {'noise', 'rain', 'haze', 'snow'} and all(now[k] == v for k, v in first.items())
    # a request with other settings is refused, naming the file; the file is unchanged
    before = (pre / 'match.json').read_bytes()
    rc, err = run_main(base[:4] + ['match_images=3'] + base[5:] + ['--tasks', 'snow', '--out', pre], capsys)
    line = one_line_error(rc, err, 'match')
    assert 'match.json' in line and '--overwrite' in line
    assert (pre / 'match.json').read_bytes() == before


def test_match_without_out_writes_nothing(pretrained, tmp_path, capsys):
    pre = tmp_path / 'pre'; shutil.copytree(pretrained, pre)
    before = _tree(pre)
    rc, err = run_main(['match', '--preset', 'smoke', '--set', 'match_images=2', '--modes', 'onestep', '--ckpt', pre, '--tasks', 'rain'], capsys)
    assert rc == 0, err
    assert _tree(pre) == before


def test_unify_on_a_subset_leaves_the_checkpoint_alone(pretrained, tmp_path, capsys):
    pre = tmp_path / 'pre'; shutil.copytree(pretrained, pre)
    rc, err = run_main(['match', '--preset', 'smoke', '--set', 'match_images=2', '--modes', 'onestep', '--ckpt', pre,
                        '--tasks', 'noise', 'rain', 'haze', '--out', pre], capsys)
    assert rc == 0, err
    before = _tree(pre)
    rc, err = run_main(['unify', '--preset', 'smoke', '--set', 'stage_steps=2', '--set', 'estimator_steps=2', '--set', 'match_images=2',
                        '--ckpt', pre, '--out', tmp_path / 'u', '--tasks', 'noise', 'lowlight'], capsys)
    assert rc == 0, err
    assert _tree(pre) == before, 'dtir unify changed the pre-trained checkpoint folder'
    assert set(json.loads((pre / 'match.json').read_text())['t_star']) == {'noise', 'rain', 'haze'}
